"""Tunebooks: split ABC text into tunes, read header fields, normalise for training.

Pure Python (never imports TensorFlow). Bad tunes are collected as typed errors, never
raised out of :func:`parse_tunebook`, so one broken tune never costs the others.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction

# Fields kept in the training text; everything else in the header is metadata.
MUSICAL_FIELDS = frozenset("XTRMLQKPV")
# Fields that may stand on their own line inside a body and still matter musically.
BODY_FIELDS = frozenset("MLKQPV")

_FIELD_RE = re.compile(r"^([A-Za-z+]):(.*)$")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_METER_RE = re.compile(r"^\(?(\d+(?:\+\d+)*)\)?/(\d+)$")
_LENGTH_RE = re.compile(r"^(\d+)/(\d+)$")
# "| M:4/4 egdB" - a bare meter/length change in the middle of a music line.
_MIDLINE_FIELD_RE = re.compile(r"(\|\s*)([ML]):(\d+/\d+)")


class ABCError(Exception):
    """A tune (or piece of a tunebook) that cannot be used, with where it was found."""

    reason = "malformed tune"

    def __init__(self, source: str, line: int, detail: str = ""):
        self.source = source
        self.line = line
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        extra = f": {self.detail}" if self.detail else ""
        return f"{self.source}:{self.line}: {self.reason}{extra}"


class MissingKeyError(ABCError):
    reason = "no K: field"


class EmptyBodyError(ABCError):
    reason = "no music after K:"


class EncodingError(ABCError):
    reason = "non-ASCII or binary bytes"


class FieldError(ABCError):
    reason = "unparsable header field"


class FragmentError(ABCError):
    reason = "music outside any tune (no X: before it)"


@dataclass(frozen=True)
class Meter:
    """A time signature; ``free`` for ``M:none``. ``bar`` is the bar length in whole notes."""

    text: str
    numerator: int = 4
    denominator: int = 4
    free: bool = False

    @property
    def bar(self) -> Fraction | None:
        return None if self.free else Fraction(self.numerator, self.denominator)


@dataclass(frozen=True)
class ParsedTune:
    """One parsed tune: its ordered header fields, its body lines and where it came from.

    (The notebook's :class:`musicseq.api.Tune` wraps a tune's text for display and audio.)
    """

    headers: tuple[tuple[str, str], ...]
    body: tuple[str, ...]
    source: str = "<string>"
    line: int = 1
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header field ``name`` (e.g. ``"T"``), or ``default``."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    @property
    def title(self) -> str:
        return self.get("T", "") or ""

    @property
    def meter(self) -> Meter:
        return parse_meter(self.get("M", "none") or "none")

    @property
    def unit_length(self) -> Fraction:
        text = self.get("L")
        return parse_length(text) if text else default_unit_length(self.meter)

    @property
    def key(self) -> str:
        return self.get("K", "") or ""

    @property
    def text(self) -> str:
        """The tune as ABC text, one field or body line per line, ending in a newline."""
        lines = [f"{k}:{v}" for k, v in self.headers] + list(self.body)
        return "\n".join(lines) + "\n"

    def content_text(self) -> str:
        """The tune without its X: line: the identity used for de-duplication and splits."""
        lines = [f"{k}:{v}" for k, v in self.headers if k != "X"] + list(self.body)
        return "\n".join(lines) + "\n"


def parse_meter(text: str) -> Meter:
    """Parse an ``M:`` value: ``6/8``, ``C``, ``C|``, ``(2+3)/8``, ``none``.

    Raises ``ValueError`` for anything else.
    """
    value = text.strip()
    if value in ("", "none", "None", "NONE"):
        return Meter(value or "none", free=True)
    if value == "C":
        return Meter(value, 4, 4)
    if value == "C|":
        return Meter(value, 2, 2)
    match = _METER_RE.match(value.replace(" ", ""))
    if not match:
        raise ValueError(f"bad meter {text!r}")
    numerator = sum(int(part) for part in match.group(1).split("+"))
    denominator = int(match.group(2))
    if numerator <= 0 or denominator <= 0 or numerator > 64 or denominator > 64:
        raise ValueError(f"bad meter {text!r}")
    return Meter(value, numerator, denominator)


def parse_length(text: str) -> Fraction:
    """Parse an ``L:`` value such as ``1/8``; raises ``ValueError`` otherwise."""
    match = _LENGTH_RE.match(text.strip())
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise ValueError(f"bad unit note length {text!r}")
    return Fraction(int(match.group(1)), int(match.group(2)))


def default_unit_length(meter: Meter) -> Fraction:
    """ABC's default ``L:``: 1/16 when the meter is below 3/4, else 1/8 (1/8 when free)."""
    if meter.free or Fraction(meter.numerator, meter.denominator) >= Fraction(3, 4):
        return Fraction(1, 8)
    return Fraction(1, 16)


def strip_comment(line: str) -> str:
    """Drop a ``%`` comment (an escaped ``\\%`` is kept) and trailing spaces."""
    if "%" in line:
        out = []
        escaped = False
        for ch in line:
            if ch == "%" and not escaped:
                break
            out.append(ch)
            escaped = ch == "\\"
        line = "".join(out)
    return line.rstrip()


def _ascii_text(value: str) -> str:
    """Transliterate free text (titles) to ASCII: ``Ó`` → ``O``; drops what has no form."""
    decomposed = unicodedata.normalize("NFKD", value)
    return decomposed.encode("ascii", "ignore").decode("ascii")


def split_tunebook(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Split a tunebook on ``X:`` lines.

    Returns ``(preamble, tunes)``: the text before the first ``X:`` and each tune's text,
    each as ``(first_line_number, text)``. Blank lines inside a tune stay in it.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    preamble_lines: list[str] = []
    tunes: list[tuple[int, list[str]]] = []
    for number, line in enumerate(lines, start=1):
        if line.startswith("X:"):
            tunes.append((number, [line]))
        elif tunes:
            tunes[-1][1].append(line)
        else:
            preamble_lines.append(line)
    preamble = [(1, "\n".join(preamble_lines))] if any(s.strip() for s in preamble_lines) else []
    return preamble, [(n, "\n".join(chunk)) for n, chunk in tunes]


def _preamble_error(text: str, source: str) -> ABCError | None:
    """Report music written before the first ``X:`` (file headers and free text are fine)."""
    for number, raw in enumerate(text.split("\n"), start=1):
        line = strip_comment(raw)
        if not line or _FIELD_RE.match(line):
            continue
        # A line of mostly note letters and bar lines, outside a tune, is a lost fragment.
        if "|" in line and sum(ch in "ABCDEFGabcdefg|:" for ch in line) >= len(line) // 2:
            return FragmentError(source, number, line[:40])
    return None


def parse_tune(text: str, source: str = "<string>", line: int = 1) -> ParsedTune:
    """Parse and normalise one tune's text (starting at ``X:``).

    Normalisation drops comments, ``%%`` directives, metadata fields (Z: N: B: S: H: D: F:
    …), lyrics (w:/W:), blank lines and trailing spaces, and keeps X: T: R: M: L: Q: P: V: K:
    and the body. Raises a subclass of :class:`ABCError` when the tune cannot be used.
    """
    if _CONTROL_RE.search(text):
        offset = text[: _CONTROL_RE.search(text).start()].count("\n")
        raise EncodingError(source, line + offset, "control characters")
    headers: list[tuple[str, str]] = []
    body: list[str] = []
    in_header = True
    skip_continuation = False
    lines = text.split("\n")
    for offset, raw in enumerate(lines):
        number = line + offset
        if skip_continuation or raw.startswith("%"):
            # A directive ending in a backslash continues on the next line.
            skip_continuation = raw.rstrip().endswith("\\")
            continue
        stripped = strip_comment(raw)
        if not stripped.strip():
            continue
        field_match = _FIELD_RE.match(stripped)
        if in_header:
            if not field_match:
                if not headers or any(k == "K" for k, _ in headers):
                    in_header = False
                elif any(later.startswith("K:") for later in lines[offset:]):
                    raise FieldError(
                        source, number, f"not a field line in the header: {stripped[:40]!r}"
                    )
                else:
                    raise MissingKeyError(source, line, "music before K:")
            else:
                name, value = field_match.group(1), field_match.group(2).strip()
                if name not in MUSICAL_FIELDS:
                    continue
                if name in ("T", "R"):
                    value = _ascii_text(value)
                if not value.isascii():
                    raise EncodingError(source, number, f"in {name}: field")
                _check_field(name, value, source, number)
                headers.append((name, value))
                if name == "K":
                    in_header = False
                continue
        # Body: keep music and musical field lines; drop lyrics and other metadata.
        if field_match:
            name, value = field_match.group(1), field_match.group(2).strip()
            if name not in BODY_FIELDS:
                continue
            head, _, rest = value.partition(" ")
            if name in "ML" and rest.strip():
                # "M:9/8 EDC DA,B,|" (music after a field on its line): make it inline.
                _check_field(name, head, source, number)
                stripped = f"[{name}:{head}] {rest.strip()}"
            else:
                _check_field(name, value, source, number)
        stripped = _MIDLINE_FIELD_RE.sub(r"\1[\2:\3]", stripped)
        if not stripped.isascii():
            raise EncodingError(source, number, "non-ASCII character in the music")
        body.append(stripped)
    if not any(k == "K" for k, _ in headers):
        raise MissingKeyError(source, line)
    if not any(not _FIELD_RE.match(b) for b in body):
        raise EmptyBodyError(source, line)
    return ParsedTune(headers=tuple(headers), body=tuple(body), source=source, line=line)


def _check_field(name: str, value: str, source: str, number: int) -> None:
    try:
        if name == "M":
            parse_meter(value)
        elif name == "L":
            parse_length(value)
    except ValueError as exc:
        raise FieldError(source, number, f"{name}:{value}") from exc
    if name == "K" and not value:
        raise FieldError(source, number, "empty K:")


@dataclass
class ParseResult:
    """Tunes and errors found in one or more tunebooks."""

    tunes: list[ParsedTune] = field(default_factory=list)
    errors: list[ABCError] = field(default_factory=list)

    def extend(self, other: ParseResult) -> None:
        self.tunes.extend(other.tunes)
        self.errors.extend(other.errors)

    def summary(self) -> str:
        return f"{len(self.tunes)} tunes, {len(self.errors)} errors"


def parse_tunebook(text: str, source: str = "<string>") -> ParseResult:
    """Split ``text`` on ``X:`` and parse every tune, collecting errors instead of raising."""
    result = ParseResult()
    preamble, chunks = split_tunebook(text)
    for _, pre in preamble:
        error = _preamble_error(pre, source)
        if error:
            result.errors.append(error)
    for number, chunk in chunks:
        try:
            result.tunes.append(parse_tune(chunk, source, number))
        except ABCError as error:
            result.errors.append(error)
    return result


def decode_bytes(data: bytes) -> str:
    """Decode a tunebook file's bytes.

    UTF-8 (with or without BOM) and UTF-16 (with BOM) are decoded as such; anything else is
    read as Latin-1, so the tunes in it can still be parsed and non-ASCII ones reported.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


_KEY_RE = re.compile(
    r"^(?P<tonic>[A-G][#b]?)\s*(?P<mode>|m|min|minor|maj|major|ion|ionian|mix|mixolydian|dor|dorian"
    r"|phr|phrygian|lyd|lydian|loc|locrian|aeo|aeolian)$",
    re.IGNORECASE,
)


def parse_key(text: str) -> tuple[str, str]:
    """Parse a key such as ``G``, ``Dmix``, ``F#m``, ``Bb major``, ``HP``, ``none``.

    Returns ``(tonic, mode)`` with the mode's three-letter form (``maj`` when omitted);
    raises ``ValueError`` for anything else. Accidentals after the mode are ignored.
    """
    value = text.strip().split(" ^")[0].split(" _")[0].split(" =")[0].strip()
    if value in ("HP", "Hp", "none", ""):
        return value or "none", ""
    match = _KEY_RE.match(value)
    if not match or match.group("tonic")[0].islower():
        raise ValueError(f"unknown key {text!r} (examples: G, Dmix, Ador, F#m, Bb)")
    mode = match.group("mode").lower()[:3] or "maj"
    mode = {"m": "min", "ion": "maj", "aeo": "min"}.get(mode, mode)
    return match.group("tonic"), mode


def make_header(
    meter: str = "4/4", key: str = "D", title: str = "", length: str | None = None
) -> str:
    """A valid ABC header (``X:``, ``T:``, ``M:``, ``L:``, ``K:``) to prime generation with.

    Raises ``ValueError`` for a meter, length or key that ABC would not accept.
    """
    parsed_meter = parse_meter(meter)
    unit = parse_length(length) if length else default_unit_length(parsed_meter)
    parse_key(key)
    title = _ascii_text(title).replace("\n", " ").strip()
    lines = ["X:1"] + ([f"T:{title}"] if title else [])
    lines += [f"M:{meter.strip()}", f"L:{unit.numerator}/{unit.denominator}", f"K:{key.strip()}"]
    return "\n".join(lines) + "\n"


def tempo_beat(meter: str | None) -> str:
    """The beat a ``Q:`` tempo counts for ``meter``: a dotted quarter (``3/8``) in compound
    meters (6/8, 9/8, 12/8), a half note in 2/2 and 3/2, else one ``1/denominator`` note."""
    try:
        parsed = parse_meter(meter or "")
    except ValueError:
        parsed = Meter("none", free=True)
    if parsed.free:
        return "1/4"
    if parsed.denominator == 8 and parsed.numerator in (6, 9, 12):
        return "3/8"
    if parsed.denominator == 2 and parsed.numerator in (2, 3):
        return "1/2"
    return f"1/{parsed.denominator}"


def stamp_tune(
    text: str,
    number: int,
    comments: list[str] | tuple[str, ...] = (),
    fields: dict[str, str] | None = None,
) -> str:
    """``text`` as tune ``number``: its ``X:`` line rewritten (or added), ``% comments``
    right after it, and each header field of ``fields`` (``{"Q": "1/4=120"}``) replacing the
    header's own or inserted before ``K:``. The music is left as it is."""
    lines = text.split("\n")
    if lines and lines[0].startswith("X:"):
        lines = lines[1:]
    end = next((i for i, line in enumerate(lines) if line.startswith("K:")), None)
    for name, value in (fields or {}).items():
        header = lines[: len(lines) if end is None else end]
        found = [i for i, line in enumerate(header) if line.startswith(f"{name}:")]
        if found:
            lines[found[0]] = f"{name}:{value}"
        else:
            end = 0 if end is None else end
            lines.insert(end, f"{name}:{value}")
            end += 1
    return "\n".join([f"X:{number}", *(f"% {c}" for c in comments), *lines])
