"""The ABC checker: headers, tokens, bar durations and repeat structure of one tune.

Pure Python and linear in the length of the tune. Durations are exact fractions of a whole
note. A bar is *mid-section* when it is neither the first bar of a section (which may be a
pickup) nor the last bar before a section boundary (which may close it), where boundaries
are the start and end of the tune, repeat signs, double bars, endings and meter changes.
Only mid-section bars are expected to fill the meter exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from musicseq.notation.durations import BAR_TOKEN as _BAR_TOKEN
from musicseq.notation.durations import ENDING as _ENDING
from musicseq.notation.durations import LENGTH_SUFFIX as _LENGTH_SUFFIX
from musicseq.notation.durations import TICKS, broken_factors, is_compound, tuplet_q
from musicseq.notation.durations import length_multiplier as _multiplier
from musicseq.notation.tunebook import (
    ABCError,
    ParsedTune,
    parse_key,
    parse_length,
    parse_meter,
    parse_tune,
)

NOTE_LETTERS = frozenset("ABCDEFGabcdefg")
REST_LETTERS = frozenset("zx")
# ABC 2.1: '.' '~' and the letters H-W, h-w (redefinable with U:) are decoration shortcuts.
DECORATION_SHORTCUTS = (
    frozenset(".~") | frozenset("HIJKLMNOPQRSTUVW") | frozenset("hijklmnopqrstuvw")
)
IGNORED = frozenset(" \t`\\y$*")
MAX_PROBLEMS = 50
_NOTE = re.compile(r"[\^_=]*[A-Ga-g][,']*(\d*(?:/+\d*)*)")
NOTE_START = frozenset("^_=ABCDEFGabcdefg")
# "+trill+" is a decoration, "+E3A3+" an abc 1.6 chord (O'Neill's uses them).
_PLUS_DECORATION = re.compile(r"[a-z]+|[<>]|\d|\.|[a-zA-Z]+\(|[a-zA-Z]+\)|mf|mp|pp+|ff+|sfz")
# The head of a note (accidentals, letter, octave marks), without its length.
_NOTE_HEAD = re.compile(r"[\^_=]*[A-Ga-g][,']*")

# Kinds of the raw events the walk records when asked (see ``_BodyChecker``).
NOTE, CHORD, REST, TIE, BAR, FIELD = "note", "chord", "rest", "tie", "bar", "field"


def _whole(value):
    """An int when ``value`` is a whole number, else the value itself."""
    return int(value) if value == int(value) else value


@dataclass
class Bar:
    """One bar: where it starts, its duration, and whether it touches a section boundary."""

    line: int
    column: int
    duration: Fraction
    expected: Fraction | None  # the meter's bar length; None for free meter
    opens_section: bool = False
    closes_section: bool = False

    @property
    def mid_section(self) -> bool:
        return not (self.opens_section or self.closes_section)

    @property
    def exact(self) -> bool:
        return self.expected is not None and self.duration == self.expected


@dataclass
class CheckReport:
    """What the checker found in one tune."""

    headers_ok: bool = False
    bars: list[Bar] = field(default_factory=list)
    repeats_balanced: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def mid_section_bars(self) -> list[Bar]:
        return [b for b in self.bars if b.mid_section and b.expected is not None]

    @property
    def bars_checked(self) -> int:
        return len(self.mid_section_bars)

    @property
    def bars_exact(self) -> int:
        return sum(b.exact for b in self.mid_section_bars)

    @property
    def all_bars_exact(self) -> bool:
        return self.bars_checked > 0 and self.bars_exact == self.bars_checked

    @property
    def ok(self) -> bool:
        """Headers fine, repeats balanced, every mid-section bar exact, no token problems."""
        return (
            self.headers_ok and self.repeats_balanced and self.all_bars_exact and not self.problems
        )

    def problem(self, line: int, column: int, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"line {line}, column {column}: {message}")

    def to_dict(self) -> dict:
        return {
            "headers_ok": self.headers_ok,
            "bars": len(self.bars),
            "bars_checked": self.bars_checked,
            "bars_exact": self.bars_exact,
            "repeats_balanced": self.repeats_balanced,
            "problems": list(self.problems),
        }


def check_text(text: str) -> CheckReport:
    """Check ABC text of one tune; a tune that cannot even be parsed gets ``headers_ok=False``."""
    try:
        tune = parse_tune(text)
    except ABCError as exc:
        report = CheckReport()
        report.problem(exc.line, 1, f"{exc.reason}{': ' + exc.detail if exc.detail else ''}")
        return report
    return check_tune(tune)


def count_bars(tune: ParsedTune) -> int:
    """Bars with music in them, as the checker closes them (an ending or a pickup is a bar)."""
    return len(check_tune(tune).bars)


def check_tune(tune: ParsedTune) -> CheckReport:
    report = CheckReport()
    report.headers_ok = _check_headers(tune, report)
    try:
        meter = tune.meter
        unit = tune.unit_length
    except ValueError:
        return report
    first_body_line = len(tune.headers) + 1
    _BodyChecker(report, meter.bar, unit).run(tune.body, first_body_line)
    return report


def _check_headers(tune: ParsedTune, report: CheckReport) -> bool:
    ok = True
    names = [k for k, _ in tune.headers]
    if not names or names[0] != "X":
        report.problem(1, 1, "the first field must be X:")
        ok = False
    elif not tune.get("X", "").strip().isdigit():
        report.problem(1, 1, "X: must be a number")
        ok = False
    for name in ("M", "K"):
        if name not in names:
            report.problem(1, 1, f"missing {name}: field")
            ok = False
    for line, (name, value) in enumerate(tune.headers, start=1):
        try:
            if name == "M":
                parse_meter(value)
            elif name == "L":
                parse_length(value)
            elif name == "K":
                parse_key(value)
        except ValueError as exc:
            report.problem(line, 1, str(exc))
            ok = False
    return ok


class _BodyChecker:
    """Walks the body once, token by token, accumulating bar durations.

    With ``trace`` it records ``(line, column index, ticks into the bar, bar length)`` before
    every token; with ``events`` it records the music as tuples
    ``(kind, line, column index, value, extra)`` in the order written:

    - ``(NOTE, …, head, ticks)``: ``head`` is the note without its length (``"^c'"``), ticks
      its duration after tuplet and broken-rhythm factors (``TICKS`` per whole note);
    - ``(CHORD, …, heads, ticks)``: the heads of the chord's notes as written;
    - ``(REST, …, letter, ticks)`` for ``z x`` and each bar of ``Z X``;
    - ``(TIE, …, "-", 0)``;
    - ``(BAR, …, token, ending)``: a bar line or repeat sign as written and the ending
      numbers after it (``"1"``, ``"2"``, ``""``); a multi-bar rest gives ``"|"`` per bar and
      the end of the body gives ``""``. A bar is closed the same way as the checker's;
    - ``(FIELD, …, name, value)`` for field lines and inline fields in the body.

    Neither is ever consulted by the walk, and without them the hot path pays one test.
    """

    def __init__(
        self,
        report: CheckReport,
        bar: Fraction | None,
        unit: Fraction,
        trace: list | None = None,
        events: list | None = None,
    ):
        self.report = report
        self.trace = trace
        self.events = events
        self.last_event = -1  # index in events of the note, chord or rest in last_note
        self.bar_length = bar
        self.unit_ticks = _whole(unit * TICKS)
        self.duration = 0  # ticks in the current bar
        self.tick_cache: dict = {}
        self.has_content = False
        self.start = (0, 0)
        self.section_open = True  # the next bar opens a section
        self.tuplet_left = 0
        self.tuplet_ratio = Fraction(1)
        self.broken: Fraction | None = None  # factor for the next note after > or <
        self.last_note: tuple[Fraction, bool] | None = None  # (duration added, in tuplet)
        self.repeat_open = False
        self.compound = False

    # --- bars ------------------------------------------------------------------------------

    def close_bar(self, closes_section: bool, opens_next: bool) -> None:
        if self.has_content or self.duration:
            self.report.bars.append(
                Bar(
                    self.start[0],
                    self.start[1],
                    Fraction(self.duration) / TICKS
                    if isinstance(self.duration, Fraction)
                    else Fraction(self.duration, TICKS),
                    self.bar_length,
                    opens_section=self.section_open,
                    closes_section=closes_section,
                )
            )
            self.section_open = opens_next
        elif closes_section and self.report.bars:
            # An empty bar before a boundary (e.g. "| :|" or "|]" after "|"): the previous bar closes.
            self.report.bars[-1].closes_section = True
            self.section_open = opens_next
        else:
            self.section_open = self.section_open or opens_next
        self.duration = 0
        self.has_content = False
        self.broken = None
        self.last_note = None

    def add(self, ticks) -> None:
        """Add a note or rest of ``ticks`` (before tuplet and broken-rhythm factors)."""
        if ticks < 0:  # a length suffix that divides by zero
            self.report.problem(
                self.start[0], self.start[1], "note length divided by zero in this bar"
            )
            ticks = 0
        in_tuplet = self.tuplet_left > 0
        value = ticks
        if in_tuplet:
            value = _whole(value * self.tuplet_ratio)
            self.tuplet_left -= 1
        if self.broken is not None:
            value = _whole(value * self.broken)
            self.broken = None
        self.duration += value
        self.has_content = True
        self.last_note = (value, in_tuplet)

    def apply_broken(self, symbol: str, line: int, column: int) -> None:
        if self.last_note is None:
            self.report.problem(line, column, f"broken rhythm '{symbol}' without a note before it")
            return
        first, second = broken_factors(symbol)
        value, _ = self.last_note
        self.duration += _whole(value * (first - 1))
        self.broken = second
        if self.events is not None and self.last_event >= 0:
            kind, line_, column_, head, ticks = self.events[self.last_event]
            self.events[self.last_event] = (kind, line_, column_, head, _whole(ticks * first))

    def emit(self, kind: str, line: int, column: int, value, extra=None) -> None:
        """Record an event; a note, chord or rest takes the duration ``add`` just gave it."""
        if kind in (NOTE, CHORD, REST):
            self.last_event = len(self.events)
            extra = self.last_note[0]
        self.events.append((kind, line, column, value, extra))

    # --- the walk ---------------------------------------------------------------------------

    def run(self, body: tuple[str, ...], first_line: int) -> None:
        from musicseq.notation.tunebook import _FIELD_RE

        self.set_meter_flags()
        events = self.events
        for offset, line in enumerate(body):
            number = first_line + offset
            field_match = _FIELD_RE.match(line)
            if field_match:
                self.read_field(field_match.group(1), field_match.group(2).strip(), number, 1)
                continue
            self.walk_line(line, number)
        self.close_bar(closes_section=True, opens_next=True)
        if events is not None:
            self.emit(BAR, first_line + len(body) - 1, 0, "", "")
        if self.repeat_open:
            self.report.repeats_balanced = False
            self.report.problem(first_line + len(body) - 1, 1, "a repeat '|:' is never closed")

    def set_meter_flags(self) -> None:
        self.compound = is_compound(self.bar_length)

    def read_field(self, name: str, value: str, line: int, column: int) -> None:
        if self.events is not None:
            self.emit(FIELD, line, column - 1, name, value)
        try:
            if name == "M":
                meter = parse_meter(value)
                self.close_bar(closes_section=True, opens_next=True)
                self.bar_length = meter.bar
                self.set_meter_flags()
            elif name == "L":
                self.unit_ticks = _whole(parse_length(value) * TICKS)
            elif name == "K":
                parse_key(value)
        except ValueError as exc:
            self.report.problem(line, column, str(exc))

    def walk_line(self, text: str, number: int) -> None:
        i, n = 0, len(text)
        report = self.report
        trace = self.trace
        events = self.events
        tick_cache = self.tick_cache
        note_match = _NOTE.match
        while i < n:
            ch = text[i]
            if trace is not None:  # (line, column index, ticks into the bar, bar length)
                trace.append((number, i, self.duration, self.bar_length))
            if ch in NOTE_START:  # the hot path: a note, in one regex match
                match = note_match(text, i)
                if match is None:
                    report.problem(number, i + 1, "accidental without a note")
                    i += 1
                    continue
                ticks = tick_cache.get((self.unit_ticks, match.group(1)))
                if ticks is None:
                    ticks, _ = self.read_suffix_ticks(match.group(1), 0)
                if self.tuplet_left or self.broken is not None or ticks < 0:
                    self.add(ticks)
                else:  # add() without factors
                    self.duration += ticks
                    self.has_content = True
                    self.last_note = (ticks, False)
                if events is not None:
                    self.emit(NOTE, number, i, text[i : match.start(1)])
                i = match.end()
                continue
            column = i + 1
            if ch in IGNORED:
                i += 1
            elif ch == '"':
                end = text.find('"', i + 1)
                if end < 0:
                    report.problem(number, column, "unclosed chord symbol or annotation")
                    return
                i = end + 1
            elif ch == "!":
                end = text.find(ch, i + 1)
                i = i + 1 if end < 0 else end + 1  # a lone '!' is an old-style line break
            elif ch == "+":
                end = text.find(ch, i + 1)
                if end < 0:
                    report.problem(number, column, "unclosed '+'")
                    return
                if _PLUS_DECORATION.fullmatch(text[i + 1 : end]):
                    i = end + 1
                else:
                    i = self.read_bracket(
                        text[:i] + "[" + text[i + 1 : end] + "]" + text[end + 1 :], i, number
                    )
            elif ch in DECORATION_SHORTCUTS:
                i += 1
            elif ch == "{":
                end = text.find("}", i + 1)
                if end < 0:
                    report.problem(number, column, "unclosed grace notes '{'")
                    return
                i = end + 1
            elif ch == "|" and (i + 1 == n or text[i + 1] not in "|:]0123456789"):
                self.close_bar(closes_section=False, opens_next=False)  # a plain bar line
                if events is not None:
                    self.emit(BAR, number, i, "|", "")
                i += 1
                self.start = (number, i + 1)
            elif ch in "|:[" and _BAR_TOKEN.match(text, i):
                i = self.read_bar_token(text, i, number)
            elif ch == "[":
                i = self.read_bracket(text, i, number)
            elif ch == "]":
                report.problem(number, column, "']' without '['")
                i += 1
            elif ch in REST_LETTERS:
                ticks, end = self.read_suffix_ticks(text, i + 1)
                self.add(ticks)
                if events is not None:
                    self.emit(REST, number, i, ch)
                i = end
            elif ch in "ZX":
                count, i = self.read_number(text, i + 1)
                for _ in range(
                    min(count or 1, 64)
                ):  # multi-bar rest: whole bars (at most 64 counted)
                    self.add(_whole((self.bar_length or 0) * TICKS))
                    if events is not None:
                        self.emit(REST, number, column - 1, ch)
                    self.close_bar(False, False)
                    if events is not None:
                        self.emit(BAR, number, column - 1, "|", "")
            elif ch == "(":
                i = self.read_tuplet(text, i, number)
            elif ch in ")-&":
                if ch == "-" and events is not None:
                    self.emit(TIE, number, i, ch, 0)
                i += 1
            elif ch in "<>":
                j = i
                while j < n and text[j] == ch:
                    j += 1
                self.apply_broken(text[i:j], number, column)
                i = j
            else:
                report.problem(number, column, f"unrecognised character {ch!r}")
                i += 1

    # --- tokens -----------------------------------------------------------------------------

    def read_bar_token(self, text: str, i: int, number: int) -> int | None:
        """Handle a bar line, repeat sign or ending at ``i``; returns the index after it, or None."""
        match = _BAR_TOKEN.match(text, i)
        if not match:
            return None
        token, j = match.group(), match.end()
        ending = token.endswith(("|", "[")) and _ENDING.match(text, j)
        if ending:
            j = ending.end()
        closes, opens = token.startswith(":"), token.endswith(":")
        if self.events is not None:
            self.emit(BAR, number, i, token, ending.group() if ending else "")
        if token == "[|]":  # an invisible bar line
            self.close_bar(closes_section=False, opens_next=False)
            self.start = (number, j + 1)
            return j
        boundary = (
            closes
            or opens
            or bool(ending)
            or token.startswith("[")
            or token.count("|") > 1
            or "]" in token
        )
        # ':|' without '|:' repeats from the previous boundary or the start (common usage).
        if closes:
            self.repeat_open = False
        if opens:
            if self.repeat_open and not closes:
                self.report.repeats_balanced = False
                self.report.problem(number, i + 1, "'|:' inside a repeat that is still open")
            self.repeat_open = True
        self.close_bar(closes_section=boundary, opens_next=boundary)
        self.start = (number, j + 1)
        return j

    def read_bracket(self, text: str, i: int, number: int) -> int:
        """Inline field ``[M:3/4]`` or chord ``[ceg]2``."""
        n = len(text)
        if i + 2 < n and text[i + 1].isalpha() and text[i + 2] == ":":
            end = text.find("]", i)
            if end < 0:
                self.report.problem(number, i + 1, "unclosed inline field")
                return n
            self.read_field(text[i + 1], text[i + 3 : end].strip(), number, i + 1)
            return end + 1
        end = text.find("]", i)
        if end < 0:
            self.report.problem(number, i + 1, "unclosed chord '['")
            return n
        # The chord lasts as long as its first note (ABC 2.1), times the length after ']'.
        inner, j, first = text[i + 1 : end], 0, None
        heads: list[str] = []
        while j < len(inner):
            if inner[j] in "^_=" or inner[j] in NOTE_LETTERS:
                if self.events is not None:
                    head = _NOTE_HEAD.match(inner, j)
                    if head:
                        heads.append(head.group())
                j, duration = self.read_note(inner, j, number)
                if first is None:
                    first = duration
            elif inner[j] in '-.~ "' or inner[j] in DECORATION_SHORTCUTS or inner[j] in "!":
                j += 1
            else:
                self.report.problem(number, i + 1 + j, f"unexpected {inner[j]!r} in a chord")
                j += 1
        length, k = self.read_length(text, end + 1)
        if first is None:
            self.report.problem(number, i + 1, "empty chord")
        else:
            self.add(_whole(first * length))
            if self.events is not None:
                self.emit(CHORD, number, i, tuple(heads))
        return k

    def read_note(self, text: str, i: int, number: int) -> tuple[int, Fraction | None]:
        n = len(text)
        j = i
        while j < n and text[j] in "^_=":
            j += 1
        if j >= n or text[j] not in NOTE_LETTERS:
            self.report.problem(number, i + 1, "accidental without a note")
            return j, None
        j += 1
        while j < n and text[j] in ",'":
            j += 1
        ticks, j = self.read_suffix_ticks(text, j)
        return j, ticks

    @staticmethod
    def read_number(text: str, i: int) -> tuple[int | None, int]:
        j = i
        while j < len(text) and text[j].isdigit():
            j += 1
        return (int(text[i:j]) if j > i and j - i < 6 else None), j

    def read_suffix_ticks(self, text: str, i: int):
        """Ticks of a note with the length suffix at ``i`` under the current L:; (ticks, end)."""
        end = _LENGTH_SUFFIX.match(text, i).end()
        key = (self.unit_ticks, text[i:end])
        ticks = self.tick_cache.get(key)
        if ticks is None:
            ticks = _whole(self.unit_ticks * _multiplier(key[1]))
            if len(self.tick_cache) < 10_000:
                self.tick_cache[key] = ticks
        return ticks, end

    @staticmethod
    def read_length(text: str, i: int) -> tuple[Fraction, int]:
        """The note-length suffix at ``i``: (multiplier, end)."""
        end = _LENGTH_SUFFIX.match(text, i).end()
        return _multiplier(text[i:end]), end

    def read_tuplet(self, text: str, i: int, number: int) -> int:
        """``(p``, ``(p:q``, ``(p:q:r``; a plain ``(`` is a slur."""
        p, j = self.read_number(text, i + 1)
        if p is None:
            return i + 1  # slur
        q = r = None
        if j < len(text) and text[j] == ":":
            q, j = self.read_number(text, j + 1)
            if j < len(text) and text[j] == ":":
                r, j = self.read_number(text, j + 1)
        if p <= 0 or p > 32:
            self.report.problem(number, i + 1, f"bad tuplet ({p}")
            return j
        q = q or tuplet_q(p, self.compound)
        self.tuplet_ratio = Fraction(q, p)
        self.tuplet_left = r or p
        return j


def tune_key_and_meter(text: str) -> tuple[str | None, str | None]:
    """(key, meter) header values of ABC text, or None where absent/unparsable."""
    try:
        tune = parse_tune(text)
    except ABCError:
        return None, None
    return tune.get("K"), tune.get("M")


def bar_positions(text: str) -> list[float]:
    """For every character of a tune's text, how far into its bar it is (0 … 1 of the meter).

    Header lines and free-meter music get 0. The value of a character is that of the
    token it belongs to (the time elapsed in the bar when the token starts).
    """
    tune = parse_tune(text)
    trace: list = []
    checker = _BodyChecker(CheckReport(), tune.meter.bar, tune.unit_length, trace)
    checker.run(tune.body, len(tune.headers) + 1)
    starts = {}  # (line number, column) -> fraction of the bar
    for number, column, ticks, bar in trace:
        starts[(number, column)] = float(Fraction(ticks) / TICKS / bar) if bar else 0.0
    values = []
    for number, line in enumerate(tune.text.split("\n"), start=1):
        current = 0.0
        for column in range(len(line)):
            current = starts.get((number, column), current)
            values.append(current)
        values.append(current)  # the newline
    return values[: len(tune.text)]


def tune_events(tune: ParsedTune) -> list[tuple]:
    """The music of a parsed tune as the walk's raw events (see :class:`_BodyChecker`).

    One walk and one duration model with the checker: bars close exactly where its bars do.
    Raises ``ValueError`` when the header's meter or unit length cannot be read.
    """
    events: list[tuple] = []
    checker = _BodyChecker(CheckReport(), tune.meter.bar, tune.unit_length, events=events)
    checker.run(tune.body, len(tune.headers) + 1)
    return events


__all__ = [
    "count_bars",
    "BAR",
    "CHORD",
    "FIELD",
    "NOTE",
    "REST",
    "TIE",
    "Bar",
    "CheckReport",
    "bar_positions",
    "check_text",
    "check_tune",
    "tune_events",
    "tune_key_and_meter",
]
