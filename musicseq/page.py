"""The listening page: generated tunes as sheet music, audio and ABC text in one HTML file.

    from musicseq.page import write_page
    write_page(["out/tune_001.abc", "out/tune_002.abc"], "out")   # → out/index.html

Per tune the page shows its score (typeset by abcm2ps through :func:`musicseq.render.abc_to_svg`
and inlined), title, meter, key and form, an audio player for the WAV beside the ABC file
(links to what exists otherwise) and the ABC text. It works offline: no scripts, no
external styles or fonts. Every text is escaped, and each score passes :func:`inline_svg`,
which keeps only plain drawing elements and gives its ids a per-tune prefix, since titles
come from generated text and several scores share one document.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from musicseq import fileio
from musicseq.render import RenderError, abc_to_svg

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
XML_NS = "http://www.w3.org/XML/1998/namespace"
# The first of these beside an ABC file is played (browsers play them all).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")

# What abcm2ps draws with; anything else (scripts, foreignObject, images, links,
# animations) is dropped with its content.
SVG_ELEMENTS = frozenset(
    {"svg", "g", "defs", "use", "path", "circle", "ellipse", "rect", "line", "polyline"}
    | {"polygon", "text", "tspan"}
)
# abcm2ps styles its score with three CSS rules (.fill, .stroke, text); written as attributes
# they cannot leak into the page, and the score needs no stylesheet.
CLASS_PAINT = {
    "fill": {"fill": "currentColor"},
    "stroke": {"stroke": "currentColor", "fill": "none"},
}
SAFE_STYLE = re.compile(r"[\w\s.,:;%#'\"-]*\Z")  # font declarations; no url(), no escapes
MODES = {
    "maj": "major",
    "min": "minor",
    "dor": "dorian",
    "mix": "mixolydian",
    "phr": "phrygian",
    "lyd": "lydian",
    "loc": "locrian",
}


def _local(name: str) -> tuple[str, str]:
    """``(namespace, local name)`` of an ElementTree tag or attribute name."""
    if name.startswith("{"):
        namespace, _, local = name[1:].partition("}")
        return namespace, local
    return "", name


def _length(value: str | None) -> float | None:
    """A plain or ``px`` SVG length as a number (abcm2ps writes ``816.00px``)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*(px)?\s*", value or "")
    return float(match.group(1)) if match else None


def inline_svg(svg: str, prefix: str, label: str = "") -> str:
    """abcm2ps's SVG document as one ``<svg>`` element that is safe to inline in HTML.

    Keeps the drawing elements of :data:`SVG_ELEMENTS` only; drops comments, ``<title>``,
    ``<style>`` (its rules become attributes), event handlers, links other than to the
    score's own definitions and styles that could load anything; prefixes every id with
    ``prefix`` so that scores sharing a document keep their own glyphs. The result is drawn
    on white, scales to its container (``viewBox``) and is also a valid standalone SVG file.
    Raises :class:`RenderError` if ``svg`` is not an SVG document.
    """
    if not re.fullmatch(r"[A-Za-z][\w-]*", prefix):
        raise ValueError(
            f"prefix must be a letter followed by letters, digits, - or _, got {prefix!r}"
        )
    try:
        root = ET.fromstring(svg)
    except ET.ParseError as exc:
        raise RenderError(f"unreadable SVG from abcm2ps: {exc}") from exc
    if _local(root.tag) != (SVG_NS, "svg"):
        raise RenderError(f"expected an SVG document, got <{_local(root.tag)[1]}>")
    width, height = _length(root.get("width")), _length(root.get("height"))
    top = {"xmlns": SVG_NS, "xmlns:xlink": XLINK_NS, "role": "img"}
    if label:
        top["aria-label"] = label
    if width and height:
        top |= {
            "width": f"{width:g}",
            "height": f"{height:g}",
            "viewBox": f"0 0 {width:g} {height:g}",
        }
    # scale down with the page; white-space as abcm2ps's own 'text' rule
    top["style"] = "max-width:100%;height:auto;white-space:pre"
    parts: list[str] = []
    _write(root, prefix, parts, top)
    return "".join(parts)


def _write(element: ET.Element, prefix: str, parts: list[str], top: dict | None = None) -> None:
    namespace, name = _local(element.tag)
    if namespace != SVG_NS or name not in SVG_ELEMENTS:
        return  # dropped with its content (its tail, outside it, is written by the parent)
    attributes = dict(top or {})
    for key, value in element.attrib.items():
        key_ns, key = _local(key)
        if key_ns == XLINK_NS and key == "href":
            key = "xlink:href"
        elif key_ns == XML_NS and key == "space":
            key = "xml:space"
        elif key_ns or (top is not None and key in ("width", "height", "style")):
            continue
        if key.lower().startswith("on") or "url(" in value.replace(" ", "").lower():
            continue
        if key in ("href", "xlink:href"):
            if not value.startswith("#"):
                continue
            value = f"#{prefix}-{value[1:]}"
        elif key == "id":
            value = f"{prefix}-{value}"
        elif key == "style" and not SAFE_STYLE.match(value):
            continue
        attributes[key] = value
    for word in attributes.get("class", "").split():
        for key, value in CLASS_PAINT.get(word, {}).items():
            attributes.setdefault(key, value)
    if name == "text":
        attributes.setdefault("fill", "currentColor")
    attributes.pop("class", None)
    parts.append(f"<{name}")
    parts.extend(f' {key}="{html.escape(value)}"' for key, value in attributes.items())
    parts.append(">")
    if top is not None:  # white paper under the score, also on a dark page
        parts.append('<rect width="100%" height="100%" fill="#fff"></rect>')
    if element.text and name in ("text", "tspan"):
        parts.append(html.escape(element.text, quote=False))
    for child in element:
        _write(child, prefix, parts)
        if child.tail and name in ("text", "tspan"):
            parts.append(html.escape(child.tail, quote=False))
    parts.append(f"</{name}>")


def score_svg(text: str, prefix: str, label: str = "", timeout: float = 30.0) -> str:
    """The score of an ABC tune as an inline-safe ``<svg>`` (abcm2ps, then :func:`inline_svg`).

    Raises :class:`RenderError` when it cannot be typeset (abcm2ps missing or failing).
    """
    return inline_svg(abc_to_svg(text, timeout=timeout), prefix, label)


def score_block(svg: str | None, error: str | None = None) -> str:
    """A score on white paper, or one line saying why there is none."""
    if svg is None:
        reason = html.escape(error or "unknown error")
        return f'<p class="no-score"><em>Score could not be typeset: {reason}</em></p>'
    return (
        '<div class="score" style="background:#fff;color:#000;overflow-x:auto;'
        f'padding:4px 0">{svg}</div>'
    )


def score_html(text: str, prefix: str | None = None, label: str = "") -> str:
    """The score block of an ABC tune for a notebook or page: the typeset score, or a line
    saying why it could not be typeset. ``prefix`` defaults to one derived from the text."""
    prefix = prefix or "s" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
    try:
        return score_block(score_svg(text, prefix, label))
    except RenderError as exc:
        return score_block(None, str(exc).splitlines()[0] if str(exc) else "abcm2ps failed")


@dataclass(frozen=True)
class PageTune:
    """One tune on the page: its ABC text and files beside the page (paths relative to it)."""

    number: int
    text: str
    abc: str | None = None
    audio: str | None = None
    midi: str | None = None
    svg: str | None = None  # the score as a file, for download


def _describe(text: str) -> tuple[str, list[str]]:
    """Title and the facts shown under it: meter, key, rhythm, form."""
    from musicseq.notation import ABCError, parse_tune
    from musicseq.notation.form import analyze

    try:
        parsed = parse_tune(text, "<tune>")
    except ABCError as exc:
        return "", [f"not valid ABC: {exc.reason}"]
    facts = []
    if parsed.get("M"):
        facts.append(f"meter {parsed.get('M')}")
    form = analyze(parsed)
    if form.valid and form.tonic:
        facts.append(f"key {form.tonic} {MODES.get(form.mode, form.mode)}")
    elif parsed.key:
        facts.append(f"key {parsed.key}")
    if parsed.get("R"):
        facts.append(parsed.get("R").lower())
    if form.valid and form.bars_per_section:
        facts.append(f"form {form.label} ({'+'.join(map(str, form.bars_per_section))} bars)")
    return parsed.title, facts


def _href(path: str) -> str:
    return html.escape(quote(path.replace(os.sep, "/")))


def tune_section(tune: PageTune, score: str) -> str:
    """One tune's ``<article>``: heading, facts, score, audio and links, ABC text."""
    title, facts = _describe(tune.text)
    heading = html.escape(title or "(untitled)")
    meta = " · ".join(html.escape(fact) for fact in facts)
    if tune.audio:
        player = f'<audio controls preload="metadata" src="{_href(tune.audio)}"></audio>'
    else:
        player = '<p class="no-audio">No audio: generate with <code>--render</code> to hear it.</p>'
    links = [
        f'<a href="{_href(path)}">{kind}</a>'
        for kind, path in (
            ("ABC", tune.abc),
            ("MIDI", tune.midi),
            (Path(tune.audio or "").suffix[1:].upper(), tune.audio),
            ("SVG", tune.svg),
        )
        if path
    ]
    files = f'<p class="files">{" · ".join(links)}</p>' if links else ""
    return (
        f'<article class="tune" id="tune-{tune.number}">\n'
        f'<h2><span class="number">{tune.number}</span> {heading}</h2>\n'
        f'<p class="meta">{meta}</p>\n{score}\n'
        f'<div class="listen">{player}{files}</div>\n'
        f"<details><summary>ABC notation</summary><pre>{html.escape(tune.text)}</pre></details>\n"
        "</article>"
    )


STYLE = """
:root { color-scheme: light; }
body { margin: 0; background: #f4f2ee; color: #222;
  font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 900px; margin: 0 auto; padding: 24px 16px 48px; }
header h1 { font-size: 1.6rem; margin: 0 0 4px; }
header p { margin: 0; color: #555; }
code { font: 0.85em/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
header code { background: #e8e5df; padding: 1px 5px; border-radius: 4px; overflow-wrap: anywhere; }
.tune { background: #fff; border: 1px solid #ddd8cf; border-radius: 8px; margin: 20px 0;
  padding: 16px 20px; box-shadow: 0 1px 2px rgba(0,0,0,.05); break-inside: avoid; }
.tune h2 { font-size: 1.25rem; margin: 0; }
.tune h2 .number { color: #999; font-weight: normal; margin-right: 4px; }
.meta { margin: 2px 0 8px; color: #666; font-size: 0.9rem; }
.score svg { display: block; margin: 0 auto; }
.no-score, .no-audio { color: #8a5a00; }
.listen { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 16px; margin: 8px 0; }
.listen audio { width: 360px; max-width: 100%; }
.files { margin: 0; font-size: 0.9rem; }
a { color: #1d5fa8; }
details summary { cursor: pointer; color: #555; font-size: 0.9rem; }
pre { background: #f7f6f3; border: 1px solid #eee9e0; border-radius: 4px; padding: 8px 10px;
  overflow-x: auto; font: 13px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
"""


def page_html(
    sections: list[str], heading: str = "Generated tunes", command: str | None = None
) -> str:
    """The whole page around the tunes' ``<article>`` sections."""
    count = f"{len(sections)} tune{'s' if len(sections) != 1 else ''}"
    made = f" made by <code>{html.escape(command)}</code>" if command else ""
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(heading)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"<header><h1>{html.escape(heading)}</h1><p>{count}{made}</p></header>\n"
        f"{body}\n</main>\n</body>\n</html>\n"
    )


def _beside(path: Path, out: Path, suffixes: tuple[str, ...]) -> str | None:
    """The first file ``path`` with one of ``suffixes`` that exists, relative to ``out``."""
    for suffix in suffixes:
        if path.with_suffix(suffix).is_file():
            return os.path.relpath(path.with_suffix(suffix), out)
    return None


def write_page(
    abc_paths: list[str | Path],
    out_dir: str | Path,
    heading: str = "Generated tunes",
    command: str | None = None,
    scores: bool = True,
) -> Path:
    """Write ``out_dir/index.html`` for the tunes in ``abc_paths`` (one tune per file) and each
    score as ``<stem>.svg`` beside its ABC file; returns the page's path.

    The audio played is the first of ``<stem>`` + :data:`AUDIO_SUFFIXES` beside the ABC
    file; a ``<stem>.mid`` is linked. A tune whose score cannot be typeset (abcm2ps missing or
    failing) is shown without one, saying why. ``scores=False`` typesets nothing.
    """
    from musicseq.notation import decode_bytes

    out = Path(out_dir)
    sections = []
    for number, path in enumerate(map(Path, abc_paths), start=1):
        text = decode_bytes(path.read_bytes())
        title, _ = _describe(text)
        svg, error = None, "not requested"
        if scores:
            try:
                svg = score_svg(text, f"t{number}", label=f"Score of {title or 'the tune'}")
                fileio.write_text(path.with_suffix(".svg"), svg)
            except RenderError as exc:
                error = str(exc).splitlines()[0] if str(exc) else "abcm2ps failed"

        tune = PageTune(
            number,
            text,
            abc=os.path.relpath(path, out),
            audio=_beside(path, out, AUDIO_SUFFIXES),
            midi=_beside(path, out, (".mid",)),
            svg=_beside(path, out, (".svg",)) if svg else None,
        )
        sections.append(tune_section(tune, score_block(svg, error) if scores else ""))
    page = out / "index.html"
    fileio.write_text(page, page_html(sections, heading, command))
    return page
