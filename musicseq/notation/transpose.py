"""Transposing ABC tunes: the same tune in another key of its mode (data augmentation).

``transpose(text, semitones)`` moves the key and every note by the same interval, spelled
the way a musician would write it: the new tonic gets the spelling with the fewest sharps or
flats for the mode (``K:D`` up two semitones is ``K:E``, up three ``K:F``, not ``K:E#``), each
note moves by the same number of letter steps, and an explicit accidental keeps its distance
from the key signature (``=c`` in D major, a semitone below the signature's c sharp, becomes
``=d`` in E major, a semitone below its d sharp). Because notes move letter by letter, the bar-long
scope of an accidental carries over unchanged. Chord symbols (``"Am7"``, ``"D/F#"``) move too;
everything else -- lengths, bar lines, decorations, annotations, other fields -- is kept as
written. Tunes whose key cannot be moved this way (``K:none``, bagpipe ``K:HP``, a key with
explicit accidentals, a spelling beyond double sharps or flats) give ``None``.
"""

from __future__ import annotations

import random
import re

from musicseq.notation.form import (  # the key tables of the form analysis
    _FIFTHS,
    _FLATS,
    _LETTERS,
    _MODE_FIFTHS,
    _SEMITONES,
    _SHARPS,
)
from musicseq.notation.tunebook import parse_key

_ACCIDENTAL = {-2: "__", -1: "_", 0: "=", 1: "^", 2: "^^"}
_KEY_VALUE = re.compile(r"^(\s*)([A-G])([#b]?)(.*)$")
_CHORD = re.compile(
    r"^([A-G])([#b]?)((?:m|min|maj|dim|aug|sus|add|M|\+|[0-9]|\(|\))*)(?:/([A-G])([#b]?))?$"
)


class _Shift:
    """A transposition: ``semitones`` and the letter steps ``letters`` that spell it."""

    def __init__(self, semitones: int, letters: int):
        self.semitones, self.letters = semitones, letters

    def pitch_name(self, letter: str, accidental: int) -> tuple[str, int] | None:
        """(letter, alteration) of a pitch name moved by this shift; None beyond +-2."""
        index = _LETTERS.index(letter) + self.letters
        new_letter = _LETTERS[index % 7]
        octave = index // 7
        old = _SEMITONES[_LETTERS.index(letter)] + accidental + self.semitones
        alteration = old - (_SEMITONES[_LETTERS.index(new_letter)] + 12 * octave)
        return (new_letter, alteration) if -2 <= alteration <= 2 else None


def _signature(tonic: str, accidental: int, mode: str) -> tuple[int, list[int]] | None:
    fifths = _FIFTHS[tonic] + 7 * accidental + _MODE_FIFTHS[mode]
    if not -7 <= fifths <= 7:
        return None
    signature = [0] * 7
    for letter in _SHARPS[:fifths] if fifths > 0 else _FLATS[:-fifths]:
        signature[_LETTERS.index(letter)] = 1 if fifths > 0 else -1
    return fifths, signature


def _read_key(value: str) -> tuple[str, int, str, str] | None:
    """(tonic letter, alteration, mode, rest of the value) of a plain ``K:`` value."""
    match = _KEY_VALUE.match(value)
    if not match:
        return None
    try:
        tonic, mode = parse_key(value.strip())
    except ValueError:
        return None
    if not mode or tonic in ("HP", "Hp") or "=" in value or "^" in value or "_" in value:
        return None
    return match.group(2), {"#": 1, "b": -1}.get(match.group(3), 0), mode, match.group(4)


def key_shift(key_value: str, semitones: int) -> _Shift | None:
    """The spelling of ``semitones`` for a tune in ``K:key_value``: the new tonic with the
    fewest sharps or flats (None if the key cannot be read or moved)."""
    read = _read_key(key_value)
    if read is None:
        return None
    tonic, accidental, mode, _ = read
    best = None
    for letters in range(-6, 7):
        if letters and (letters > 0) != (semitones > 0):
            continue
        shift = _Shift(semitones, letters)
        name = shift.pitch_name(tonic, accidental)
        if name is None or abs(name[1]) > 1:
            continue
        signature = _signature(name[0], name[1], mode)
        if signature is not None and (best is None or abs(signature[0]) < best[0]):
            best = (abs(signature[0]), shift)
    return best[1] if best else None


class _Transposer:
    def __init__(self, shift: _Shift):
        self.shift = shift
        self.old = self.new = None  # signatures of the key in force

    def key(self, value: str) -> str | None:
        read = _read_key(value)
        if read is None:
            return None
        tonic, accidental, mode, rest = read
        name = self.shift.pitch_name(tonic, accidental)
        if name is None or abs(name[1]) > 1:
            return None
        old, new = _signature(tonic, accidental, mode), _signature(name[0], name[1], mode)
        if old is None or new is None:
            return None
        self.old, self.new = old[1], new[1]
        lead = value[: len(value) - len(value.lstrip())]
        return f"{lead}{name[0]}{'#' if name[1] > 0 else 'b' if name[1] < 0 else ''}{rest}"

    def note(self, accidental: str, letter: str, octave_marks: str) -> str | None:
        index = _LETTERS.index(letter.upper())
        octave = (5 if letter.islower() else 4) + octave_marks.count("'") - octave_marks.count(",")
        moved = octave * 7 + index + self.shift.letters
        octave, new_index = divmod(moved, 7)
        text = _LETTERS[new_index]
        text = text.lower() + "'" * (octave - 5) if octave >= 5 else text + "," * (4 - octave)
        if not accidental:
            return text
        explicit = accidental.count("^") - accidental.count("_")
        alteration = self.new[new_index] + explicit - self.old[index]
        if alteration not in _ACCIDENTAL:
            return None
        return _ACCIDENTAL[alteration] + text

    def chord_symbol(self, content: str) -> str:
        match = _CHORD.match(content)
        if not match:
            return content
        out = []
        for letter, sign in ((match.group(1), match.group(2)), (match.group(4), match.group(5))):
            if letter is None:
                continue
            name = self.shift.pitch_name(letter, {"#": 1, "b": -1}.get(sign, 0))
            if name is None or abs(name[1]) > 1:
                return content
            out.append(name[0] + ("#" if name[1] > 0 else "b" if name[1] < 0 else ""))
        return out[0] + match.group(3) + (f"/{out[1]}" if len(out) > 1 else "")


_NOTE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-g])([,']*)")
_FIELD_LINE = re.compile(r"^([A-Za-z]):(.*)$")


def transpose(text: str, semitones: int) -> str | None:
    """``text`` (one tune) moved by ``semitones``; None if it cannot be (see the module)."""
    if semitones == 0:
        return text
    lines = text.split("\n")
    first_key = next((ln[2:] for ln in lines if ln.startswith("K:")), None)
    shift = key_shift(first_key, semitones) if first_key is not None else None
    if shift is None:
        return None
    mover = _Transposer(shift)
    out, in_body = [], False
    for line in lines:
        field = _FIELD_LINE.match(line)
        if field and not (in_body and line[:1] in "ABCDEFGabcdefg"):
            name, value = field.groups()
            if name == "K":
                moved = mover.key(value)
                if moved is None:
                    return None
                out.append(f"K:{moved}")
                in_body = True
            else:
                out.append(line)
            continue
        if not in_body:
            out.append(line)
            continue
        moved = _body_line(line, mover)
        if moved is None:
            return None
        out.append(moved)
    return "\n".join(out)


def _body_line(line: str, mover: _Transposer) -> str | None:
    out, i, n = [], 0, len(line)
    while i < n:
        c = line[i]
        if c == "%":
            out.append(line[i:])
            break
        if c in '"!+':  # annotation or chord symbol, decoration
            end = line.find(c, i + 1)
            end = n if end < 0 else end
            content = line[i + 1 : end]
            if c == '"':
                content = mover.chord_symbol(content)
            out.append(c + content + line[end : end + 1])
            i = end + 1
            continue
        if c == "[" and i + 2 < n and line[i + 1].isalpha() and line[i + 2] == ":":
            end = line.find("]", i)
            end = n if end < 0 else end
            if line[i + 1] == "K":
                moved = mover.key(line[i + 3 : end])
                if moved is None:
                    return None
                out.append(f"[K:{moved}]")
            else:
                out.append(line[i : end + 1])
            i = end + 1
            continue
        match = _NOTE.match(line, i)
        if match:
            moved = mover.note(match.group(1) or "", match.group(2), match.group(3))
            if moved is None:
                return None
            out.append(moved)
            i = match.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)


def common_shifts(text: str, max_fifths: int = 4) -> list[int]:
    """The shifts (-5 … +6 semitones, not 0) that put ``text`` in a key of its mode with at
    most ``max_fifths`` sharps or flats (the keys folk tunes are written in)."""
    first_key = next((ln[2:] for ln in text.split("\n") if ln.startswith("K:")), None)
    if first_key is None or _read_key(first_key) is None:
        return []
    tonic, accidental, mode, _ = _read_key(first_key)
    shifts = []
    for semitones in range(-5, 7):
        shift = key_shift(first_key, semitones) if semitones else None
        if shift is None:
            continue
        letter, alteration = shift.pitch_name(tonic, accidental)
        signature = _signature(letter, alteration, mode)
        if signature is not None and abs(signature[0]) <= max_fifths:
            shifts.append(semitones)
    return shifts


def augment(texts: list[str], copies: int, seed: int = 0) -> list[str]:
    """``texts`` followed by up to ``copies`` transpositions of each into common keys of its
    mode (chosen at random with ``seed``; a tune that cannot be moved is kept once)."""
    rng = random.Random(seed)
    extra = []
    for text in texts:
        shifts = common_shifts(text)
        for semitones in rng.sample(shifts, min(copies, len(shifts))):
            moved = transpose(text, semitones)
            if moved is not None:
                extra.append(moved)
    return [*texts, *extra]
