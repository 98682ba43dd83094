"""A character-level grammar of well-formed ABC tunes, for constrained decoding.

:class:`TuneGrammar` follows one tune as it is written, character by character, and says
which next characters keep it valid: the header follows a fixed template (``X:``, ``T:``,
``M:``, ``L:``, ``K:``) whose values come from allowed sets, and the body is a sequence of
notes and rests whose lengths come from a fixed set, with a bar line allowed exactly when
the bar is full and a note allowed only if it fits in what is left of the bar. Repeats are
kept balanced; the tune may end only after at least ``min_bars`` bars, at a bar line, with
no repeat open. Every tune this grammar accepts passes :func:`check_text` with all
mid-section bars exact. Pure Python.
"""

from __future__ import annotations

from fractions import Fraction

from musicseq.notation.tunebook import default_unit_length, parse_key, parse_length, parse_meter

END = "<eot>"  # the end-of-tune token, as an element of an allowed set

METERS = ("4/4", "6/8", "3/4", "2/4", "9/8", "12/8", "3/8", "2/2", "6/4", "3/2", "C", "C|")
LENGTHS = ("1/8", "1/16", "1/4")
_TONICS = ("C", "D", "E", "F", "G", "A", "B", "Bb", "Eb", "Ab", "F#", "C#")
_MODES = ("", "m", "maj", "min", "mix", "dor", "phr", "lyd", "loc", "Mix", "Dor", "Min", "Maj",
          " Major", " Minor", " Mixolydian", " Dorian", " major", " minor")  # fmt: skip
KEYS = tuple(t + m for t in _TONICS for m in _MODES)
TITLE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '.,-")
MAX_TITLE = 40

# Note-length suffixes (multiples of L:) and the suffixes' prefixes.
SUFFIXES = {"": Fraction(1), "2": Fraction(2), "3": Fraction(3), "4": Fraction(4), "6": Fraction(6),
            "8": Fraction(8), "/": Fraction(1, 2), "3/2": Fraction(3, 2)}  # fmt: skip
_SUFFIX_PREFIXES = {s[:i] for s in SUFFIXES for i in range(len(s) + 1)}
NOTE_LETTERS = "ABCDEFGabcdefg"
ACCIDENTALS = "^_="

for _key in KEYS:  # every key in the set is one the checker accepts
    parse_key(_key)


class GrammarError(ValueError):
    """A character the grammar does not allow (e.g. in a prime given with --constrain)."""


# Body states.
BAR_START, IN_BAR, ACCIDENTAL, NOTE, PIPE, COLON, ENDED, ENDED_NL = range(8)


class TuneGrammar:
    """The state of one tune being written; see the module docstring."""

    def __init__(self, min_bars: int = 8, fixed: dict[str, str] | None = None, alphabet=None):
        """``fixed`` forces header values (keys ``T``, ``M``, ``L``, ``K``); ``alphabet``
        (a set of characters) drops header choices that cannot be spelled with it."""
        self.min_bars = min_bars
        fixed = {k: v for k, v in (fixed or {}).items() if v}
        spell = (
            (lambda text: all(c in alphabet for c in text))
            if alphabet is not None
            else (lambda text: True)
        )
        self.choices = {
            name: (fixed[name],) if name in fixed else tuple(o for o in options if spell(o))
            for name, options in (("M", METERS), ("L", LENGTHS), ("K", KEYS))
        }
        if "T" in fixed:
            self.choices["title"] = (fixed["T"],)
        if "M" in fixed and "L" not in fixed:  # the unit length that goes with a forced meter
            unit = default_unit_length(parse_meter(fixed["M"]))
            self.choices["L"] = (f"{unit.numerator}/{unit.denominator}",)
        self.text = ""
        self.finished = False
        self.closing = False  # finish the current bar, close any repeat, then end
        # header: literal text and value slots, consumed in order
        self.template: list = ["X:1\n", "T:", ("title",), "M:", ("M",), "L:", ("L",), "K:", ("K",)]
        self.slot = ""
        self.values: dict[str, str] = {}
        # body
        self.state: int | None = None  # None while in the header
        self.capacity = Fraction(0)  # bar length in units of L:
        self.remaining = Fraction(0)
        self.bars = 0
        self.repeat_open = False
        self.suffix = ""  # length suffix of the note being written
        self.octaves = 0
        self.safe = (
            "",
            Fraction(0),
            False,
        )  # (text, remaining, repeat_open) at the last token boundary

    # --- what may come next -------------------------------------------------------------

    def allowed(self) -> set[str]:
        if self.finished:
            return {END}
        if self.state is None:
            return self._header_allowed()
        state = self.state
        if state == ACCIDENTAL:
            return set(NOTE_LETTERS)
        if state == NOTE:
            return self._note_allowed()
        if state == PIPE:
            if self.closing:
                return {"]"} if not self.repeat_open else {":"}
            allowed = self._between(self.capacity, bar_start=True, last="|")
            if not self.repeat_open:
                allowed.add(":")
                if self.bars >= self.min_bars:
                    allowed.add("]")
            return allowed
        if state == COLON:
            return {"|"}
        if state == ENDED:
            return {"\n", END}
        if state == ENDED_NL:
            return {END}
        return self._between(self.remaining, bar_start=state == BAR_START, last=self.text[-1:])

    def _header_allowed(self) -> set[str]:
        part = self.template[0]
        if isinstance(part, str):
            return {part[len(self.slot)]}
        if part[0] == "title" and "title" not in self.choices:
            allowed = set(TITLE_CHARS) if len(self.slot) < MAX_TITLE else set()
            if self.slot.strip():
                allowed.add("\n")
            return allowed
        options = self.choices[part[0]]
        n = len(self.slot)
        allowed = {o[n] for o in options if len(o) > n and o.startswith(self.slot)}
        if self.slot in options:
            allowed.add("\n")
        return allowed

    def _between(self, remaining: Fraction, bar_start: bool, last: str) -> set[str]:
        """Characters that may start the next token when ``remaining`` of the bar is left."""
        allowed: set[str] = set()
        if remaining > 0:
            allowed |= _NOTE_STARTS
        elif self.closing:
            return {":"} if self.repeat_open else {"|"}
        else:
            allowed.add("|")
            if self.repeat_open:
                allowed.add(":")
        if last not in (" ", "\n"):
            allowed.add(" ")
        if bar_start:
            if last != "\n":
                allowed.add("\n")
            if (
                not self.repeat_open
                and (self.bars >= self.min_bars or self.closing)
                and last != ":"
            ):
                allowed.add(END)
            if self.closing and not self.repeat_open:
                return {END}
        return allowed

    def _note_allowed(self) -> set[str]:
        allowed: set[str] = set()
        letter = self.text.rstrip(",'0123456789/")[-1]
        if not self.suffix and letter != "z" and self.octaves < 2:
            allowed.add("'" if letter.islower() else ",")
        n = len(self.suffix)
        for suffix, value in SUFFIXES.items():
            if len(suffix) > n and suffix.startswith(self.suffix) and value <= self.remaining:
                allowed.add(suffix[n])
        value = SUFFIXES.get(self.suffix)
        if value is not None and value <= self.remaining:
            allowed |= self._between(self.remaining - value, bar_start=False, last=self.text[-1])
        return allowed

    # --- moving on ------------------------------------------------------------------------

    def advance(self, ch: str) -> None:
        """Take one character (or :data:`END`); raises :class:`GrammarError` if not allowed."""
        if ch not in self.allowed():
            raise GrammarError(f"{ch!r} is not allowed after {self.text[-30:]!r}")
        if ch == END:
            self.finished = True
            return
        if self.state is None:
            self.text += ch
            self._advance_header(ch)
            return
        if self.state == NOTE and ch not in ",'0123456789/":
            self.remaining -= SUFFIXES[self.suffix]  # the note is complete
            self.state = IN_BAR
        if self.state == PIPE and ch not in ":]":
            self.state = BAR_START  # a plain bar line
        if self.state in (BAR_START, IN_BAR):
            self.safe = (self.text, self.remaining, self.repeat_open)
        self.text += ch
        state = self.state
        if state in (BAR_START, IN_BAR):
            if ch in NOTE_LETTERS or ch == "z":
                self.state, self.suffix, self.octaves = NOTE, "", 0
            elif ch in ACCIDENTALS:
                self.state = ACCIDENTAL
            elif ch == "|":
                self._bar_done()
                self.state = PIPE
            elif ch == ":":
                self.state = COLON
            # ' ' and '\n' leave the state as it is
        elif state == ACCIDENTAL:
            self.state, self.suffix, self.octaves = NOTE, "", 0
        elif state == NOTE:
            if ch in ",'":
                self.octaves += 1
            else:
                self.suffix += ch
        elif state == PIPE:
            if ch == ":":
                self.repeat_open = True
                self.state = BAR_START
            else:  # ']'
                self.state = ENDED
        elif state == COLON:  # ':|'
            self.repeat_open = False
            self._bar_done()
            self.state = BAR_START
        elif state == ENDED:
            self.state = ENDED_NL

    def _advance_header(self, ch: str) -> None:
        part = self.template[0]
        if isinstance(part, str):
            self.slot += ch
            done = self.slot == part
        else:
            done = ch == "\n"
            if done:
                self.values[part[0]] = self.slot
            else:
                self.slot += ch
        if done:
            self.template.pop(0)
            self.slot = ""
        if not self.template:
            meter = parse_meter(self.values["M"])
            unit = (
                parse_length(self.values["L"])
                if self.values.get("L")
                else default_unit_length(meter)
            )
            self.capacity = self.remaining = meter.bar / unit
            self.state = BAR_START

    def _bar_done(self) -> None:
        self.bars += 1
        self.remaining = self.capacity

    def close(self) -> None:
        """Ask the tune to end as soon as it can: finish the bar, close a repeat, end."""
        self.closing = True

    def completion(self) -> str:
        """The text cut back to the last token boundary, with the bar filled by rests and a
        final bar line: a valid ending for a tune that ran out of room."""
        if self.state is None:
            return self.text
        if self.state in (ENDED, ENDED_NL):
            return self.text if self.text.endswith("\n") else self.text + "\n"
        text, remaining, repeat_open = self.safe
        if self.state in (BAR_START, IN_BAR):
            text, remaining, repeat_open = self.text, self.remaining, self.repeat_open
        text = text.rstrip(" \n")
        if text.endswith("|:"):
            text, repeat_open = text[:-2] + "|", False  # an empty repeat: drop it
        if remaining == self.capacity and text.endswith(("|", ":|")):
            return (
                text
                + (
                    "]"
                    if text.endswith("|") and not text.endswith(":|") and not repeat_open
                    else ""
                )
                + "\n"
            )
        fill = ""
        if remaining > 0:
            fill = f"z{remaining.numerator}" + (
                f"/{remaining.denominator}" if remaining.denominator > 1 else ""
            )
        return text + fill + (":|" if repeat_open else "|]") + "\n"


_NOTE_STARTS = frozenset(NOTE_LETTERS) | frozenset(ACCIDENTALS) | {"z"}
