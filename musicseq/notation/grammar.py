"""A character-level grammar of the corpus's ABC, with form control, for constrained decoding.

:class:`TuneGrammar` follows one tune as it is written, character by character, and says
which next characters keep it valid; :mod:`musicseq.sampling` masks a language model's
logits with it. Every tune the grammar lets through passes
:func:`musicseq.notation.checker.check_text` with all mid-section bars exact. Pure Python;
durations come from :mod:`musicseq.notation.durations` (integer ``TICKS``).

What it writes
--------------
*Header.* Either the corpus's own headers (``X:`` number, ``T:`` one to three times, then
``R:`` ``M:`` ``L:`` ``Q:`` ``P:`` in any order, each at most once, and ``K:`` last, after
``M:``), or, when header values are forced with ``fixed``, the template ``X:1 / T: / M: /
L: / K:``. ``T:``, ``R:`` and ``P:`` are free text from a character set, ``Q:`` a tempo
(``1/4=120``, ``80``, ``3/8=104 "Slow"``), ``M:``/``L:``/``K:`` values come from
:data:`METERS`, :data:`LENGTHS` and :data:`KEYS`.

*Body.* Notes with accidentals (``^ ^^ _ __ =``), octave marks (up to two) and a length
suffix from :data:`SUFFIXES`; rests ``z`` ``x``; chords ``[ceg]`` (as long as their first
note; no length after ``]``, which abc2midi reads as the chord's whole length, the notes'
own ignored, and the corpus never writes); tuplets ``(2`` ``(3`` (their notes' durations
tracked exactly); broken rhythm ``>`` ``<`` ``>>`` ``<<`` (between two undotted notes written
alike, not chained as ``A>B>c``: abc2midi refuses the rest and abcm2ps cannot draw a dotted
note made longer; the corpus rarely writes them); ties ``-``; slurs ``( )`` (a ``)`` without
its ``(`` is tolerated, as in the corpus); grace notes ``{...}`` (they take no time; a group
waits for its note, with no second group or ``~`` before it);
decorations (:data:`DECORATIONS`, :data:`BANG_DECORATIONS`); annotations ``"..."``; bar lines
and repeats ``| || ||| |] |: :| :: :|: :|| :||: ||: [|]``; endings ``|1 |2 :|2 [1 [2``;
spaces, `````, tabs, line breaks and ``\\`` continuations; body field lines ``K: M: L: P:``
and inline fields ``[K:..] [M:..] [L:..]`` at the start of a bar.

*Bars.* A plain bar line may only come when the bar is full, except at the edges of a
section (the checker's rule: a section's first bar may be a pickup of any length, and its
last bar, closed by a repeat sign, double bar, ending, meter change or the end, may be
short). A short bar closed by a plain ``|`` is allowed when a boundary follows before the
next note (``E2 E |`` then ``||`` on the next line, as the corpus writes). No bar may be
longer than the meter. Every state keeps a way to finish: between tokens the time in the
bar is a whole number of grid steps (the shortest writable note), which any remainder can
be filled with (only a free pickup may leave the grid, and it then ends with a bar line); a
tuplet, a broken pair, a chord or a slur is only begun when it can be completed.

*Form* (``form="AABB"``, ``bars_per_part=8``). Each run of a letter is a part, repeated
when the letter is doubled. A repeated part is written ``|: ... :|`` (optionally with
endings ``|1 ... :|2 ...`` or ``[1 ... :| [2 ...``, of 1 to ``bars_per_part // 4`` bars
each), an unrepeated one ends with ``||`` (or ``|]`` at the end). Each part has exactly
``bars_per_part`` bars, a pickup and the part's last bar counting as one: the first part may
begin with a pickup of any length (``p``), every part then ends with a bar of ``bar - p``,
and every later part begins with the same pickup, so that each part's last bar and the next
part's pickup make one bar (a later part without it, which 9% of the corpus's tunes with a
pickup write, leaves the bar where the parts join short: abc2midi reports it). After the
last part only a line break and the end are allowed. ``cadence="tonic"``
makes the tune's last note the key's tonic (mode-aware, any octave); with a form the
final bar cannot be completed by any other note.

State (all bounded integers)
----------------------------
``allowed()`` is a function of this tuple alone, which a later TensorFlow version can keep
as one integer vector per stream (tries over finite sets become node-id tables):

=============  ==========================================================================
phase          which token is being written (header literal/field/value, between tokens,
               accidental, note, bar token, ``[``, chord, grace, annotation, ``!..!``,
               field line, inline field, backslash, done)
node, flag     position inside the token: trie node (bar tokens, suffixes, values), text
               length, note flags (lower case, rest, tonic), value flags
kind, seen     header: field or literal id; fields seen (bit mask, T count) or template item
ctx            where a note stands: in the tune, a chord, a grace group, or the chord's
               length after ``]``
bar, unit      ticks of a bar (meter) and of ``L:``
elapsed        ticks written in the current bar
first          the current bar opens a section (it may be a pickup)
content        the current bar has a note, rest or chord
pending_mid    the last bar was closed by a plain bar line and may be a checked mid bar
mid_seen       a mid-section bar exists (the checker needs one)
bars           bars written (saturates at ``min_bars``)
repeat         a ``|:`` is open
slur           open slurs (at most 3)
tup_left       notes left in the tuplet; ``tup_p`` its p
broken         pending broken rhythm (0, ``>``, ``>>``, ``<``, ``<<``)
last           ticks of the last note in this bar (for broken rhythm; 0 after a broken pair)
last_tonic     the tune's last note is the tonic
spoiled        the tonic's letter got another accidental in this bar
tonic          the key's tonic: letter index * 3 + accidental + 1
octaves, acc   octave marks and accidental of the note being written
ch_first,ch_n  chord: its duration (first note) and notes so far; grace: notes so far, and
               after it 1 until a note comes (no second group or ``~`` before one)
need_note      a slur, broken rhythm or tuplet waits for its note
prev           class of the previous character (space, newline, note end, tie, bar, ...)
col            line column, saturated: 0 line start, 1 one letter, 2 more, 3 only spaces
               (no blank line: ABC ends a tune there)
after_bar      nothing but spaces since the last bar token
closing        :meth:`TuneGrammar.close` was called
part, part_phase, pfirst, bar_in_part, pickup, ending, end_len, end_bars
               form: part index, part opening/body/done, first bar of the part, full bars
               in the part, the pickup (-1 not yet chosen), ending (0, 1, 2, 3 = ``[2``
               expected), ending length and bars written in the ending
short          a short bar was closed by ``|``: a boundary must come before a note
=============  ==========================================================================

Allowed sets and transitions are cached per state in a machine shared by grammars with the
same configuration, so decoding costs about a dictionary lookup per character.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterable
from fractions import Fraction
from math import gcd
from operator import itemgetter

from musicseq.notation.durations import (
    TICKS,
    broken_factors,
    is_compound,
    length_multiplier,
    tuplet_q,
)
from musicseq.notation.tunebook import (
    Meter,
    default_unit_length,
    parse_key,
    parse_length,
    parse_meter,
)

END = "<eot>"  # the end-of-tune token, as an element of an allowed set

METERS = ("4/4", "6/8", "3/4", "2/4", "9/8", "12/8", "3/8", "2/2", "6/4", "3/2", "C", "C|")
LENGTHS = ("1/8", "1/16", "1/4")
_TONICS = ("C", "D", "E", "F", "G", "A", "B", "Bb", "Eb", "Ab", "F#", "C#")
_MODES = (
    *("", "m", "maj", "min", "mix", "dor", "phr", "lyd", "loc"),
    *("Mix", "Dor", "Min", "Maj", " Major", " Minor", " Mixolydian", " Dorian", " Lydian"),
    *(" major", " minor", "M", "dorian", "lydian"),
)
KEYS = tuple(t + m for t in _TONICS for m in _MODES)

# Note-length suffixes (multiples of L:): 99.99% of the corpus's notes.
SUFFIXES = ("", "2", "3", "4", "6", "8", "/", "/2", "//", "/4", "3/2", "3/", "3/4")
TUPLETS = (2, 3)
BROKEN = (">", ">>", "<", "<<")
DECORATIONS = "~.HMSTUkuvy"  # shortcuts seen in the corpus, and the spacer y
BANG_DECORATIONS = (
    *("!trill!", "!fermata!", "!D.C.!", "!D.S.!", "!Segno!", "!segno!", "!coda!", "!fine!"),
    *("!sf!", "!p!", "!pp!", "!mp!", "!mf!", "!f!", "!ff!", "!0!", "!1!", "!2!", "!3!", "!4!"),
)
TITLE_CHARS = frozenset(string.ascii_letters + string.digits + " !\"&'(),-.:;=?")
PART_CHARS = frozenset(string.ascii_letters + string.digits + " .")
QUOTE_CHARS = frozenset(string.ascii_letters + string.digits + " #$&'()*+,-./:;<=>?@[]^_~")
MAX_TITLE = 72
MAX_TEXT = 24  # R:, P:, Q: text
MAX_QUOTE = 32
MAX_X_DIGITS = 6
MAX_T_FIELDS = 3
MAX_SLUR = 3
MAX_CHORD = 4
MAX_GRACE = 8
MAX_OCTAVES = 2
MAX_BARS = 64  # bar counters saturate here

NOTE_LETTERS = "ABCDEFGabcdefg"
REST_LETTERS = "zx"
ACCIDENTALS = "^_="
_LETTER_INDEX = {c: "CDEFGAB".index(c.upper()) for c in NOTE_LETTERS}


class GrammarError(ValueError):
    """A character the grammar does not allow, or a configuration it cannot write."""


# --- the state vector -----------------------------------------------------------------------

_FIELDS = (
    *("phase", "node", "flag", "kind", "seen", "ctx"),
    *("bar", "unit", "elapsed", "first", "content", "pending_mid", "mid_seen", "bars", "repeat"),
    *("slur", "tup_left", "tup_p", "broken", "last", "last_tonic", "spoiled", "tonic"),
    *("octaves", "acc", "ch_first", "ch_n", "need_note", "prev", "col", "after_bar", "closing"),
    *("part", "part_phase", "pfirst", "bar_in_part", "pickup", "ending", "end_len", "end_bars"),
    "short",
)
PHASE, NODE, FLAG, KIND, SEEN, CTX = range(0, 6)
BAR, UNIT, ELAPSED, FIRST, CONTENT, PENDING_MID, MID_SEEN, BARS, REPEAT = range(6, 15)
SLUR, TUP_LEFT, TUP_P, BROKEN_, LAST, LAST_TONIC, SPOILED, TONIC = range(15, 23)
OCTAVES, ACC, CH_FIRST, CH_N, NEED_NOTE, PREV, COL, AFTER_BAR, CLOSING = range(23, 32)
PART, PART_PHASE, PFIRST, BAR_IN_PART, PICKUP, ENDING, END_LEN, END_BARS = range(32, 40)
SHORT = 40

# Phases: header, then body tokens.
H_LIT, H_LETTER, H_COLON, H_VALUE = range(4)
READY, ACC_, NOTE, BARTOK, LBRACKET, CHORD, GRACE, QUOTE, BANG, BSLASH = range(4, 14)
FIELD_COLON, FIELD_VALUE, INLINE_COLON, INLINE_VALUE, DONE, DONE_NL = range(14, 20)
# Note contexts.
IN_TUNE, IN_CHORD, IN_GRACE, CHORD_LENGTH = range(4)
# Note flags (NOTE phase).
LOWER, REST, IS_TONIC = 1, 2, 4
# Previous-character classes.
P_OTHER, P_NEWLINE, P_SPACE, P_NOTE, P_TIE, P_BAR, P_INVISIBLE = range(7)
P_LPAREN, P_RPAREN, P_BROKEN, P_DECO, P_GRACE, P_TUPLET = range(7, 13)
# Line columns (COL): 0 line start, 1 one letter (a field's "K:" would follow), 2 more,
# BLANK only spaces so far.
BLANK = 3
# Form part phases.
PART_START, PART_BODY, PART_DONE = range(3)
# Header fields.
F_X, F_T, F_R, F_M, F_L, F_Q, F_P, F_K = range(8)
_FIELD_LETTERS = "XTRMLQPK"
_SEEN_BITS = {F_R: 1, F_M: 2, F_L: 4, F_Q: 8, F_P: 16}
_T_COUNT = 32  # T: count in SEEN, in units of 32
# Value machines.
V_CHOICE, V_TEXT, V_DIGITS, V_TEMPO = range(4)
# Accidental codes → semitones.
_ACC_CODES = {"^": 1, "^^": 2, "_": 3, "__": 4, "=": 5}
_ACC_SHIFT = {0: None, 1: 1, 2: 2, 3: -1, 4: -2, 5: 0}
_BAR_TOKENS = (
    *("|", "||", "|||", "|]", "|:", ":|", "::", ":|:", ":||", ":||:", "||:"),
    *("|1", "|2", ":|2", "[1", "[2", "[|]"),
)


# Broken rhythm follows an undotted note (as in all the corpus's 25,662 pairs), or one in a
# triplet (2/3 of it, ``(3g>fe``): a dotted one made longer or shorter is no note value
# (E3/4>G3/4; abcm2ps: "Note too much dotted").
UNDOTTED = frozenset(2 * TICKS >> k for k in range(10)) | frozenset(
    (2 * TICKS >> k) * 2 // 3 for k in range(10)
)

# The fields _place reads (its cache key; and LAST when a broken pair waits, and while
# closing MID_SEEN / PENDING_MID, through _final_bar).
_PLACE_FIELDS = (
    *(ELAPSED, UNIT, BAR, TUP_LEFT, TUP_P, BROKEN_, PICKUP, CLOSING, PART_PHASE, PFIRST),
    *(ENDING, END_BARS, END_LEN, BAR_IN_PART, PART, SHORT, FIRST),
)
_place_key = itemgetter(*_PLACE_FIELDS)


class _Trie:
    """Prefix tree over a finite set of words; node 0 is the root."""

    def __init__(self, words: Iterable[str]):
        self.children: list[dict[str, int]] = [{}]
        self.word: list[str | None] = [None]
        for w in words:
            node = 0
            for ch in w:
                nxt = self.children[node].get(ch)
                if nxt is None:
                    nxt = len(self.children)
                    self.children.append({})
                    self.word.append(None)
                    self.children[node][ch] = nxt
                node = nxt
            self.word[node] = w
        self.below: list[tuple[str, ...]] = [()] * len(self.children)
        for node in reversed(range(len(self.children))):  # children have larger ids
            words_here = [self.word[node]] if self.word[node] is not None else []
            for child in self.children[node].values():
                words_here.extend(self.below[child])
            self.below[node] = tuple(words_here)


def _parse_form(form: str | None) -> tuple[bool, ...] | None:
    """``"AABB"`` → ``(True, True)``: one entry per part, True when it is repeated."""
    if form is None or form in ("", "free"):
        return None
    if not form.isalpha():
        raise GrammarError(f"form must be letters such as 'AABB' or 'free', got {form!r}")
    runs = [len(list(group)) for _, group in itertools.groupby(form)]
    if any(n > 2 for n in runs):
        raise GrammarError(f"form {form!r}: a part can be written once or repeated (AA)")
    return tuple(n == 2 for n in runs)


def _tonic_code(key: str) -> int:
    """``parse_key`` tonic as letter index * 3 + accidental + 1; -1 for HP/none."""
    tonic, _ = parse_key(key)
    if tonic[0] not in "CDEFGAB":
        return -1
    shift = {"#": 1, "b": -1}.get(tonic[1:2], 0)
    return _LETTER_INDEX[tonic[0]] * 3 + shift + 1


def _unit_ticks(text: str) -> int:
    return int(parse_length(text) * TICKS)


def _bar_ticks(text: str) -> int:
    bar = parse_meter(text).bar
    if bar is None:
        raise GrammarError(f"free meter M:{text} has no bars to constrain")
    return int(bar * TICKS)


def _default_unit(bar: int) -> int:
    """ABC's default L: (tunebook.default_unit_length) for a bar of ``bar`` ticks."""
    length = Fraction(bar, TICKS)
    unit = default_unit_length(Meter(str(length), length.numerator, length.denominator))
    return int(unit * TICKS)


class _Machine:
    """The grammar for one configuration: step function, allowed sets and their caches."""

    def __init__(
        self,
        min_bars: int,
        fixed: dict[str, str],
        alphabet: frozenset[str] | None,
        form: tuple[bool, ...] | None,
        bars_per_part: int,
        cadence: bool,
        template: bool,
    ):
        self.min_bars = max(0, min(min_bars, MAX_BARS))
        self.form = form
        self.bars_per_part = bars_per_part
        self.cadence = cadence
        self.template = template
        self.alphabet = alphabet
        chars = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
        self.chars = tuple(c for c in chars if self.spell(c))
        self.allowed_cache: dict[tuple, frozenset] = {}
        self.step_cache: dict[tuple, tuple | None] = {}
        self.interned: dict[frozenset, frozenset] = {}
        self.fits_cache: dict[tuple, frozenset[int]] = {}

        self.suffixes = _Trie(s for s in SUFFIXES if self.spell(s))
        self.multipliers = {s: length_multiplier(s) for s in self.suffixes.below[0]}
        self.bars_trie = _Trie(t for t in _BAR_TOKENS if self.spell(t))
        self.bang = _Trie(d for d in BANG_DECORATIONS if self.spell(d))
        self.letters = tuple(c for c in NOTE_LETTERS if self.spell(c))
        self.tuplets = tuple(p for p in TUPLETS if self.spell(f"({p}"))
        self.broken = {s: i + 1 for i, s in enumerate(BROKEN) if self.spell(s)}
        self.broken_symbols = {i: s for s, i in self.broken.items()}
        if "|" not in self.chars or not self.letters:
            raise GrammarError("the model's vocabulary cannot write bar lines and notes")
        self.quote_chars = self._charset(QUOTE_CHARS) if self.spell('"') else frozenset()
        self.bracket_starts = tuple(
            c for c in "12|KML" + NOTE_LETTERS + ACCIDENTALS if self.spell(c)
        )
        notes = NOTE_LETTERS + ACCIDENTALS
        ready = notes + REST_LETTERS + '|:[ `\t\n\\"!()23456789-<>{KLMP' + DECORATIONS
        self.candidates = {  # the characters worth trying in each phase
            phase: tuple(c for c in chars if self.spell(c))
            for phase, chars in (
                (READY, ready),
                (ACC_, notes),
                (LBRACKET, "]" + "".join(self.bracket_starts)),
                (CHORD, "]" + notes),
                (GRACE, "} " + notes + DECORATIONS),
                (QUOTE, '"' + "".join(sorted(self.quote_chars))),
                (BSLASH, "\n"),
                (DONE, "\n"),
                (DONE_NL, ""),
            )
        }

        # Header values.
        meters = self._choices("M", METERS, fixed)
        lengths = self._choices("L", LENGTHS, fixed)
        keys = self._choices("K", KEYS, fixed)
        if cadence:
            keys = tuple(k for k in keys if self._tonic_spellable(k))
            if not keys:
                raise GrammarError("no key whose tonic the model's vocabulary can write")
        if "M" in fixed and "L" not in fixed:  # the unit length that goes with a forced meter
            unit = Fraction(_default_unit(_bar_ticks(fixed["M"])), TICKS)
            lengths = (f"{unit.numerator}/{unit.denominator}",)
        for name, options in (("M", meters), ("L", lengths), ("K", keys)):
            if not options and (name != "L" or template):
                raise GrammarError(f"the model's vocabulary cannot write any {name}: value")
        self.lengths_ok = bool(lengths)
        self.meter_ticks = {m: _bar_ticks(m) for m in meters}
        self.unit_of = {u: _unit_ticks(u) for u in lengths}
        self.tonic_of = {k: _tonic_code(k) for k in keys}
        choice = {F_M: _Trie(meters), F_L: _Trie(lengths), F_K: _Trie(keys)}
        self.specs = {
            F_X: (V_DIGITS, MAX_X_DIGITS),
            F_T: (V_TEXT, self._charset(TITLE_CHARS), MAX_TITLE, True),
            F_R: (V_TEXT, self._charset(TITLE_CHARS), MAX_TEXT, False),
            F_Q: (V_TEMPO, self.spell('"')),
            F_P: (V_TEXT, self._charset(PART_CHARS), MAX_TEXT, True),
            **{f: (V_CHOICE, trie) for f, trie in choice.items()},
        }
        if "T" in fixed:
            self.specs[F_T] = (V_CHOICE, _Trie([fixed["T"]]))
        # Body field lines and inline fields; M: and L: change bars, not allowed with a form.
        self.body_fields = (
            {"K": F_K, "P": F_P} if form else {"K": F_K, "P": F_P, "M": F_M, "L": F_L}
        )
        self.inline_fields = {k: v for k, v in self.body_fields.items() if k != "P"}
        self.literals = ("X:1\n", "T:", "M:", "L:", "K:", "X:")
        if template:
            self.items = ((H_LIT, 0), (H_LIT, 1), (H_VALUE, F_T), (H_LIT, 2), (H_VALUE, F_M))
            self.items += ((H_LIT, 3), (H_VALUE, F_L), (H_LIT, 4), (H_VALUE, F_K))
            needed = "X:1\nTMLK"
        else:
            needed = "X:1\nTMK"
        missing = sorted(set(needed) - set(self.chars))
        if missing:
            raise GrammarError(f"the model's vocabulary cannot write a header (no {missing})")

        # Grid, note durations and exact-count sums, per unit length.
        self.units: dict[int, tuple[int, dict[str, int], list[frozenset[int]]]] = {}
        for unit in set(self.unit_of.values()) | {TICKS // 8, TICKS // 16}:
            self._unit_tables(unit)
        for bar in self.meter_ticks.values():
            for unit in self.unit_of.values():
                if bar % self.units[unit][0]:
                    raise GrammarError(f"a bar of {Fraction(bar, TICKS)} is not on the grid")

        if form is not None:
            if bars_per_part < 3:
                raise GrammarError(f"bars_per_part must be at least 3, got {bars_per_part}")
            if any(form) and not self.spell(":|"):
                raise GrammarError("the model's vocabulary cannot write repeats (':|')")

    # --- configuration helpers ------------------------------------------------------------

    def spell(self, text: str) -> bool:
        return self.alphabet is None or all(c in self.alphabet for c in text)

    def _charset(self, chars: frozenset[str]) -> frozenset[str]:
        return frozenset(c for c in chars if self.spell(c))

    def _choices(self, name: str, options: tuple[str, ...], fixed: dict[str, str]):
        if name not in fixed:
            return tuple(o for o in options if self.spell(o))
        value = fixed[name]
        return (value,)

    def _tonic_spellable(self, key: str) -> bool:
        code = _tonic_code(key)
        if code < 0:
            return False
        letter = "CDEFGAB"[code // 3]
        return self.spell(letter) or self.spell(letter.lower())

    def _unit_tables(self, unit: int):
        tables = self.units.get(unit)
        if tables is None:
            ticks = {}
            for suffix, value in self.multipliers.items():
                t = unit * value
                if t.denominator == 1:
                    ticks[suffix] = int(t)
            grid = 0
            for t in ticks.values():
                grid = gcd(grid, t)
            values = sorted(set(ticks.values()))
            sums = [frozenset([0])]
            for _ in range(max(TUPLETS)):
                sums.append(frozenset(a + b for a in sums[-1] for b in values))
            tables = self.units[unit] = (grid, ticks, sums)
        return tables

    # --- cached entry points --------------------------------------------------------------

    def allowed(self, key: tuple) -> frozenset:
        got = self.allowed_cache.get(key)
        if got is None:
            phase = key[PHASE]
            settled = None
            if phase == NOTE:  # continuations, or whatever may follow the finished note
                continuations = ",'0123456789/"
                settled = self._end_note(list(key))
            elif phase == BARTOK:  # the same for a bar token
                continuations = "".join(self.bars_trie.children[key[NODE]])
                word = self.bars_trie.word[key[NODE]]
                settled = self._token(list(key), word) if word is not None else None
            if phase in (NOTE, BARTOK):
                out = {c for c in continuations if self.step(key, c, cache=False) is not None}
                if settled is not None:
                    out |= self.allowed(tuple(settled)) - set(continuations)
            else:
                out = self._try_all(key)
                if self.can_end(key):
                    out.add(END)
            got = frozenset(out)
            got = self.interned.setdefault(got, got)
            if len(self.allowed_cache) > 200_000:
                self.allowed_cache.clear()
            self.allowed_cache[key] = got
        return got

    def _try_all(self, key: tuple) -> set[str]:
        """The characters a step accepts, trying one of each class that behaves alike."""
        phase = key[PHASE]
        if phase == H_VALUE and self.specs[key[KIND]][0] == V_TEXT:
            _, chars, limit, nonblank = self.specs[key[KIND]]
            out = set(chars) if key[NODE] < limit else set()
            if nonblank and not key[FLAG] & 1 and key[NODE] >= limit - 1:
                out.discard(" ")
            if self._value_done(self.specs[key[KIND]], key[NODE], key[FLAG]):
                out.add("\n")
            return out
        if phase == QUOTE:
            out = set(self.quote_chars) if key[NODE] < MAX_QUOTE else set()
            return out | {'"'} if key[NODE] else out
        out = set()
        verdicts: dict[str, bool] = {}
        tonic = key[TONIC] // 3 if key[TONIC] >= 0 else -1
        notes = phase in (READY, ACC_, LBRACKET, CHORD, GRACE)
        for c in self.candidates.get(phase, self.chars):
            if notes and c in _LETTER_INDEX and _LETTER_INDEX[c] != tonic:
                kind = "lower" if c.islower() else "upper"  # non-tonic notes act alike
            elif phase == READY and c in DECORATIONS and c not in "M~":  # ~ after {g}
                kind = "decoration"
            else:
                kind = c
            verdict = verdicts.get(kind)
            if verdict is None:
                verdict = verdicts[kind] = self.step(key, c, cache=False) is not None
            if verdict:
                out.add(c)
        return out

    def step(self, key: tuple, ch: str, cache: bool = True) -> tuple | None:
        """The state after ``ch``, or None if ``ch`` is not allowed."""
        if cache:
            got = self.step_cache.get((key, ch), 0)
            if got != 0:
                return got
        s = list(key)
        phase = s[PHASE]
        if phase < READY:
            new = self._header(s, ch)
        else:
            col = s[COL]
            new = self._body(s, ch)
            if new is not None and new[PHASE] >= READY:
                if ch == "\n":
                    new[COL] = 0
                elif ch in " \t`":
                    new[COL] = BLANK if col in (0, BLANK) else 2
                else:
                    new[COL] = 1 if col == 0 and ch.isalpha() else 2
        out = tuple(new) if new is not None else None
        if cache:
            if len(self.step_cache) > 200_000:
                self.step_cache.clear()
            self.step_cache[(key, ch)] = out
        return out

    def can_end(self, key: tuple) -> bool:
        s = self.settle(list(key))
        if s is None:
            return False
        phase = s[PHASE]
        if phase in (DONE, DONE_NL):
            return True
        if phase != READY or s[CONTENT] or not s[AFTER_BAR] or s[REPEAT]:
            return False
        if s[TUP_LEFT] or s[BROKEN_] or s[NEED_NOTE] or not s[MID_SEEN]:
            return False
        if self.cadence and not s[LAST_TONIC]:
            return False
        if s[CLOSING]:
            return True
        return self.form is None and s[BARS] >= self.min_bars

    def settle(self, s: list) -> list | None:
        """Finish a note or bar token that could end here (None if it cannot)."""
        phase = s[PHASE]
        if phase == NOTE:
            return self._end_note(s)
        if phase == BARTOK:
            word = self.bars_trie.word[s[NODE]]
            return self._token(s, word) if word is not None else None
        return s

    # --- header ---------------------------------------------------------------------------

    def initial(self) -> tuple:
        s = [0] * (SHORT + 1)
        s[PHASE], s[KIND] = H_LIT, (0 if self.template else 5)
        s[PICKUP] = -1
        return tuple(s)

    def _header(self, s: list, ch: str) -> list | None:
        phase = s[PHASE]
        if phase == H_LIT:
            literal = self.literals[s[KIND]]
            if ch != literal[s[NODE]]:
                return None
            s[NODE] += 1
            if s[NODE] == len(literal):
                if self.template:
                    return self._next_item(s)
                s[PHASE], s[KIND], s[NODE], s[FLAG] = H_VALUE, F_X, 0, 0
            return s
        if phase == H_LETTER:
            field = _FIELD_LETTERS.find(ch)
            if field <= F_X or not self._field_open(s, field):
                return None
            s[PHASE], s[KIND] = H_COLON, field
            return s
        if phase == H_COLON:
            if ch != ":":
                return None
            s[PHASE], s[NODE], s[FLAG] = H_VALUE, 0, 0
            return s
        # H_VALUE
        spec = self.specs[s[KIND]]
        if ch == "\n":
            if not self._value_done(spec, s[NODE], s[FLAG]):
                return None
            return self._field_done(s, spec)
        got = self._value_step(spec, s[NODE], s[FLAG], ch)
        if got is None:
            return None
        s[NODE], s[FLAG] = got
        return s

    def _field_open(self, s: list, field: int) -> bool:
        seen = s[SEEN]
        if field == F_T:
            return seen // _T_COUNT < MAX_T_FIELDS
        if seen // _T_COUNT == 0:  # T: comes first
            return False
        if field == F_K:
            return bool(seen & _SEEN_BITS[F_M])
        if field == F_Q and not self.spell("0123456789/="):
            return False
        if field == F_L and not self.lengths_ok:
            return False
        return not seen & _SEEN_BITS[field]

    def _next_item(self, s: list) -> list:
        s[SEEN] += 1
        kind, arg = self.items[s[SEEN]]
        s[PHASE], s[KIND], s[NODE], s[FLAG] = kind, arg, 0, 0
        return s

    def _field_done(self, s: list, spec: tuple) -> list:
        field = s[KIND]
        if spec[0] == V_CHOICE:
            word = spec[1].word[s[NODE]]
            if field == F_M:
                s[BAR] = self.meter_ticks[word]
            elif field == F_L:
                s[UNIT] = self.unit_of[word]
            elif field == F_K:
                s[TONIC] = self.tonic_of[word]
        if field == F_K:
            return self._body_start(s)
        if self.template:
            return self._next_item(s)
        if field == F_T:
            s[SEEN] += _T_COUNT
        elif field in _SEEN_BITS:
            s[SEEN] |= _SEEN_BITS[field]
        s[PHASE], s[NODE], s[FLAG], s[KIND] = H_LETTER, 0, 0, 0
        return s

    def _body_start(self, s: list) -> list:
        if not s[UNIT]:
            s[UNIT] = _default_unit(s[BAR])
        self._unit_tables(s[UNIT])
        s[PHASE], s[NODE], s[FLAG], s[KIND], s[SEEN] = READY, 0, 0, 0, 0
        s[FIRST], s[PREV], s[COL] = 1, P_NEWLINE, 0
        s[PART], s[PFIRST], s[PICKUP] = 0, 1, -1
        if self.form is not None:
            s[PART_PHASE] = PART_START if self.form[0] else PART_BODY
        return s

    @staticmethod
    def _value_step(spec: tuple, node: int, flag: int, ch: str) -> tuple[int, int] | None:
        kind = spec[0]
        if kind == V_CHOICE:
            child = spec[1].children[node].get(ch)
            return None if child is None else (child, flag)
        if kind == V_TEXT:
            _, chars, limit, nonblank = spec
            if ch not in chars or node >= limit:
                return None
            if ch == " " and nonblank and not flag & 1 and node >= limit - 1:
                return None
            return node + 1, flag | (ch != " ")
        if kind == V_DIGITS:
            return (node + 1, flag) if ch.isdigit() and node < spec[1] else None
        return _tempo_step(node, ch, spec[1])

    @staticmethod
    def _value_done(spec: tuple, node: int, flag: int) -> bool:
        kind = spec[0]
        if kind == V_CHOICE:
            return spec[1].word[node] is not None
        if kind == V_TEXT:
            return bool(flag & 1) or not spec[3]
        if kind == V_DIGITS:
            return node > 0
        return node in _TEMPO_FINAL

    # --- body: dispatch -------------------------------------------------------------------

    def _body(self, s: list, ch: str) -> list | None:
        phase = s[PHASE]
        if phase == READY:
            return self._ready(s, ch)
        if phase == NOTE:
            return self._note_char(s, ch)
        if phase == BARTOK:
            child = self.bars_trie.children[s[NODE]].get(ch)
            if child is not None:
                if not any(self._token(list(s), t) for t in self.bars_trie.below[child]):
                    return None
                s[NODE] = child
                return s
            word = self.bars_trie.word[s[NODE]]
            if word is None:
                return None
            s = self._token(s, word)
            return None if s is None else self._body(s, ch)
        if phase == ACC_:
            return self._acc_char(s, ch)
        if phase == LBRACKET:
            return self._bracket(s, ch)
        if phase == CHORD:
            if ch == "]":
                return self._chord_end(s) if s[CH_N] >= 2 else None
            if s[CH_N] >= MAX_CHORD:
                return None
            return self._note_start(s, ch)
        if phase == GRACE:
            if ch == "}":
                if not s[CH_N]:
                    return None
                # ch_n 1: the group waits for its note (abc2midi needs one before another
                # group or a roll, ~, and else counts the bar wrong)
                s[PHASE], s[CTX], s[CH_N] = READY, IN_TUNE, 1
                s[PREV], s[AFTER_BAR] = P_GRACE, 0
                return s
            if (ch in DECORATIONS and ch not in ".~") or ch == " ":
                return s  # {vAB}: a bowing mark on the grace notes; { g}
            if s[CH_N] >= MAX_GRACE:
                return None
            return self._note_start(s, ch)
        if phase == QUOTE:
            if ch == '"':
                if not s[NODE]:
                    return None
                s[PHASE], s[NODE], s[PREV], s[AFTER_BAR] = READY, 0, P_OTHER, 0
                return s
            if ch not in self.quote_chars or s[NODE] >= MAX_QUOTE:
                return None
            s[NODE] += 1
            return s
        if phase == BANG:
            child = self.bang.children[s[NODE]].get(ch)
            if child is None:
                return None
            if self.bang.word[child] is not None:
                s[PHASE], s[NODE], s[PREV], s[AFTER_BAR] = READY, 0, P_DECO, 0
            else:
                s[NODE] = child
            return s
        if phase == BSLASH:
            if ch != "\n":
                return None
            s[PHASE], s[PREV] = READY, P_NEWLINE
            return s
        if phase in (FIELD_COLON, INLINE_COLON):
            if ch != ":":
                letter = _FIELD_LETTERS[s[KIND]]
                if phase == INLINE_COLON or letter not in DECORATIONS:
                    return None
                s[PHASE], s[KIND], s[PREV], s[AFTER_BAR] = READY, 0, P_DECO, 0
                return self._ready(s, ch)  # 'M' was a decoration
            s[PHASE] = FIELD_VALUE if phase == FIELD_COLON else INLINE_VALUE
            s[NODE], s[FLAG] = 0, 0
            return s
        if phase in (FIELD_VALUE, INLINE_VALUE):
            return self._field_char(s, ch, inline=phase == INLINE_VALUE)
        if phase == DONE:
            if ch != "\n":
                return None
            s[PHASE] = DONE_NL
            return s
        return None  # DONE_NL: only END

    # --- body: between tokens -------------------------------------------------------------

    def _ready(self, s: list, ch: str) -> list | None:
        prev = s[PREV]
        closing = s[CLOSING]
        if ch in NOTE_LETTERS or ch in REST_LETTERS or ch in ACCIDENTALS:
            return self._note_start(s, ch)
        if ch == "|" or ch == ":":
            if (prev == P_BAR) or (ch == ":" and s[COL] == 1):
                return None
            child = self.bars_trie.children[0].get(ch)
            if child is None or not any(
                self._token(list(s), t) for t in self.bars_trie.below[child]
            ):
                return None
            s[PHASE], s[NODE] = BARTOK, child
            return s
        if ch == "[":
            s[PHASE], s[NODE] = LBRACKET, 0
            if not any(self._bracket(list(s), c) for c in self.bracket_starts):
                return None  # nothing could follow it here
            return s
        if ch == " ":
            if closing and not (prev == P_BAR and s[REPEAT]):
                return None
            s[PREV] = P_SPACE
            return s
        if ch == ")":  # the corpus also closes slurs it never opened: a no-op then
            if prev in (P_LPAREN, P_TUPLET) or (closing and not s[SLUR]):
                return None
            s[SLUR] = max(s[SLUR] - 1, 0)
            s[PREV] = P_RPAREN
            return s
        if closing:
            return None
        if ch == "`" or ch == "\t":
            s[PREV] = P_SPACE
            return s
        if ch == "\n" or ch == "\\":
            if (
                (ch == "\\" and "\n" not in self.chars)
                or prev == P_NEWLINE
                or (ch == "\n" and s[COL] == BLANK)  # a blank line would end the tune
                or s[TUP_LEFT]
                or (s[NEED_NOTE] and not s[BROKEN_])  # "A>\nB" is in the corpus
            ):
                return None
            if ch == "\\":
                s[PHASE] = BSLASH
            s[PREV] = P_NEWLINE
            return s
        field = self.body_fields.get(ch)
        if field is not None and s[COL] == 0 and self._at_bar_start(s):
            s[PHASE], s[KIND] = FIELD_COLON, field  # or a decoration, if ':' does not follow
            return s
        if ch in DECORATIONS:
            if ch == "~" and s[CH_N]:
                return None
            s[PREV], s[AFTER_BAR] = P_DECO, 0
            return s
        if ch == '"':
            if not self.quote_chars:
                return None
            s[PHASE], s[NODE], s[AFTER_BAR] = QUOTE, 0, 0
            return s
        if ch == "!":
            child = self.bang.children[0].get(ch)
            if child is None:
                return None
            s[PHASE], s[NODE], s[AFTER_BAR] = BANG, child, 0
            return s
        if ch == "(":
            if s[SLUR] >= MAX_SLUR or not self._note_possible(s):
                return None
            s[SLUR] += 1
            s[PREV], s[NEED_NOTE], s[AFTER_BAR] = P_LPAREN, 1, 0
            return s
        if ch in "23456789":
            p = int(ch)
            if prev != P_LPAREN or p not in self.tuplets or s[TUP_LEFT] or s[BROKEN_]:
                return None
            q = tuplet_q(p, is_compound(Fraction(s[BAR], TICKS)))
            if not self._tuplet_completes(s, s[ELAPSED], p, p, q):
                return None
            s[SLUR] -= 1
            s[TUP_LEFT], s[TUP_P], s[PREV] = p, p, P_TUPLET
            return s
        if ch == "-":  # a tie; the corpus also writes d>-c and {B}-G
            if prev not in (P_NOTE, P_BROKEN, P_GRACE):
                return None
            s[PREV] = P_TIE
            return s
        if ch == ">" or ch == "<":
            return self._broken(s, ch)
        if ch == "{":  # grace notes take no time (the corpus even puts them before bar lines)
            if not self.spell("}") or s[CH_N]:
                return None
            s[PHASE], s[CTX], s[CH_N], s[AFTER_BAR] = GRACE, IN_GRACE, 0, 0
            return s
        return None

    def _at_bar_start(self, s: list) -> bool:
        return (
            not (
                s[CONTENT] or s[ELAPSED] or s[TUP_LEFT] or s[BROKEN_] or s[NEED_NOTE] or s[CLOSING]
            )
            and s[PART_PHASE] != PART_DONE
        )

    # --- body: notes ----------------------------------------------------------------------

    def _note_start(self, s: list, ch: str) -> list | None:
        """An accidental, note letter or rest starting a note (in the tune, chord or grace)."""
        ctx = s[CTX]
        if ch in ACCIDENTALS:
            s[PHASE], s[ACC] = ACC_, _ACC_CODES[ch]
            if not any(self._letter(list(s), c) for c in self.letters):
                return None
            return s
        if ch in REST_LETTERS:
            if ctx != IN_TUNE:
                return None
            s[ACC] = 0
            return self._head(s, REST)
        if ch in NOTE_LETTERS:
            s[ACC] = 0
            return self._letter(s, ch)
        return None

    def _acc_char(self, s: list, ch: str) -> list | None:
        acc = s[ACC]
        if (ch == "^" and acc == 1) or (ch == "_" and acc == 3):
            s[ACC] = acc + 1
            if not any(self._letter(list(s), c) for c in self.letters):
                return None
            return s
        if ch in NOTE_LETTERS:
            return self._letter(s, ch)
        return None

    def _letter(self, s: list, ch: str) -> list | None:
        """A note letter after its accidental (in s[ACC]): tonic bookkeeping, then the head."""
        flags = LOWER if ch.islower() else 0
        tonic = s[TONIC]
        shift = _ACC_SHIFT[s[ACC]]
        if tonic >= 0 and _LETTER_INDEX[ch] == tonic // 3:
            if shift is None:
                is_tonic = not s[SPOILED]
            else:
                is_tonic = shift == tonic % 3 - 1
                if not is_tonic:
                    if self._final_bar(s):
                        return None  # keep the tonic writable in the last bar
                    s[SPOILED] = 1
            if is_tonic and s[CTX] == IN_TUNE:
                flags |= IS_TONIC
        return self._head(s, flags)

    def _head(self, s: list, flags: int) -> list | None:
        s[PHASE], s[NODE], s[FLAG], s[OCTAVES] = NOTE, 0, flags, 0
        if not any(self._suffix_ok(s, w) for w in self.suffixes.below[0]):
            return None
        return s

    def _suffix_ok(self, s: list, suffix: str) -> bool:
        """Can the note being written end with ``suffix``?"""
        ctx = s[CTX]
        if ctx == IN_GRACE or (ctx == IN_CHORD and s[CH_N]):
            return True
        if ctx == CHORD_LENGTH:  # no length after ']': abc2midi would ignore the notes'
            return not suffix and self._place(s, s[CH_FIRST], False) is not None
        ticks = self.units[s[UNIT]][1].get(suffix)
        if ticks is None:
            return False
        return ticks in self._fits(s, bool(s[FLAG] & IS_TONIC) and ctx == IN_TUNE)

    def _note_char(self, s: list, ch: str) -> list | None:
        flags = s[FLAG]
        if ch == "," or ch == "'":
            if s[NODE] or flags & REST or s[OCTAVES] >= MAX_OCTAVES:
                return None
            if (ch == ",") == bool(flags & LOWER):
                return None
            s[OCTAVES] += 1
            return s
        child = self.suffixes.children[s[NODE]].get(ch)
        if child is not None:
            if not any(self._suffix_ok(s, w) for w in self.suffixes.below[child]):
                return None
            s[NODE] = child
            return s
        if ch in "0123456789/":
            return None  # would run into the suffix
        s = self._end_note(s)
        if s is None:
            return None
        return self._body(s, ch)

    def _end_note(self, s: list) -> list | None:
        """Complete the note in NOTE phase: add it to the bar, chord or grace group."""
        suffix = self.suffixes.word[s[NODE]]
        if suffix is None or not self._suffix_ok(s, suffix):
            return None
        ctx = s[CTX]
        s[NODE], s[OCTAVES], s[ACC] = 0, 0, 0
        if ctx == IN_GRACE:
            s[PHASE] = GRACE
            s[CH_N] += 1
            return s
        if ctx == CHORD_LENGTH:
            ticks = int(s[CH_FIRST] * self.multipliers[suffix])
            s[CTX], s[CH_N], s[CH_FIRST], s[FLAG] = IN_TUNE, 0, 0, 0
            return self._add(s, ticks, False)
        ticks = self.units[s[UNIT]][1][suffix]
        if ctx == IN_CHORD:
            if not s[CH_N]:
                s[CH_FIRST] = ticks
            s[CH_N] += 1
            s[PHASE] = CHORD
            return s
        tonic = bool(s[FLAG] & IS_TONIC)
        s[FLAG] = 0
        return self._add(s, ticks, tonic)

    def _chord_end(self, s: list) -> list:
        """']': the chord's length suffix follows (the chord lasts as its first note)."""
        s[PHASE], s[CTX], s[NODE], s[FLAG], s[OCTAVES] = NOTE, CHORD_LENGTH, 0, REST, 0
        return s

    def _add(self, s: list, ticks: int, tonic: bool) -> list | None:
        placed = self._place(s, ticks, tonic)
        if placed is None:
            return None
        s[ELAPSED], s[LAST] = placed
        if s[BROKEN_]:  # the pair is complete: no broken rhythm chained onto it
            s[LAST] = 0
        if s[TUP_LEFT]:
            s[TUP_LEFT] -= 1
        s[BROKEN_] = 0
        s[CONTENT], s[NEED_NOTE], s[LAST_TONIC], s[CH_N] = 1, 0, int(tonic), 0
        if s[PENDING_MID]:
            s[PENDING_MID], s[MID_SEEN] = 0, 1
        s[PHASE], s[PREV], s[AFTER_BAR] = READY, P_NOTE, 0
        return s

    # --- durations ------------------------------------------------------------------------

    def _cap(self, s: list) -> int:
        """Ticks the current bar may hold."""
        if self._last_bar(s):
            return s[BAR] - max(s[PICKUP], 0)
        if self._later_pickup(s):
            return s[PICKUP]
        return s[BAR]

    def _later_pickup(self, s: list) -> bool:
        """With a form: the first bar of a later part, which is the first part's pickup."""
        return (
            self.form is not None
            and not s[CLOSING]
            and s[PART_PHASE] == PART_BODY
            and bool(s[PFIRST])
            and s[PICKUP] > 0
        )

    def _last_bar(self, s: list) -> bool:
        """With a form: the current bar is the last of its part or ending."""
        if self.form is None or s[CLOSING] or s[PART_PHASE] != PART_BODY or s[PFIRST]:
            return False
        if s[ENDING] in (1, 2):
            return s[END_BARS] == s[END_LEN] - 1
        return s[ENDING] == 0 and s[BAR_IN_PART] == self.bars_per_part - 1

    def _final_bar(self, s: list) -> bool:
        """The tune's last bar (with a cadence): it must end on the tonic. With a form, the
        last bar of the last part; after :meth:`close`, every bar after which the tune may end
        (a mid-section bar was passed: the checker wants one)."""
        if not self.cadence:
            return False
        if s[CLOSING]:
            return bool(s[MID_SEEN] or s[PENDING_MID])
        return s[PART] == len(self.form or ()) - 1 and s[ENDING] in (0, 2) and self._last_bar(s)

    def _fits(self, s: list, tonic: bool) -> frozenset[int]:
        """The note durations (ticks, before factors) that may come now; cached."""
        # LAST: a pair's 2nd note; closing: whether this bar may end the tune (_final_bar)
        closing_final = bool(s[CLOSING] and (s[MID_SEEN] or s[PENDING_MID]))
        key = (_place_key(s), tonic, s[LAST] if s[BROKEN_] else 0, closing_final)
        got = self.fits_cache.get(key)
        if got is None:
            values = self.units[s[UNIT]][1].values()
            got = frozenset(t for t in values if self._place(s, t, tonic) is not None)
            if len(self.fits_cache) > 200_000:
                self.fits_cache.clear()
            self.fits_cache[key] = got
        return got

    def _place(self, s: list, ticks: int, tonic: bool) -> tuple[int, int] | None:
        """(elapsed, duration) after a note of ``ticks`` (before tuplet/broken factors)."""
        if self._no_music(s):
            return None
        if s[SHORT]:
            return None
        e = s[ELAPSED]
        cap = self._cap(s)
        grid = self.units[s[UNIT]][0]
        x = ticks
        if s[TUP_LEFT]:
            p = s[TUP_P]
            q = tuplet_q(p, is_compound(Fraction(s[BAR], TICKS)))
            if x * q % p:
                return None
            x = x * q // p
        if s[BROKEN_]:
            if x != s[LAST]:  # a broken pair's notes are written alike (abc2midi's rule)
                return None
            x = x * broken_factors(self.broken_symbols[s[BROKEN_]])[1]
            if x.denominator != 1:
                return None
            x = int(x)
        if s[TUP_LEFT] > 1:  # more tuplet notes to come: they must be able to finish it
            return (e + x, x) if self._tuplet_completes(s, e + x, p, s[TUP_LEFT] - 1, q) else None
        end = e + x
        if end > cap or (end % grid and not self._loose_bar(s)):
            return None
        if not tonic and end > cap - s[UNIT] and self._final_bar(s):
            return None  # the cadence: the last unit of the tune belongs to its tonic
        return end, x

    def _no_music(self, s: list) -> bool:
        """With a form: before a part's '|:', between ':|' and '[2', after the last part."""
        return (
            self.form is not None
            and not s[CLOSING]
            and (s[PART_PHASE] != PART_BODY or s[ENDING] == 3)
        )

    def _loose_bar(self, s: list) -> bool:
        """A pickup without a form: it may end anywhere, even off the grid."""
        return self.form is None and s[FIRST] and not s[CLOSING]

    def _tuplet_completes(self, s: list, e: int, p: int, left: int, q: int) -> bool:
        """Can ``left`` more tuplet notes (each scaled by q/p) end on the grid within the bar?"""
        if self._no_music(s):
            return False
        grid, _, sums = self.units[s[UNIT]]
        cap = self._cap(s)
        for t in sums[left]:
            if t * q % p == 0:
                end = e + t * q // p
                if end <= cap and (end % grid == 0 or self._loose_bar(s)):
                    return True
        return False

    def _note_possible(self, s: list) -> bool:
        """Can a note still come before the bar line (for slurs and grace notes)?"""
        return bool(self._fits(s, True))

    def _broken(self, s: list, ch: str) -> list | None:
        prev = s[PREV]
        if s[LAST] not in UNDOTTED:
            return None
        if prev == P_BROKEN:  # '>' → '>>'
            old = self.broken_symbols[s[BROKEN_]]
            symbol = old + ch
            if old != ch or symbol not in self.broken:
                return None
            e = s[ELAPSED] - int(s[LAST] * (broken_factors(old)[0] - 1))
        elif prev in (P_NOTE, P_TIE, P_RPAREN, P_SPACE, P_DECO, P_OTHER) and not s[BROKEN_]:
            symbol = ch
            if symbol not in self.broken:
                return None
            e = s[ELAPSED]
        else:
            return None
        first, second = broken_factors(symbol)
        e += s[LAST] * (first - 1)
        if e.denominator != 1 or e < 0 or e > self._cap(s):
            return None
        s[ELAPSED], s[BROKEN_], s[PREV] = int(e), self.broken[symbol], P_BROKEN
        s[NEED_NOTE] = 1
        return s if self._fits(s, True) else None

    # --- brackets, fields -----------------------------------------------------------------

    def _bracket(self, s: list, ch: str) -> list | None:
        """After '[': a chord, an ending marker [1 [2, the invisible bar [|] or a field."""
        node = s[NODE]
        if node:  # inside "[|"
            if ch != "]":
                return None
            return self._token(s, "[|]")
        if ch == "|":
            if not self.spell("[|]") or not self._token(list(s), "[|]"):
                return None
            s[NODE] = 1
            return s
        if ch in "12":
            return self._token(s, "[" + ch)
        field = self.inline_fields.get(ch)
        if field is not None:
            if not self._at_bar_start(s) or not self.spell("]"):
                return None
            s[PHASE], s[KIND] = INLINE_COLON, field
            return s
        if ch in NOTE_LETTERS or ch in ACCIDENTALS:
            if s[CLOSING] or not self.spell("]"):
                return None
            if not self._fits(s, False):
                return None
            s[PHASE], s[CTX], s[CH_N], s[CH_FIRST] = CHORD, IN_CHORD, 0, 0
            return self._note_start(s, ch)
        return None

    def _field_char(self, s: list, ch: str, inline: bool) -> list | None:
        field = s[KIND]
        spec = self.specs[field]
        terminator = "]" if inline else "\n"
        if ch == " " and s[NODE] == 0 and not s[FLAG] & 2 and not inline:
            s[FLAG] |= 2  # "M: 6/8"
            return s
        if ch == terminator:
            if not self._value_done(spec, s[NODE], s[FLAG] & 1):
                return None
            return self._apply_field(s, field, spec, inline)
        got = self._value_step(spec, s[NODE], s[FLAG] & 1, ch)
        if got is None:
            return None
        s[NODE], s[FLAG] = got[0], got[1] | (s[FLAG] & 2)
        return s

    def _apply_field(self, s: list, field: int, spec: tuple, inline: bool) -> list | None:
        word = spec[1].word[s[NODE]] if spec[0] == V_CHOICE else None
        if field == F_M:
            s[BAR] = self.meter_ticks[word]
            s[FIRST], s[PENDING_MID], s[SHORT] = 1, 0, 0  # a meter change is a boundary
        elif field == F_L:
            s[UNIT] = self.unit_of[word]
            self._unit_tables(s[UNIT])
            if s[BAR] % self.units[s[UNIT]][0]:
                return None
        elif field == F_K:
            s[TONIC], s[SPOILED] = self.tonic_of[word], 0
        s[PHASE], s[NODE], s[FLAG], s[KIND] = READY, 0, 0, 0
        s[PREV] = P_OTHER if inline else P_NEWLINE
        s[AFTER_BAR] = 0
        return s

    # --- bar lines --------------------------------------------------------------------------

    def _token(self, s: list, token: str) -> list | None:
        """The state after bar token ``token`` (written from READY state ``s``), or None."""
        if s[TUP_LEFT] or s[BROKEN_] or s[NEED_NOTE]:
            return None
        if s[CLOSING]:
            s = self._token_closing(s, token)
        elif self.form is not None:
            s = self._token_form(s, token)
        else:
            s = self._token_free(s, token)
        if s is None:
            return None
        s[PHASE], s[NODE] = (DONE if s[PHASE] == DONE else READY), 0
        s[PREV] = P_INVISIBLE if token == "[|]" else P_BAR
        s[AFTER_BAR] = 1
        return s

    def _close_bar(self, s: list, boundary: bool) -> list:
        if s[CONTENT]:
            s[BARS] = min(s[BARS] + 1, self.min_bars)  # only "enough bars?" matters
            s[PENDING_MID] = 0 if boundary or s[FIRST] else 1
            s[FIRST] = int(boundary)
        elif boundary:
            s[PENDING_MID], s[FIRST] = 0, 1
        s[ELAPSED], s[CONTENT], s[LAST], s[SPOILED] = 0, 0, 0, 0
        return s

    def _token_free(self, s: list, token: str) -> list | None:
        if token in ("|", "[|]"):
            if s[CONTENT] and not (s[ELAPSED] == s[BAR] or s[FIRST]):
                # "E2 E |" + "||" on the next line: the checker makes the short bar the
                # section's last; no note may come before that boundary.
                if s[CLOSING]:
                    return None
                self._close_bar(s, boundary=False)
                s[SHORT], s[PENDING_MID] = 1, 0
                return s
            return self._close_bar(s, boundary=False)
        closes, opens = token.startswith(":"), token.endswith(":")
        if opens and s[REPEAT] and not closes:
            return None
        s[SHORT] = 0
        self._close_bar(s, boundary=True)
        if closes:
            s[REPEAT] = 0
        if opens:
            s[REPEAT] = 1
        return s

    def _token_closing(self, s: list, token: str) -> list | None:
        """After close(): end with ':|' or '|]' as soon as the tune may; '|' to get there."""
        final = ":|" if s[REPEAT] else "|]"
        if token == final:
            if not s[MID_SEEN] or (self.cadence and not s[LAST_TONIC]):
                return None
            self._close_bar(s, boundary=True)
            s[REPEAT], s[SHORT] = 0, 0
            s[PHASE] = DONE
            return s
        if token == "|" and s[CONTENT] and (s[ELAPSED] == s[BAR] or s[FIRST]):
            return self._close_bar(s, boundary=False)
        if token == "||" and s[SHORT]:  # a short bar waiting for its boundary
            s[SHORT] = 0
            return self._close_bar(s, boundary=True)
        return None

    def _token_form(self, s: list, token: str) -> list | None:
        n = self.bars_per_part
        repeated = self.form[s[PART]] if s[PART] < len(self.form) else False
        e, bar, has = s[ELAPSED], s[BAR], s[CONTENT]
        if s[PART_PHASE] == PART_START:
            if token != "|:" or has:
                return None
            s[PART_PHASE], s[REPEAT] = PART_BODY, 1
            return self._close_bar(s, boundary=True)
        if s[PART_PHASE] != PART_BODY:
            return None
        ending = s[ENDING]
        if ending == 3:  # after ':|' in a first ending: '[2'
            if token != "[2":
                return None
            s[ENDING], s[END_BARS] = 2, 0
            return self._close_bar(s, boundary=True)
        if token == "[1":  # after a plain bar line
            m = n - s[BAR_IN_PART]
            if not (repeated and ending == 0 and s[AFTER_BAR]):
                return None
            if s[PFIRST] or not self._ending_length_ok(m):
                return None
            s[ENDING], s[END_LEN], s[END_BARS] = 1, m, 0
            return self._close_bar(s, boundary=True)
        if not has:
            return None
        last = self._last_bar(s)
        if token == "|":
            if last:
                return None
            if s[PFIRST]:
                if e == bar and s[PICKUP] <= 0:
                    s[BAR_IN_PART] += 1
                    s[PICKUP] = 0
                elif (s[PICKUP] < 0 and e < bar) or (s[PICKUP] > 0 and e == s[PICKUP]):
                    s[PICKUP] = e
                else:
                    return None
                s[PFIRST] = 0
            elif e != bar:
                return None
            elif ending:
                s[END_BARS] += 1
            else:
                s[BAR_IN_PART] += 1
            return self._close_bar(s, boundary=False)
        if token == "|1":
            if not repeated or ending or e != bar or last:
                return None
            c = s[BAR_IN_PART] + 1
            if not self._ending_length_ok(n - c):
                return None
            if s[PFIRST]:
                s[PICKUP], s[PFIRST] = 0, 0
            s[BAR_IN_PART], s[ENDING], s[END_LEN], s[END_BARS] = c, 1, n - c, 0
            return self._close_bar(s, boundary=True)
        if not last or e != self._cap(s):
            return None
        if token in (":|", ":|2", ":|:", "::"):
            if ending == 1:
                if token == ":|" and self.spell("[2"):
                    s[ENDING] = 3
                elif token == ":|2":
                    s[ENDING], s[END_BARS] = 2, 0
                else:
                    return None
                s[REPEAT] = 0
                return self._close_bar(s, boundary=True)
            if ending or not repeated or token == ":|2":
                return None
            s[REPEAT] = 0
            self._close_bar(s, boundary=True)
            self._next_part(s)
            if token != ":|":  # ':|:' and '::' open the next part's repeat
                if s[PART_PHASE] != PART_START:
                    return None
                s[PART_PHASE], s[REPEAT] = PART_BODY, 1
            return s
        if token in ("||", "|]"):
            if not ((ending == 0 and not repeated) or ending == 2):
                return None
            if token == "|]" and s[PART] != len(self.form) - 1:
                return None
            self._close_bar(s, boundary=True)
            return self._next_part(s)
        return None

    def _ending_length_ok(self, m: int) -> bool:
        return self.bars_per_part >= 4 and 1 <= m <= self.bars_per_part // 4

    def _next_part(self, s: list) -> list:
        s[PART] += 1
        s[BAR_IN_PART], s[PFIRST], s[ENDING], s[END_LEN], s[END_BARS] = 0, 1, 0, 0, 0
        if s[PART] >= len(self.form):
            s[PART_PHASE], s[PHASE] = PART_DONE, DONE
        else:
            s[PART_PHASE] = PART_START if self.form[s[PART]] else PART_BODY
        return s


# Q: tempo values: 1/4=120, 80, 3/8=104 "Slow", "Andante" (beats 1/2 1/4 1/8 3/2 3/4 3/8).
# States: 0 start, 1 first digit was 1 or 3 (beat or tempo), 2-4 after 1-3 tempo digits,
# 5 after "n/", 6 after the beat's denominator, 7 after '=', 8 after the space before the
# text, 9 after its closing quote, 10+k inside it after k characters.
_TEMPO_FINAL = frozenset({3, 4, 9})


def _tempo_step(node: int, ch: str, quotes: bool) -> tuple[int, int] | None:
    if node == 0:
        if ch == '"':
            return (10, 0) if quotes else None
        if ch in "13":
            return 1, 0
        return (2, 0) if ch in "23456789" else None
    if node == 1:
        if ch == "/":
            return 5, 0
        return (3, 0) if ch.isdigit() else None
    if node in (2, 3):
        if ch.isdigit():
            return node + 1, 0
        return (8, 0) if ch == " " and node == 3 and quotes else None
    if node == 4:
        return (8, 0) if ch == " " and quotes else None
    if node == 5:
        return (6, 0) if ch in "248" else None
    if node == 6:
        return (7, 0) if ch == "=" else None
    if node == 7:
        return (2, 0) if ch in "123456789" else None
    if node == 8:
        return (10, 0) if ch == '"' else None
    if node >= 10:
        if ch == '"':
            return (9, 0) if node > 10 else None
        if ch in TITLE_CHARS and ch != '"' and node - 10 < MAX_TEXT:
            return node + 1, 0
    return None


_MACHINES: dict[tuple, _Machine] = {}


class TuneGrammar:
    """The state of one tune being written; see the module docstring.

    ``TuneGrammar(min_bars=8, fixed=None, alphabet=None, *, form=None, bars_per_part=8,
    cadence=None, header=None)``:

    * ``min_bars``: without a form, the tune may end after this many bars.
    * ``fixed``: forced header values (``T``, ``M``, ``L``, ``K``); forcing any selects the
      ``X:1 / T: / M: / L: / K:`` template. A forced meter without ``L`` gets ABC's default
      unit length.
    * ``alphabet``: the characters the model can write; choices that need others are
      dropped, and a forced value that cannot be spelled raises :class:`GrammarError`.
    * ``form``: ``"AABB"``, ``"AB"``, ``"AABBCC"``, ``"AAB"``...; None or ``"free"``: any.
    * ``bars_per_part``: bars in each part when ``form`` is given (8 or 16, at least 3).
    * ``cadence``: ``"tonic"`` makes the last note the key's tonic; None: any.
    * ``header``: ``"corpus"`` (the corpus's fields) or ``"template"``; None: the template
      when values are forced, else the corpus's.

    :meth:`allowed` gives the set of next characters (with :data:`END` when the tune may
    end), :meth:`advance` takes one, :attr:`text` is what was written, :attr:`finished`
    whether :data:`END` was taken.
    """

    def __init__(
        self,
        min_bars: int = 8,
        fixed: dict[str, str] | None = None,
        alphabet: Iterable[str] | None = None,
        *,
        form: str | None = None,
        bars_per_part: int = 8,
        cadence: str | None = None,
        header: str | None = None,
    ):
        fixed = {k: v for k, v in (fixed or {}).items() if v}
        unknown = sorted(set(fixed) - set("TMLK"))
        if unknown:
            raise GrammarError(f"only T, M, L and K can be forced, not {unknown}")
        letters = frozenset(alphabet) if alphabet is not None else None
        for name, value in fixed.items():
            if letters is not None and any(c not in letters for c in value):
                raise GrammarError(f"the model's vocabulary cannot write {name}:{value}")
            if "\n" in value:
                raise GrammarError(f"{name}: cannot contain a line break")
            try:
                if name == "M":
                    _bar_ticks(value)
                elif name == "L":
                    _unit_ticks(value)
                elif name == "K":
                    parse_key(value)
            except ValueError as exc:
                raise GrammarError(f"cannot force {name}:{value}: {exc}") from exc
        if cadence not in (None, "tonic"):
            raise GrammarError(f"cadence must be 'tonic' or None, got {cadence!r}")
        if header not in (None, "corpus", "template"):
            raise GrammarError(f"header must be 'corpus' or 'template', got {header!r}")
        if not isinstance(bars_per_part, int) or bars_per_part < 3:
            raise GrammarError(f"bars_per_part must be an integer >= 3, got {bars_per_part!r}")
        template = header == "template" or (header is None and bool(fixed))
        config = (
            min_bars,
            tuple(sorted(fixed.items())),
            letters,
            _parse_form(form),
            bars_per_part,
            cadence == "tonic",
            template,
        )
        machine = _MACHINES.get(config)
        if machine is None:
            machine = _Machine(
                min_bars, fixed, letters, config[3], bars_per_part, cadence == "tonic", template
            )
            if len(_MACHINES) > 32:
                _MACHINES.clear()
            _MACHINES[config] = machine
        self._machine = machine
        self._state = machine.initial()
        self._close_requested = False
        self.text = ""
        self.finished = False

    @property
    def state(self) -> tuple[int, ...]:
        """The grammar's state vector (see the module docstring)."""
        return self._state

    def allowed(self) -> set[str]:
        """The characters that may come next (with :data:`END` if the tune may end here)."""
        if self.finished:
            return {END}
        return set(self._machine.allowed(self._state))

    def advance(self, ch: str) -> None:
        """Take one character (or :data:`END`); raises :class:`GrammarError` if not allowed."""
        if self.finished:
            if ch == END:
                return
            raise GrammarError(f"{ch!r} after the end of the tune")
        machine = self._machine
        if ch == END:
            if not machine.can_end(self._state):
                raise GrammarError(f"the tune cannot end after {self.text[-30:]!r}")
            self.finished = True
            return
        new = machine.step(self._state, ch)
        if new is None:
            raise GrammarError(f"{ch!r} is not allowed after {self.text[-30:]!r}")
        self._state = new
        self.text += ch
        if self._close_requested and new[PHASE] == READY and not new[CLOSING]:
            self._apply_close()

    def plain_allowed(self) -> set[str]:
        """:meth:`allowed` in the plain style of generation (see :func:`plain_style`), with
        one character of look-ahead: a character is offered only if the plain style can go
        on after it. If nothing plain is possible the full set is returned (never stuck)."""
        options = self.allowed()
        if self.finished:
            return options
        plain = plain_style(options, self.text)
        machine, state = self._machine, self._state
        kept = set()
        for ch in plain:
            if ch == END:
                kept.add(ch)
                continue
            after = machine.step(state, ch)
            if after is None:
                continue
            then = set(machine.allowed(after))
            if machine.can_end(after):
                then.add(END)
            if plain_style(then, self.text + ch):
                kept.add(ch)
        return kept or plain or options

    def close(self) -> None:
        """Ask the tune to end as soon as it can: finish the bar, close a repeat, end.

        From the next token boundary on, the body allows only notes, rests and the bar lines
        that lead to the end (the form, if any, is abandoned). With a cadence, every bar after
        which the tune may end (a mid-section bar was passed) ends on the tonic.
        """
        self._close_requested = True
        if self._state[PHASE] == READY:
            self._apply_close()

    def _apply_close(self) -> None:
        s = list(self._state)
        s[CLOSING] = 1
        self._state = tuple(s)

    def completion(self) -> str:
        """A checker-valid tune that starts with :attr:`text`: for a tune that ran out of room.

        The grammar is driven to its end with :meth:`close` and a fixed preference (end, line
        break, bar lines, closing brackets, the tonic, rests), so the result is one the
        grammar itself accepts.
        """
        if self.finished:
            return self.text if self.text.endswith("\n") else self.text + "\n"
        probe = TuneGrammar.__new__(TuneGrammar)
        probe._machine, probe._state, probe.text = self._machine, self._state, self.text
        probe.finished, probe._close_requested = False, False
        probe.close()
        for _ in range(5000):
            options = probe.allowed()
            if END in options:
                probe.advance(END)
                break
            probe.advance(probe._preferred(options))
        else:  # pragma: no cover - the grammar always reaches an end
            raise GrammarError(f"could not complete {self.text[-60:]!r}")
        return probe.text if probe.text.endswith("\n") else probe.text + "\n"

    def _preferred(self, options: set[str]) -> str:
        if self._state[PHASE] < READY:
            order = "\nA1"
        else:
            tonic = self._state[TONIC]
            letter = "CDEFGAB"[tonic // 3] if tonic >= 0 else "C"
            order = '\n":|]}!' + letter + letter.lower() + "z=^_8642/"
        for ch in order:
            if ch in options:
                return ch
        return min(options)


__all__ = [
    "BANG_DECORATIONS",
    "DECORATIONS",
    "END",
    "GrammarError",
    "KEYS",
    "LENGTHS",
    "METERS",
    "SUFFIXES",
    "TuneGrammar",
]


# --- the plain style used for generation -------------------------------------------------------

# What the grammar accepts is what the corpus writes; what a model is allowed to write when
# generating is a plainer subset of it: no annotations or chord symbols, no "!...!"
# decorations, no decoration letters but the roll (~) and staccato (.), no inline or body
# fields, no line continuations, tabs or back-quotes, single spaces only, one slur at a time
# (a slurred tuplet '((3' is fine; '((' before a note, a slur opened twice, is not), and a
# slur closes in its bar, as 99.2% of the corpus's do (one left open past a line break or
# the part's end is drawn by abcm2ps to the end of its line, over nothing). Models trained
# on the corpus otherwise spend their characters on column alignment and annotations.
_NOTE_HEADS = frozenset("^_=ABCDEFGabcdefg")
_BEFORE_A_NOTE = frozenset(".~({")  # decorations, slur or tuplet openings, grace notes
_DIGITS = frozenset("0123456789")
# No bar token (they begin with | or :; [1 [2 [|] after [), line break or end in a slur.
_SLUR_BREAKS = frozenset({"|", ":", "\n", END})
_PLAIN_BANNED = frozenset('"!\\\t`') | frozenset("HIJKLMNOPQRSTUVWhijklmnopqrstuvwy")


def plain_style(allowed: set[str], text: str) -> set[str]:
    """``allowed`` narrowed to the plain style for the body of ``text`` (the tune so far).

    The header is left alone. The result may be empty when ``allowed`` holds nothing plain
    (:meth:`TuneGrammar.plain_allowed` looks one character ahead to avoid that).
    """
    body = text.find("\nK:")
    if body < 0 or "\n" not in text[body + 1 :]:
        return allowed  # still in the header
    last = text[-1:]
    plain = {c for c in allowed if c not in _PLAIN_BANNED}
    music = text[body + 1 :]
    slurs = sum(1 for i, c in enumerate(music) if c == "(" and not music[i + 1 : i + 2].isdigit())
    open_slurs = slurs - music.count(")")  # a '(' just written counts until a digit follows
    if open_slurs <= 0:
        plain.discard(")")  # no slur open
    else:
        if last != "(" or not allowed & _DIGITS:
            plain.discard("(")  # one slur at a time; '((' only when a tuplet can start: '((3'
        plain -= _SLUR_BREAKS  # a slur closes in its bar (see above)
        if last == "[":
            plain -= _DIGITS | {"|"}  # '[1' '[2' '[|]': endings and bar lines, not chords
    if last == "(" and open_slurs >= 2:
        plain &= _DIGITS  # a '(' while a slur is open opens a tuplet
    if not plain & _NOTE_HEADS:  # the bar is full: nothing that must be followed by a note
        plain -= _BEFORE_A_NOTE
    if last in ".~":  # one decoration, then its note
        notes = {c for c in plain if c in _NOTE_HEADS}
        plain = notes or plain
    if last in (" ", "\n"):
        plain.discard(" ")
    if last == "\n":
        plain.discard("\n")
    return plain
