"""The one model of ABC durations: note-length suffixes, tuplets, broken rhythm, bar lines.

The checker, the decoding grammar, the bar counter and the form analysis all measure time
with these functions, so they can never disagree about how long a note or a bar is.
Durations are exact :class:`~fractions.Fraction` values; ``TICKS`` per whole note gives
integer arithmetic where speed matters (every length in the corpus is a whole number of
ticks). Pure Python.
"""

from __future__ import annotations

import re
from fractions import Fraction

from musicseq.notation.tunebook import Meter, default_unit_length

# Ticks per whole note: divisible by 2^12, 3^3, 5 and 7, so every ABC length met in practice
# (down to 1/256 notes, triplets, quintuplets, septuplets) is a whole number of ticks.
TICKS = 2**12 * 3**3 * 5 * 7

# A note-length suffix: "2", "/2", "3/2", "/", "//".
LENGTH_SUFFIX = re.compile(r"\d*(?:/+\d*)*")
# Bar lines and repeats: |  ||  |]  [|  |:  :|  ::  :|:  [|]  and the ending marker [1
BAR_TOKEN = re.compile(r"\[\|\]|:*\[\||:*\|+\]?:*|::+|\[(?=\d)")
# The numbers of a first/second ending after a bar line: 1  2  1,3  1-3
ENDING = re.compile(r"\d+(?:[,-]\d+)*")

_MULTIPLIERS: dict[str, Fraction] = {}


def length_multiplier(suffix: str) -> Fraction:
    """Note-length suffix ``2``, ``/2``, ``3/2``, ``/``, ``//`` → its multiple of ``L:``.

    ``/`` alone halves, each further ``/`` halves again; a zero divisor gives -1 (the caller
    reports it). Cached: a tune uses a handful of suffixes many times.
    """
    value = _MULTIPLIERS.get(suffix)
    if value is None:
        head, *rest = suffix.split("/")
        value = Fraction(int(head[:5]) if head else 1)
        for part in rest:
            divisor = int(part[:5]) if part else 2
            value = value / divisor if divisor else Fraction(-1)
        if len(_MULTIPLIERS) < 10_000:
            _MULTIPLIERS[suffix] = value
    return value


def is_compound(bar: Fraction | None) -> bool:
    """Compound meters (6/8, 9/8, 12/8, …): the default tuplet ``q`` differs there."""
    return bar is not None and bar.denominator >= 8 and bar.numerator % 3 == 0 and bar.numerator > 3


def tuplet_q(p: int, compound: bool) -> int:
    """ABC 2.1's default ``q`` for ``(p``: the time of ``p`` notes is that of ``q``."""
    if p in (2, 4, 8):
        return 3
    if p in (3, 6):
        return 2
    return 3 if compound else 2


def tuplet_ratio(p: int, q: int | None = None, compound: bool = False) -> Fraction:
    """The factor applied to each note of a ``(p:q`` tuplet: ``q/p``."""
    return Fraction(q or tuplet_q(p, compound), p)


def broken_factors(symbol: str) -> tuple[Fraction, Fraction]:
    """Factors for the notes before and after ``>``, ``>>``, ``<``, ``<<``.

    ``A>B``: A dotted (3/2), B halved (1/2); ``A>>B``: 7/4 and 1/4; ``<`` the other way.
    """
    dots = len(symbol)
    longer = Fraction(2) - Fraction(1, 2**dots)
    shorter = Fraction(1, 2**dots)
    return (longer, shorter) if symbol[0] == ">" else (shorter, longer)


def bar_units(meter: Meter, unit: Fraction | None = None) -> Fraction | None:
    """The bar's length in units of ``L:`` (``None`` for free meter)."""
    bar = meter.bar
    if bar is None:
        return None
    return bar / (unit or default_unit_length(meter))


def fraction_text(value: Fraction) -> str:
    """The shortest ABC suffix for ``value`` units: 1 → "", 2 → "2", 1/2 → "/", 3/2 → "3/2"."""
    if value == 1:
        return ""
    if value.denominator == 1:
        return str(value.numerator)
    if value.numerator == 1 and value.denominator == 2:
        return "/"
    head = "" if value.numerator == 1 else str(value.numerator)
    return f"{head}/{value.denominator}"
