"""Folk-tune form: parts and their bar counts, repeats, cadence, bar repetition, pitch use.

A generated tune is judged as a musician would judge it: how many parts, how long each is,
whether they repeat, whether it ends on the tonic, how often bars come back, and which
notes of the scale it uses. :func:`analyze` reads one tune, :func:`summarize` gives the
population figures of many, :func:`compare` sets them beside a reference's (the corpus),
and :func:`form_distribution` / :func:`form_prior` give the forms a meter's tunes take.

Pure Python, linear in the length of a tune. The music comes from the checker's walk
(:func:`musicseq.notation.checker.tune_events`), so bars close where the checker closes
them and every duration comes from :mod:`musicseq.notation.durations`.

Definitions used throughout:

- **Sections** are delimited by repeat signs (``|: :| :: :|:``), double bars (``|| [|``),
  final bars (``|]``), the end of the tune, and first/second endings. A section with
  endings (``|1 … :|2 …``) is counted along one pass: its body plus its first ending.
  A meter change closes a bar but not a section.
- **Pickups**: when a pass of a section has two bars or more and its first bar is shorter
  than the meter, that bar is an anacrusis and is not counted; with a short last bar it
  makes up one bar (the usual ``A|dfa …|cBA d2:|``), and alone it is an upbeat, no bar.
  An upbeat standing alone before the first repeat sign (``(dc) |: BG…``) opens the next
  section. Inside a pass, two neighbouring short bars that fit in one bar count as one (a
  bar split by an ending mark, ``G2G [1 G2:|``, or a mid-tune upbeat, ``…|E3 D2|`` then
  ``F|DFA…``). Free meter (``M:none``) has no short bars.
- **Labels** are in played order: a repeated section (closed by ``:|`` or ``::``, or with
  endings) appears twice. A section takes the letter of an earlier section when the two
  are *nearly equal*: their bars as counted agree position by position in at least 75% of
  the positions of the longer one (6 of 8 bars, 12 of 16) and in at least 75% of those of
  its first half (3 of 4): a B part that only comes back to the A part's second half, as
  in many hornpipes, is still a B part. A tune with a single unrepeated section (no
  section marks) is cut into 8-bar parts (or two halves when its bar count is even but
  not a multiple of 8); when a part nearly equals an earlier one, those parts are its
  sections (``sections_inferred``: 16 bars whose 9-16 repeat 1-8 are ``"AA"``), else it
  is ``"A"`` (through-composed).
- **Bars as written**: ``bar_repetition`` and ``bar_minus_4`` count the bars in the order
  they are written, repeats *not* expanded, each ending's bars once, a pickup as a bar.
  Two bars are equal when they hold the same notes and rests with the same durations
  (chords by their top note, ties ignored).
- **Notes** are the sounding notes of the melody (the first voice of a multi-voice tune),
  a chord by its highest note, grace notes ignored. ``notes``, ``out_of_key`` and the
  interval figures count a tied note once (the pitch-class profile weighs notes by their
  durations); intervals join consecutive notes across rests and bar lines.
- The **tonic** comes from the key in force (``K:Ador`` → A, ``K:Gmix`` → G, ``K:HP`` and
  ``K:Hp`` → A mixolydian); ``K:none`` has none and its tonal figures are ``None``.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache
from pathlib import Path
from typing import NamedTuple

from musicseq.notation.checker import BAR, CHORD, FIELD, NOTE, REST, TIE, tune_events
from musicseq.notation.durations import TICKS
from musicseq.notation.tunebook import ABCError, ParsedTune, parse_key, parse_meter, parse_tune

# Two sections are nearly equal when at least this share of bar positions hold equal bars.
NEAR_EQUAL = 0.75
# Form labels a generator can be asked for: with parts of 4, 8 or 16 bars they make a form
# key such as "AABB/8" or "AAB/4+8" (see TuneForm.form_key); everything else is "free".
GENERATABLE = frozenset(
    {"A", "AA", "AB", "AAB", "ABB", "AABB", "ABAB", "ABC", "AABBCC", "AABBCCDD"}
)
PART_BARS = frozenset({4, 8, 16})
PRIOR_FILE = Path(__file__).with_name("form_prior.json")

_LETTERS = "CDEFGAB"
_SEMITONES = (0, 2, 4, 5, 7, 9, 11)  # of C D E F G A B
_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}  # on the circle of fifths
# How many fifths a mode's signature lies from the major key on the same tonic.
_MODE_FIFTHS = {"lyd": 1, "maj": 0, "mix": -1, "dor": -2, "min": -3, "phr": -4, "loc": -5}
_SHARPS, _FLATS = "FCGDAEB", "BEADGCF"
_KEY_ACCIDENTAL = re.compile(r"^([\^_=]+)([A-Ga-g])$")

# Bar-line kinds that close a section, and those that close a repeat.
BOUNDARIES = frozenset({"repeat_start", "repeat_end", "repeat_both", "double", "final", "end"})
_CLOSES_REPEAT = frozenset({"repeat_end", "repeat_both"})
_REPEAT_KINDS = frozenset({"repeat_start", "repeat_end", "repeat_both"})


# --- keys and pitches ----------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A key: its tonic and mode and the signature they give (explicit accidentals applied)."""

    text: str
    tonic: str | None  # "A", "F#", "Bb"; None for K:none
    mode: str  # maj min dor mix phr lyd loc; "" when there is no tonic
    signature: tuple[int, ...]  # semitones added to C D E F G A B

    @cached_property
    def tonic_class(self) -> int | None:
        """The tonic's pitch class (C = 0), or None."""
        if self.tonic is None:
            return None
        shift = {"#": 1, "b": -1}.get(self.tonic[1:], 0)
        return (_SEMITONES[_LETTERS.index(self.tonic[0])] + shift) % 12

    @cached_property
    def scale(self) -> frozenset[int]:
        """The pitch classes of the key's seven degrees."""
        return frozenset((s + a) % 12 for s, a in zip(_SEMITONES, self.signature))


@lru_cache(maxsize=256)
def read_key(value: str) -> Key:
    """A ``K:`` value → :class:`Key`; never raises (an unreadable key is ``K:none``).

    Reads what :func:`~musicseq.notation.tunebook.parse_key` reads, ignores clefs and other
    words after the key, and applies explicit accidentals (``K:D =c``, ``K:D exp ^f ^c``).
    """
    words = value.split()
    tonic, mode = "none", ""
    for take in dict.fromkeys((len(words), 2, 1)):  # "A Dorian", "D clef=treble", "G ^f"
        try:
            tonic, mode = parse_key(" ".join(words[:take]))
            break
        except ValueError:
            continue
    if tonic in ("HP", "Hp"):  # bagpipe keys: A mixolydian, F and C sharp
        tonic, mode = "A", "mix"
    signature = [0] * 7
    if tonic == "none":
        tonic_name: str | None = None
        mode = ""
    else:
        tonic_name = tonic[0].upper() + tonic[1:]
        fifths = _FIFTHS[tonic_name[0]] + 7 * tonic_name[1:].count("#")
        fifths += -7 * tonic_name[1:].count("b") + _MODE_FIFTHS[mode]
        fifths = max(-7, min(7, fifths))
        for letter in _SHARPS[:fifths] if fifths > 0 else _FLATS[:-fifths]:
            signature[_LETTERS.index(letter)] = 1 if fifths > 0 else -1
    if "exp" in (w.lower() for w in words):
        signature = [0] * 7
    for word in words[1:]:
        match = _KEY_ACCIDENTAL.match(word)
        if match:
            marks = match.group(1)
            signature[_LETTERS.index(match.group(2).upper())] = marks.count("^") - marks.count("_")
    return Key(value, tonic_name, mode, tuple(signature))


@lru_cache(maxsize=4096)
def _head(head: str) -> tuple[int, int | None, int]:
    """A note head ``^c'`` → (MIDI pitch without accidentals, explicit alteration, letter index).

    ``C`` is middle C (60), lower case an octave up, each ``'`` up and ``,`` down an octave.
    """
    j = 0
    while head[j] in "^_=":
        j += 1
    letter = head[j]
    index = _LETTERS.index(letter.upper())
    marks = head[j + 1 :]
    natural = 60 + _SEMITONES[index] + (12 if letter.islower() else 0)
    natural += 12 * (marks.count("'") - marks.count(","))
    alter = head[:j].count("^") - head[:j].count("_") if j else None
    return natural, alter, index


# --- the event walk --------------------------------------------------------------------------


class Note(NamedTuple):
    """A note (``pitch`` is MIDI) or a rest (``pitch`` None); ``duration`` in whole notes.

    A chord is its highest note (``chord`` True); ``tied`` means tied on from the note before.
    """

    pitch: int | None
    duration: Fraction
    chord: bool
    tied: bool
    line: int
    column: int


class BarLine(NamedTuple):
    """A bar line as written and its kind.

    Kinds: ``plain`` (``|``, or an ending mark ``[1`` alone), ``repeat_start`` (``|:``),
    ``repeat_end`` (``:|``), ``repeat_both`` (``::`` ``:|:``), ``double`` (``||`` ``[|``),
    ``final`` (``|]``), ``invisible`` (``[|]``) and ``end`` (the end of the body). ``ending``
    is the ending that starts after it (``"1"`` for ``|1`` or ``[1``, ``"2"`` for ``:|2``).
    """

    kind: str
    token: str
    ending: str
    line: int
    column: int


class Change(NamedTuple):
    """A field met in the music (``M`` ``K`` ``L`` ``Q`` ``P``…). The header's ``M:`` and
    ``K:`` come first as changes at line 0."""

    field: str
    value: str
    line: int
    column: int


Event = Note | BarLine | Change


def bar_kind(token: str) -> str:
    """The kind of a bar token as the checker reads it (see :class:`BarLine`)."""
    if token == "":
        return "end"
    if token == "[|]":
        return "invisible"
    if token == "[":
        return "plain"
    starts, ends = token.startswith(":"), token.endswith(":")
    if starts and ends:
        return "repeat_both"
    if starts:
        return "repeat_end"
    if ends:
        return "repeat_start"
    if "]" in token:
        return "final"
    if token.startswith("[") or token.count("|") > 1:
        return "double"
    return "plain"


def walk_events(tune: str | ParsedTune) -> list[Event]:
    """The melody of one tune as notes, rests, bar lines and field changes, in written order.

    Pitches apply the key signature of the key in force and explicit accidentals, which
    last to the end of the bar for notes of the same letter and octave. Only the first voice
    of a multi-voice tune is kept. Raises :class:`ABCError` or ``ValueError`` for a tune
    that cannot be read.
    """
    if isinstance(tune, str):
        tune = parse_tune(tune)
    raw = tune_events(tune)
    voices = [v.split()[0] for k, v in tune.headers if k == "V" and v.split()]
    melody = voices[0] if voices else None
    voice = melody
    key = read_key(tune.key)
    out: list[Event] = [
        Change("M", tune.get("M", "none") or "none", 0, 0),
        Change("K", tune.key, 0, 0),
    ]
    accidentals: dict[int, int] = {}  # natural pitch → alteration, until the bar line
    fractions: dict = {}
    tied = False
    for kind, line, column, value, extra in raw:
        if kind == FIELD:
            if value == "V":
                ident = extra.split()[0] if extra.split() else ""
                melody = ident if melody is None else melody
                voice = ident
            elif voice == melody:
                if value == "K":
                    key = read_key(extra)
                out.append(Change(value, extra, line, column))
            continue
        if voice != melody:
            continue
        if kind == BAR:
            accidentals.clear()
            out.append(BarLine(bar_kind(value), value, extra, line, column))
            continue
        if kind == TIE:
            tied = True
            continue
        duration = fractions.get(extra)
        if duration is None:
            duration = fractions[extra] = Fraction(extra) / TICKS
        if kind == REST:
            out.append(Note(None, duration, False, False, line, column))
            tied = False
            continue
        pitch = None
        for head in (value,) if kind == NOTE else value:
            natural, alter, index = _head(head)
            if alter is None:
                alter = accidentals.get(natural, key.signature[index])
            else:
                accidentals[natural] = alter
            pitch = natural + alter if pitch is None else max(pitch, natural + alter)
        if pitch is not None:
            out.append(Note(pitch, duration, kind == CHORD, tied, line, column))
        tied = False
    return out


def cadence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of ``text`` holding the last bar of each part: the bar
    before a section boundary (``:|`` ``::`` ``||`` ``|]``, the end of the tune), its closing
    bar line included. A boundary after an empty bar (``…d3|]`` after ``|``, the end after a
    final ``|``) marks the bar before it. ``[]`` for a tune that cannot be read.

    Training can weigh these characters more (``--cadence-weight``): the cadence is where a
    part comes home, and a model that writes bars well can still end its parts anywhere.
    """
    try:
        events = walk_events(text)
    except (ABCError, ValueError):
        return []
    starts = [0]
    for line in text.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    spans: list[tuple[int, int]] = []
    bar_start = previous_start = None  # where the current bar and the one before begin
    notes = 0  # notes and rests in the current bar
    for event in events:
        if isinstance(event, Note):
            if bar_start is None:  # the first bar, before any bar line
                bar_start = starts[event.line - 1] + event.column
            notes += 1
            continue
        if not isinstance(event, BarLine):
            continue
        if event.kind == "end":
            here = end = len(text.rstrip())
        else:
            here = starts[event.line - 1] + event.column
            end = here + len(event.token)
        if event.kind in BOUNDARIES and event.kind != "repeat_start" and bar_start is not None:
            if notes:
                spans.append((bar_start, end))
            elif previous_start is not None and (not spans or spans[-1][1] <= previous_start):
                spans.append((previous_start, bar_start))
        if notes or bar_start is None:
            previous_start = bar_start
        bar_start, notes = end, 0
    return spans


# --- bars and sections --------------------------------------------------------------------


class _Bar:
    """A bar of the melody: its notes and rests, length, the ending it starts, how it ends."""

    __slots__ = ("notes", "duration", "expected", "ending", "closing")

    def __init__(self, notes: list[Note], expected: Fraction | None, ending: str):
        self.notes = notes
        self.duration = sum((n.duration for n in notes), Fraction(0))
        self.expected = expected
        self.ending = ending
        self.closing: set[str] = set()

    @property
    def short(self) -> bool:
        return self.expected is not None and self.duration < self.expected

    @property
    def content(self) -> tuple:
        return tuple((n.pitch, n.duration) for n in self.notes)


def _bars(events: list[Event]) -> list[_Bar]:
    """Group the events into bars; an empty bar's bar line ends the bar before it."""
    bars: list[_Bar] = []
    notes: list[Note] = []
    expected: Fraction | None = None
    ending = ""
    for event in events:
        if isinstance(event, Note):
            notes.append(event)
        elif isinstance(event, BarLine):
            if notes:
                bars.append(_Bar(notes, expected, ending))
                notes, ending = [], ""
            if bars:
                bars[-1].closing.add(event.kind)
            if event.ending:
                ending = event.ending
        elif event.field == "M":
            if notes:  # the checker closes the bar at a meter change too
                bars.append(_Bar(notes, expected, ending))
                bars[-1].closing.add("plain")
                notes, ending = [], ""
            try:
                expected = parse_meter(event.value).bar
            except ValueError:
                pass
    return bars


@dataclass(frozen=True)
class Section:
    """One part of a tune: bars along one pass (pickup merged), repeats, endings."""

    bars: int
    repeated: bool
    has_endings: bool


class _Part:
    """A section being read: body bars, endings' bars, and how it was closed."""

    __slots__ = ("body", "endings", "repeated", "closed", "closed_by_repeat")

    def __init__(self) -> None:
        self.body: list[_Bar] = []
        self.endings: list[list[_Bar]] = []
        self.repeated = False
        self.closed = False
        self.closed_by_repeat = False

    @property
    def one_pass(self) -> list[_Bar]:
        return self.body + (self.endings[0] if self.endings else [])

    @property
    def counted(self) -> list[_Bar]:
        """The pass's bars as counted and compared: a leading pickup dropped, and two
        neighbouring short bars that fit in one bar joined (a bar split by an ending mark
        or a mid-tune upbeat, ``…|E3 D2|`` ``F|DFA…``)."""
        bars = self.one_pass
        if len(bars) >= 2 and bars[0].short:
            bars = bars[1:]
        out: list[_Bar] = []
        for bar in bars:
            last = out[-1] if out else None
            if (
                last is not None
                and last.short
                and bar.short
                and last.expected == bar.expected
                and last.duration + bar.duration <= bar.expected
            ):
                out[-1] = _Bar(last.notes + bar.notes, bar.expected, last.ending)
            else:
                out.append(bar)
        return out

    def section(self) -> Section:
        return Section(len(self.counted), self.repeated or bool(self.endings), bool(self.endings))


def _parts(bars: list[_Bar]) -> list[_Part]:
    """Cut the bars into sections at boundaries, keeping first and second endings together."""
    parts: list[_Part] = []
    part = _Part()
    for bar in bars:
        if bar.ending:
            # An ending never opens a section, except a new first ending after endings.
            if part.endings and bar.ending.startswith("1"):
                parts.append(part)
                part = _Part()
            part.endings.append([bar])
            part.closed = False
        else:
            if part.closed:
                parts.append(part)
                part = _Part()
            (part.endings[-1] if part.endings else part.body).append(bar)
        if bar.closing & _CLOSES_REPEAT:
            part.repeated = True
        if bar.closing & BOUNDARIES:
            part.closed = True
    if part.body or part.endings:
        parts.append(part)
    parts = [p for p in parts if p.one_pass]
    # An upbeat written before the first repeat sign ("(dc) |: BG…") opens the next section.
    for i in range(len(parts) - 1):
        bars = parts[i].one_pass
        if len(bars) == 1 and bars[0].short and not parts[i].repeated and not parts[i].endings:
            parts[i + 1].body.insert(0, bars[0])
            parts[i].body = []
    return [p for p in parts if p.one_pass]


def _nearly_equal(a: list[tuple], b: list[tuple]) -> bool:
    """At least :data:`NEAR_EQUAL` of the positions of the longer list hold equal bars, in
    the whole and in its first half (a part that shares only its second half with another,
    like the B part of many hornpipes, is another part)."""
    longest = max(len(a), len(b))
    if longest == 0:
        return True
    half = (longest + 1) // 2
    same = [x == y for x, y in zip(a, b)]
    return sum(same) >= NEAR_EQUAL * longest and sum(same[:half]) >= NEAR_EQUAL * half


def _letter(index: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[index] if index < 26 else "?"


def _letters(contents: list[list[tuple]]) -> list[int]:
    """Each content's letter index: an earlier nearly equal content's, else a new one.

    After 26 letters a new content gets 26 ("?") and is not compared with later ones,
    which keeps the work linear on garbage with thousands of sections.
    """
    firsts: list[list[tuple]] = []
    out = []
    for content in contents:
        for index, first in enumerate(firsts):
            if _nearly_equal(content, first):
                out.append(index)
                break
        else:
            if len(firsts) < 26:
                firsts.append(content)
                out.append(len(firsts) - 1)
            else:
                out.append(26)
    return out


def _split_unmarked(counted: list[_Bar]) -> list[list[_Bar]] | None:
    """Parts of a tune without section marks, when some part repeats an earlier one."""
    n = len(counted)
    if n >= 16 and n % 8 == 0:
        size = 8
    elif n >= 8 and n % 2 == 0:
        size = n // 2
    else:
        return None
    chunks = [counted[i : i + size] for i in range(0, n, size)]
    letters = _letters([[b.content for b in c] for c in chunks])
    return chunks if len(set(letters)) < len(letters) else None


# --- one tune ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneForm:
    """The form and melodic figures of one tune (see the module docstring for definitions).

    ``valid`` is False when the tune cannot be read or has no notes; then ``error`` says
    why and the figures are empty. Rates whose denominator is zero are ``None``, as are the
    tonal figures when the key has no tonic.
    """

    valid: bool
    error: str = ""
    meter: str = ""  # "6/8", "4/4" (for C), "2/2" (for C|), "none"
    key: str = ""
    tonic: str | None = None
    mode: str = ""
    sections: tuple[Section, ...] = ()
    sections_inferred: bool = False  # sections found by content in a tune without marks
    bars_per_section: tuple[int, ...] = ()
    label: str = ""
    all_sections_8_or_16: bool = False
    repeat_marks: bool = False
    ends_on_tonic: bool | None = None
    final_bar_tonic: bool | None = None
    bars: int = 0  # as written
    bar_repetition: float | None = None
    bar_minus_4: float | None = None
    pitch_class_profile: tuple[float, ...] | None = None  # index 0 = tonic
    out_of_key: float | None = None
    stepwise: float | None = None
    leaps_over_fifth: float | None = None
    range_semitones: int = 0
    notes: int = 0
    # Counts behind the rates, for pooled population figures.
    repeating_bars: int = 0
    minus_4_pairs: int = 0
    minus_4_equal: int = 0
    keyed_notes: int = 0
    out_of_key_notes: int = 0
    intervals: int = 0
    steps: int = 0
    leaps: int = 0

    @property
    def form_key(self) -> str | None:
        """The form as a generator would be asked for it: label / bars per part.

        ``"AABB/8"`` when all parts have the same length, else the sections' lengths in
        written order (``"AAB/4+8"``), for a label in :data:`GENERATABLE` whose sections all
        have 4, 8 or 16 bars; ``"free"`` for anything else; None for an invalid tune.
        """
        if not self.valid:
            return None
        sizes = self.bars_per_section
        if self.label not in GENERATABLE or not sizes or not set(sizes) <= PART_BARS:
            return "free"
        if len(set(sizes)) == 1:
            return f"{self.label}/{sizes[0]}"
        return f"{self.label}/{'+'.join(map(str, sizes))}"

    def to_dict(self) -> dict:
        """Plain JSON-serializable values."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["sections"] = [vars(s) for s in self.sections]
        out["bars_per_section"] = list(self.bars_per_section)
        if self.pitch_class_profile is not None:
            out["pitch_class_profile"] = list(self.pitch_class_profile)
        out["form_key"] = self.form_key
        return out


def meter_name(text: str) -> str:
    """An ``M:`` value as the form prior's meters are named: ``C`` → ``"4/4"``, ``C|`` →
    ``"2/2"``, ``none`` or unreadable → ``"none"``."""
    try:
        meter = parse_meter(text)
    except ValueError:
        return "none"
    return "none" if meter.free else f"{meter.numerator}/{meter.denominator}"


def analyze(text: str | ParsedTune) -> TuneForm:
    """Form and melodic figures of one tune (ABC text from ``X:``, or a parsed tune).

    Never raises: a tune that cannot be read, or has no notes, gives ``valid=False``.
    """
    try:
        return _analyze(text)
    except (ABCError, ValueError) as exc:
        return TuneForm(valid=False, error=str(exc))
    except Exception as exc:  # a bug must not cost a whole population's summary
        return TuneForm(valid=False, error=f"internal error: {type(exc).__name__}: {exc}")


def _analyze(text: str | ParsedTune) -> TuneForm:
    tune = parse_tune(text) if isinstance(text, str) else text
    events = walk_events(tune)
    bars = _bars(events)

    # Melody figures, with the key in force at each note.
    key = read_key(tune.key)
    profile = [0.0] * 12
    pitches: list[int] = []
    last_tonic: int | None = None
    notes = keyed = outside = intervals = steps = leaps = 0
    previous: int | None = None
    for event in events:
        if isinstance(event, Change):
            if event.field == "K":
                key = read_key(event.value)
            continue
        if not isinstance(event, Note) or event.pitch is None:
            continue
        pitch, tonic = event.pitch, key.tonic_class
        pitches.append(pitch)
        last_tonic = tonic
        if tonic is not None:
            profile[(pitch - tonic) % 12] += float(event.duration)
        if event.tied and pitch == previous:
            continue  # the same note held on
        notes += 1
        if tonic is not None:
            keyed += 1
            outside += pitch % 12 not in key.scale
        if previous is not None:
            step = abs(pitch - previous)
            intervals += 1
            steps += 1 <= step <= 2
            leaps += step > 7
        previous = pitch
    if not pitches:
        return TuneForm(valid=False, error="no notes", meter=meter_name(tune.get("M") or ""))

    # Sections and the label.
    parts = _parts(bars)
    inferred = False
    if len(parts) == 1 and not parts[0].repeated and not parts[0].endings:
        chunks = _split_unmarked(parts[0].counted)
        if chunks:
            inferred = True
            parts = []
            for chunk in chunks:
                parts.append(_Part())
                parts[-1].body = chunk
    sections = tuple(p.section() for p in parts)
    letters = _letters([[b.content for b in p.counted] for p in parts])
    label = "".join(_letter(i) * (2 if s.repeated else 1) for i, s in zip(letters, sections))

    # Bar repetition, bars as written.
    contents = [b.content for b in bars]
    seen: set = set()
    repeating = 0
    for content in contents:
        repeating += content in seen
        seen.add(content)
    pairs = max(0, len(contents) - 4)
    minus_4 = sum(contents[i] == contents[i - 4] for i in range(4, len(contents)))

    total = sum(profile)
    final_pitches = [n.pitch % 12 for n in bars[-1].notes if n.pitch is not None] if bars else []
    if not final_pitches:  # a last bar of rests: the last bar with notes
        sounding = [b for b in bars if any(n.pitch is not None for n in b.notes)]
        final_pitches = [n.pitch % 12 for n in sounding[-1].notes if n.pitch is not None]
    return TuneForm(
        valid=True,
        meter=meter_name(tune.get("M") or ""),
        key=tune.key,
        tonic=read_key(tune.key).tonic,
        mode=read_key(tune.key).mode,
        sections=sections,
        sections_inferred=inferred,
        bars_per_section=tuple(s.bars for s in sections),
        label=label,
        all_sections_8_or_16=bool(sections) and all(s.bars in (8, 16) for s in sections),
        repeat_marks=any(
            isinstance(e, BarLine) and (e.kind in _REPEAT_KINDS or e.ending) for e in events
        ),
        ends_on_tonic=None if last_tonic is None else pitches[-1] % 12 == last_tonic,
        final_bar_tonic=None if last_tonic is None else last_tonic in final_pitches,
        bars=len(bars),
        bar_repetition=repeating / len(bars) if bars else None,
        bar_minus_4=minus_4 / pairs if pairs else None,
        pitch_class_profile=tuple(p / total for p in profile) if keyed and total else None,
        out_of_key=outside / keyed if keyed else None,
        stepwise=steps / intervals if intervals else None,
        leaps_over_fifth=leaps / intervals if intervals else None,
        range_semitones=max(pitches) - min(pitches),
        notes=notes,
        repeating_bars=repeating,
        minus_4_pairs=pairs,
        minus_4_equal=minus_4,
        keyed_notes=keyed,
        out_of_key_notes=outside,
        intervals=intervals,
        steps=steps,
        leaps=leaps,
    )


# --- populations ------------------------------------------------------------------------------


def _forms(items: Iterable[str | ParsedTune | TuneForm]) -> list[TuneForm]:
    return [item if isinstance(item, TuneForm) else analyze(item) for item in items]


def _share(values: list) -> float | None:
    """Share of true values among those that are not None."""
    known = [v for v in values if v is not None]
    return sum(map(bool, known)) / len(known) if known else None


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def summarize(items: Iterable[str | ParsedTune | TuneForm], top: int = 8) -> dict:
    """Population figures of many tunes (texts, parsed tunes or :class:`TuneForm`).

    Shares of tunes: ``repeat_marks``, ``all_sections_8_or_16``, ``aabb_8`` (label AABB, both
    parts 8 bars), ``ends_on_tonic``, ``final_bar_tonic`` (over tunes with a tonic).
    ``sections_8_or_16`` is a share of sections. ``bar_repetition``, ``bar_minus_4`` are
    pooled over the bars of all tunes (bars as written); ``out_of_key`` over notes;
    ``stepwise`` and ``leaps_over_fifth`` over intervals. ``pitch_class_profile`` is the
    mean of the tunes' profiles (each tune weighs the same); ``forms`` the shares of the
    ``top`` commonest labels and ``"other"``. Invalid tunes count only in ``tunes``.
    All values are plain JSON types.
    """
    all_forms = _forms(items)
    forms = [f for f in all_forms if f.valid]
    sections = [s for f in forms for s in f.sections]
    labels = Counter(f.label for f in forms)
    form_shares = {label: n / len(forms) for label, n in labels.most_common(top)}
    if len(labels) > top:
        form_shares["other"] = 1 - sum(form_shares.values())
    profiles = [f.pitch_class_profile for f in forms if f.pitch_class_profile is not None]
    mean_profile = (
        [sum(p[i] for p in profiles) / len(profiles) for i in range(12)] if profiles else None
    )
    return {
        "tunes": len(all_forms),
        "valid": len(forms),
        "repeat_marks": _share([f.repeat_marks for f in forms]),
        "sections_8_or_16": _share([s.bars in (8, 16) for s in sections]),
        "all_sections_8_or_16": _share([f.all_sections_8_or_16 for f in forms]),
        "aabb_8": _share([f.label == "AABB" and f.bars_per_section == (8, 8) for f in forms]),
        "forms": form_shares,
        "ends_on_tonic": _share([f.ends_on_tonic for f in forms]),
        "final_bar_tonic": _share([f.final_bar_tonic for f in forms]),
        "bar_repetition": _ratio(sum(f.repeating_bars for f in forms), sum(f.bars for f in forms)),
        "bar_minus_4": _ratio(
            sum(f.minus_4_equal for f in forms), sum(f.minus_4_pairs for f in forms)
        ),
        "pitch_class_profile": mean_profile,
        "out_of_key": _ratio(
            sum(f.out_of_key_notes for f in forms), sum(f.keyed_notes for f in forms)
        ),
        "stepwise": _ratio(sum(f.steps for f in forms), sum(f.intervals for f in forms)),
        "leaps_over_fifth": _ratio(sum(f.leaps for f in forms), sum(f.intervals for f in forms)),
        "median_range": statistics.median(f.range_semitones for f in forms) if forms else None,
        "mean_notes": statistics.fmean(f.notes for f in forms) if forms else None,
    }


def profile_overlap(p: Iterable[float] | dict, q: Iterable[float] | dict) -> float:
    """``sum(min(p_i, q_i))``: 1 for identical distributions, 0 for disjoint ones.

    Takes two sequences of equal length, or two dicts (missing keys count as 0).
    """
    if isinstance(p, dict) or isinstance(q, dict):
        p, q = dict(p), dict(q)
        return sum(min(p.get(k, 0.0), q.get(k, 0.0)) for k in p.keys() | q.keys())
    return sum(min(a, b) for a, b in zip(p, q))


# Figures compared by |generated − reference|; distributions by 1 − overlap.
_SCALAR_FIGURES = (
    "repeat_marks",
    "sections_8_or_16",
    "all_sections_8_or_16",
    "aabb_8",
    "ends_on_tonic",
    "final_bar_tonic",
    "bar_repetition",
    "bar_minus_4",
    "out_of_key",
    "stepwise",
    "leaps_over_fifth",
    "median_range",
    "mean_notes",
)
_DISTRIBUTIONS = ("forms", "pitch_class_profile")


def compare(generated: dict, reference: dict) -> list[tuple[str, object, object, float | None]]:
    """Rows ``(figure, generated, reference, distance)`` for two :func:`summarize` results.

    The distance is ``|generated − reference|`` for shares (0…1), the median range
    (semitones) and the mean notes per tune, and ``1 − overlap`` for the distributions of
    form labels and the pitch-class profile; None when either side has no value.
    """
    rows: list[tuple[str, object, object, float | None]] = []
    for name in _SCALAR_FIGURES + _DISTRIBUTIONS:
        g, r = generated.get(name), reference.get(name)
        if g is None or r is None:
            distance = None
        elif name in _DISTRIBUTIONS:
            distance = 1 - profile_overlap(g, r)
        else:
            distance = abs(g - r)
        rows.append((name, g, r, distance))
    return rows


def show_figure(name: str, value: object) -> str:
    """A figure for the table: shares in %, a profile by its three largest degrees."""
    if value is None:
        return "-"
    if isinstance(value, dict):  # form labels, largest first
        return " ".join(f"{k} {v:.0%}" for k, v in list(value.items())[:3])
    if isinstance(value, (list, tuple)):  # pitch-class profile: semitones above the tonic
        top = sorted(range(len(value)), key=lambda i: -value[i])[:3]
        return " ".join(f"+{i}:{value[i]:.0%}" for i in top)
    if name in ("median_range", "mean_notes"):
        return f"{value:.1f}"
    return f"{value:.1%}"


def format_comparison(rows: list[tuple[str, object, object, float | None]]) -> str:
    """The rows of :func:`compare` as a text table: each figure beside the reference's."""
    lines = [f"{'figure':<22} {'generated':>26} {'reference':>26} {'distance':>9}"]
    for name, g, r, distance in rows:
        d = "-" if distance is None else f"{distance:.3f}"
        lines.append(f"{name:<22} {show_figure(name, g):>26} {show_figure(name, r):>26} {d:>9}")
    return "\n".join(lines)


def form_distribution(items: Iterable[str | ParsedTune | TuneForm]) -> dict[str, dict[str, float]]:
    """``{meter: {form_key: probability}}`` over valid tunes (see :attr:`TuneForm.form_key`).

    Meters are normalised (``C`` → ``4/4``, ``C|`` → ``2/2``); keys within a meter are in
    order of decreasing probability.
    """
    counts: dict[str, Counter] = {}
    for form in _forms(items):
        if form.valid:
            counts.setdefault(form.meter, Counter())[form.form_key] += 1
    out = {}
    for meter in sorted(counts, key=lambda m: -sum(counts[m].values())):
        total = sum(counts[meter].values())
        out[meter] = {key: n / total for key, n in counts[meter].most_common()}
    return out


def form_prior() -> dict[str, dict[str, float]]:
    """The corpus's forms per meter, ``{meter: {form_key: probability}}``, as shipped in
    ``form_prior.json`` (written by ``scripts/form_prior.py`` from the training split)."""
    if not PRIOR_FILE.is_file():
        raise FileNotFoundError(f"{PRIOR_FILE} is missing; run scripts/form_prior.py")
    return json.loads(PRIOR_FILE.read_text())["forms"]


__all__ = [
    "BarLine",
    "Change",
    "Event",
    "Key",
    "Note",
    "Section",
    "TuneForm",
    "analyze",
    "bar_kind",
    "compare",
    "form_distribution",
    "form_prior",
    "format_comparison",
    "show_figure",
    "meter_name",
    "profile_overlap",
    "read_key",
    "summarize",
    "walk_events",
]
