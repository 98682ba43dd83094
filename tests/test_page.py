"""The listening page: scores typeset by abcm2ps, inlined safely, checked in a real browser."""

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from musicseq import api, page, render
from musicseq.notation import parse_tunebook

HAVE_ABCM2PS = shutil.which("abcm2ps") is not None
CHROMIUM = shutil.which("chromium")
needs_abcm2ps = pytest.mark.skipif(
    not HAVE_ABCM2PS, reason="abcm2ps not installed (make setup installs it as root)"
)
# Generated titles are text, never markup: this one would mark the page if it ran.
EVIL_TITLE = '<img src=x onerror="document.body.dataset.pwned=1"> & </pre> "q"'
EVIL_TUNE = f"X:1\nT:{EVIL_TITLE}\nM:4/4\nL:1/8\nK:G\nGABc dedB|c4 B4|]\n"


def _write_tunes(data_dir: Path, out: Path) -> list[Path]:
    """The three fixture tunes and the one with a hostile title, as tune_NNN.abc."""
    texts = [t.text for t in parse_tunebook((data_dir / "three.abc").read_text(), "x").tunes]
    paths = []
    for number, text in enumerate([*texts, EVIL_TUNE], start=1):
        path = out / f"tune_{number:03d}.abc"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


class _Articles(HTMLParser):
    """Counts elements per ``<article>`` of a page (and notes the ``<body>`` attributes)."""

    def __init__(self):
        super().__init__()
        self.articles: list[dict] = []
        self.body: dict = {}
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self.body = dict(attrs)
        if tag == "article":
            self.articles.append({"#text": ""})
        elif self.articles:
            counts = self.articles[-1]
            counts[tag] = counts.get(tag, 0) + 1
            if tag == "audio":
                counts["#src"] = dict(attrs).get("src")

    def handle_data(self, data):
        if self.articles:
            self.articles[-1]["#text"] += data


def test_inline_svg_keeps_drawing_and_drops_active_content():
    svg = (
        '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
        'xmlns:xlink="http://www.w3.org/1999/xlink" width="816.00px" height="100px">'
        "<style>body{background:url(http://example.invalid/x)}</style><title>t.abc</title>"
        "<!-- CommandLine: abcm2ps --><script>alert(1)</script>"
        '<defs><g id="hd" class="fill"><circle r="1"/></g></defs>'
        '<use x="1" y="2" xlink:href="#hd" onclick="alert(2)"/>'
        '<use xlink:href="http://example.invalid/glyphs.svg#hd"/>'
        '<path class="stroke" d="M0 0h9" style="fill:url(http://example.invalid/p)"/>'
        '<foreignObject><p>html</p></foreignObject><a href="javascript:alert(3)"><path d="M1 1"/></a>'
        '<g style="font:20.00px Times"><text x="1" y="2">a &lt;b&gt; &amp; c</text></g></svg>'
    )
    out = page.inline_svg(svg, "t7", label='Score of "x" <y>')
    assert out.startswith("<svg ") and out.count("<svg") == 1
    assert 'viewBox="0 0 816 100"' in out and 'aria-label="Score of &quot;x&quot; &lt;y&gt;"' in out
    for gone in ("style>", "title", "CommandLine", "script", "onclick", "example.invalid"):
        assert gone not in out
    assert "foreignObject" not in out and "javascript" not in out and "<a" not in out
    assert 'id="t7-hd"' in out and 'xlink:href="#t7-hd"' in out and 'href="#hd"' not in out
    assert 'fill="currentColor"' in out and 'stroke="currentColor"' in out  # the CSS rules
    assert 'style="font:20.00px Times"' in out and "a &lt;b&gt; &amp; c</text>" in out
    with pytest.raises(render.RenderError):
        page.inline_svg("<html></html>", "t1")
    with pytest.raises(ValueError):
        page.inline_svg(svg, '1" onload="x')


@needs_abcm2ps
def test_abcm2ps_typesets_one_svg_per_tune(data_dir):
    kesh = parse_tunebook((data_dir / "three.abc").read_text(), "x").tunes[0].text
    svg = render.abc_to_svg(kesh)
    assert svg.lstrip().startswith("<?xml") and "The Kesh" in svg and "<svg" in svg
    score = page.score_svg(kesh, "k1")
    assert score.count("<svg") == 1 and 'id="k1-' in score and "The Kesh" in score
    with pytest.raises(render.RenderError, match="abcm2ps typeset no score"):
        render.abc_to_svg("no tune here\n")


def test_page_without_abcm2ps_says_so_once(tmp_path, data_dir, monkeypatch, capsys):
    which = shutil.which
    monkeypatch.setattr(
        render.shutil, "which", lambda name: None if name == "abcm2ps" else which(name)
    )
    monkeypatch.setattr(render, "_warned", set())
    paths = _write_tunes(data_dir, tmp_path)
    index = page.write_page(paths, tmp_path, command="musicseq generate m --html")
    text = index.read_text(encoding="utf-8")
    assert text.count("Score could not be typeset: abcm2ps not found") == 4
    assert "<svg" not in text and not list(tmp_path.glob("*.svg"))
    assert text.count("No audio") == 4 and "The Kesh" in text and "key E dorian" in text
    assert EVIL_TITLE not in text and "&lt;img src=x" in text
    assert capsys.readouterr().err.count("abcm2ps not found") == 1
    html = api.Tune(EVIL_TUNE).score_html()
    assert "could not be typeset" in html


@needs_abcm2ps
def test_notebook_tune_shows_score_above_audio(data_dir):
    tune = api.load_tunes(data_dir / "three.abc")[2]
    shown = tune._repr_html_()
    assert shown.count("<svg") == 1 and "<audio controls" in shown
    assert shown.index("<svg") < shown.index("<audio") < shown.index("<pre>")


@pytest.mark.skipif(not HAVE_ABCM2PS, reason="abcm2ps not installed (make setup installs it)")
@pytest.mark.skipif(not CHROMIUM, reason="chromium not installed (make setup installs it as root)")
def test_page_in_a_real_browser(tmp_path, data_dir):
    out = tmp_path / "tunes"
    out.mkdir()
    paths = _write_tunes(data_dir, out)
    for path in paths:  # audio for every tune, as `generate --render` writes it
        assert render.render_file(path, out).error is None
    index = page.write_page(paths, out, command=f"musicseq generate m --title '{EVIL_TITLE}'")
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            index.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = _Articles()
    dom.feed(result.stdout)
    assert len(dom.articles) == 4, result.stdout[:2000]
    for article in dom.articles:
        assert article.get("svg") == 1  # one score per tune
        assert article.get("audio") == 1 and (out / article["#src"]).is_file()
    titles = ["The Kesh", "Drowsy Maggie", "Si Bheag Si Mhor", EVIL_TITLE]
    for article, title in zip(dom.articles, titles):
        assert title in article["#text"]  # heading and score title, as text
    assert "data-pwned" not in dom.body  # the hostile title stayed text
    assert "<script" not in index.read_text(encoding="utf-8")  # offline: nothing to run or fetch
    assert "http://" not in index.read_text(encoding="utf-8").replace(page.SVG_NS, "").replace(
        page.XLINK_NS, ""
    )


@needs_abcm2ps
def test_generate_html_flag(tiny_model_dir, tmp_path, capsys):
    from musicseq.cli import main

    out = tmp_path / "gen"
    args = ["generate", str(tiny_model_dir), "--num", "2", "--max-len", "150", "--seed", "2"]
    assert main([*args, "--constrain", "--html", "--out", str(out)]) == 0
    assert f"wrote {out / 'index.html'}" in capsys.readouterr().out
    text = (out / "index.html").read_text(encoding="utf-8")
    assert text.count("<article") == 2 and text.count("<svg") == 2
    assert "musicseq generate" in text and sorted(p.name for p in out.glob("*.svg")) == [
        "tune_001.svg",
        "tune_002.svg",
    ]
