"""The notebook-friendly Python API: :class:`Tune`, :class:`TuneSet`, load and generate.

    import musicseq.api as ms
    model = ms.load_model("folk-transformer")     # a shipped model by name, or a directory
    tunes = ms.generate(model, num=4, temperature=0.8, seed=1, constrain=True, tempo=112)
    tunes            # a table in a notebook
    tunes[0]         # title, header, score (abcm2ps), an audio player and the ABC text
    tunes[0].to_wav("tune.wav"); tunes[0].piano_roll()

Rendering is lazy and happens in a scratch directory unless a path is given. No notebook
package is required: the HTML is plain (a WAV embedded as a data URI).
"""

from __future__ import annotations

import base64
import html
import tempfile
import warnings
from pathlib import Path

from musicseq.errors import MusicseqWarning, UserError
from musicseq.notation import ABCError, parse_tune, parse_tunebook
from musicseq.notation.checker import CheckReport, check_text
from musicseq.notation.tunebook import stamp_tune, tempo_beat

DISPLAY_SAMPLE_RATE = 16000  # inline audio: mono 16 kHz keeps notebooks small


class Tune:
    """One tune: its ABC text, the parsed header and body (if it parses) and a check report."""

    def __init__(self, text: str, source: str = "", number: int | None = None):
        self.text = text if text.endswith("\n") else text + "\n"
        self.source = source
        self.number = number
        try:
            self.parsed = parse_tune(self.text, source or "<tune>")
            self.error: str | None = None
        except ABCError as exc:
            self.parsed, self.error = None, str(exc)

    @property
    def title(self) -> str:
        return self.parsed.title if self.parsed else ""

    @property
    def meter(self) -> str:
        return (self.parsed.get("M") or "") if self.parsed else ""

    @property
    def key(self) -> str:
        return self.parsed.key if self.parsed else ""

    def check(self) -> CheckReport:
        return check_text(self.text)

    def form(self):
        """Its form: parts and bars, label (AABB…), tonic cadence, bar repetition, pitch use
        (a :class:`musicseq.notation.form.TuneForm`)."""
        from musicseq.notation.form import analyze

        return analyze(self.text)

    def __repr__(self) -> str:
        return f"Tune({self.title or '(untitled)'!r}, M:{self.meter or '?'}, K:{self.key or '?'})"

    # --- rendering ------------------------------------------------------------------------

    def to_midi(self, path: str | Path) -> Path:
        """Write the tune as MIDI (abc2midi, else music21); raises ``RenderError``."""
        from musicseq.render import abc_to_midi

        path = Path(path)
        with tempfile.TemporaryDirectory(prefix="musicseq-tune-") as tmp:
            abc = Path(tmp) / "tune.abc"
            abc.write_text(self.text, encoding="ascii", errors="replace")
            abc_to_midi(abc, path)
        return path

    def to_audio(
        self, path: str | Path, sample_rate: int | None = None, mono: bool = False
    ) -> Path:
        """Write the tune as audio in the format of the suffix (``.wav``, ``.flac``, ``.ogg``,
        ``.mp3``; fluidsynth, else pretty_midi); raises ``RenderError``."""
        from musicseq.render import SAMPLE_RATE, midi_to_audio

        path = Path(path)
        with tempfile.TemporaryDirectory(prefix="musicseq-tune-") as tmp:
            midi = self.to_midi(Path(tmp) / "tune.mid")
            midi_to_audio(midi, path, sample_rate=sample_rate or SAMPLE_RATE, mono=mono)
        return path

    def to_wav(self, path: str | Path, sample_rate: int | None = None, mono: bool = False) -> Path:
        """Write the tune as a WAV (:meth:`to_audio`)."""
        return self.to_audio(Path(path).with_suffix(".wav"), sample_rate=sample_rate, mono=mono)

    def piano_roll(self):
        """A matplotlib figure of the tune's piano roll."""
        from musicseq.render import piano_roll_figure

        with tempfile.TemporaryDirectory(prefix="musicseq-tune-") as tmp:
            midi = self.to_midi(Path(tmp) / "tune.mid")
            return piano_roll_figure([midi], [self.title or "tune"])

    def audio_html(self) -> str:
        """An ``<audio>`` element with the tune embedded, or "" if it cannot be rendered."""
        from musicseq.render import RenderError

        try:
            with tempfile.TemporaryDirectory(prefix="musicseq-tune-") as tmp:
                wav = self.to_wav(
                    Path(tmp) / "tune.wav", sample_rate=DISPLAY_SAMPLE_RATE, mono=True
                )
                data = base64.b64encode(wav.read_bytes()).decode("ascii")
        except (RenderError, OSError):
            return ""
        return f'<audio controls src="data:audio/wav;base64,{data}"></audio>'

    def score_html(self) -> str:
        """The score typeset by abcm2ps as inline SVG, or a line saying why there is none."""
        from musicseq.page import score_html

        return score_html(self.text, label=f"Score of {self.title or 'the tune'}")

    def _repr_html_(self) -> str:
        title = html.escape(self.title or "(untitled)")
        header = ""
        if self.parsed:
            header = " · ".join(
                html.escape(f"{k}:{v}") for k, v in self.parsed.headers if k in "MLKQR"
            )
        audio = self.audio_html() or "<em>(no audio: the tune could not be rendered)</em>"
        note = f"<p><em>{html.escape(self.error)}</em></p>" if self.error else ""
        return (
            f"<div><h4>{title}</h4><p>{header}</p>{note}{self.score_html()}{audio}"
            f"<pre>{html.escape(self.text)}</pre></div>"
        )


class TuneSet(list):
    """A list of :class:`Tune` that shows as a table and renders all at once."""

    def _repr_html_(self) -> str:
        rows = []
        for i, tune in enumerate(self, start=1):
            form = tune.form()
            shape = (
                f"{form.label} ({'+'.join(map(str, form.bars_per_section))})" if form.valid else "-"
            )
            cells = [
                str(i),
                tune.title,
                tune.meter,
                tune.key,
                str(len(tune.check().bars)),
                shape,
                "yes" if form.ends_on_tonic else "no",
                "ok" if tune.check().ok else "issues",
            ]
            rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        header = [
            "#",
            "title",
            "meter",
            "key",
            "bars",
            "form (bars per part)",
            "ends on tonic",
            "check",
        ]
        head = "".join(f"<th>{h}</th>" for h in header)
        return f"<table><tr>{head}</tr>{''.join(rows)}</table>"

    def form_summary(self, reference: list[str] | None = None):
        """Population form figures of these tunes; with ``reference`` (ABC texts, e.g. the
        corpus's test split) the rows ``(figure, these, reference, distance)`` instead."""
        from musicseq.notation.form import compare, summarize

        mine = summarize(t.text for t in self)
        return compare(mine, summarize(reference)) if reference is not None else mine

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``tune_NNN.abc`` for every tune into ``out_dir`` (named by number, never by
        generated text); returns the paths."""
        from musicseq import fileio

        out = Path(out_dir)
        paths = []
        for index, tune in enumerate(self, start=1):
            path = out / f"tune_{index:03d}.abc"
            fileio.write_text(path, tune.text)
            paths.append(path)
        return paths

    def to_abc(self) -> str:
        """The tunes as one tunebook: each tune's text, a blank line between tunes."""
        return "\n".join(tune.text for tune in self)

    def render_all(self, out_dir: str | Path, wav: bool = True, **audio) -> list:
        """Write ``tune_NNN.abc``/``.mid`` and audio for every tune into ``out_dir``;
        ``audio`` are :class:`musicseq.config.RenderConfig` fields (``audio="ogg"``,
        ``sample_rate=22050``, ``mono=True``; default a stereo 44.1 kHz WAV)."""
        from musicseq.config import RenderConfig
        from musicseq.render import render_file

        config = RenderConfig(**audio)
        try:
            config.validate()
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        return [render_file(path, out_dir, wav=wav, config=config) for path in self.save(out_dir)]


def load_model(name_or_path: str | Path):
    """A trained model, by name (``"folk-transformer"``: see :func:`musicseq.modeldir.resolve`
    and ``musicseq models``) or directory: a :class:`musicseq.modeldir.ModelDir` (``.model``,
    ``.config``, ``.vocab``, ``.path``, ``.name``)."""
    from musicseq.modeldir import ModelDir

    return ModelDir.load(name_or_path)


def models() -> list:
    """The models :func:`load_model` finds by name (:func:`musicseq.modeldir.list_models`)."""
    from musicseq.modeldir import list_models

    return list_models()


TEMPO_RANGE = (20, 400)  # beats per minute
CONSTRAINED_ONLY = ("form", "bars", "cadence", "repeat_bias", "grammar_xla")  # SampleConfig fields


def check_header(header: dict[str, str], tempo: int | None = None) -> None:
    """Raise :class:`UserError` for a forced meter, key or unit length that ABC would not
    accept, or a tempo outside :data:`TEMPO_RANGE`; the CLI calls it before loading a model."""
    from musicseq.notation import parse_key, parse_length, parse_meter

    try:
        for name, parse in (("M", parse_meter), ("K", parse_key), ("L", parse_length)):
            if header.get(name):
                parse(header[name])
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if tempo is not None:
        low, high = TEMPO_RANGE
        if isinstance(tempo, bool) or not isinstance(tempo, int) or not low <= tempo <= high:
            raise UserError(f"tempo must be {low} to {high} beats per minute, got {tempo!r}")
        if header.get("Q"):
            raise UserError("give a tempo or a Q: value, not both")


def generate(
    loaded,
    num: int = 4,
    constrain: bool = False,
    fixed: dict | None = None,
    meter: str | None = None,
    key: str | None = None,
    title: str | None = None,
    length: str | None = None,
    tempo: int | None = None,
    progress=None,
    **options,
) -> TuneSet:
    """Generate tunes from a loaded model; ``options`` are :class:`SampleConfig` fields.

    ``meter``, ``key``, ``title`` and ``length`` (or ``fixed``, a dict of ``M``/``K``/``T``/
    ``L``) set the tunes' header: with ``constrain`` the grammar writes exactly those values;
    without it they become the prime (and cannot be combined with ``prime``). ``tempo``
    (beats per minute) writes ``Q:`` with the meter's beat (``Q:3/8=116`` in 6/8), as does
    ``fixed["Q"]`` verbatim, into the finished tunes. ``progress`` (e.g.
    :class:`musicseq.progress.Progress`) is told how far the decoding loop is.

    Options not given take the model's own sampling settings when it has them (its
    ``musicseq.json`` ``"sampling"``, e.g. ``top_p=0.9`` for free sampling of the shipped
    Transformer), else :class:`SampleConfig`'s defaults.

    Tune ``n`` comes back as ``X:n`` with ``%`` comment lines after it saying how it was
    made (musicseq version, model, seed, temperature, top-k, top-p, and the form plan of
    constrained decoding) — the same text the ``musicseq generate`` command writes.
    """
    from musicseq.config import SampleConfig
    from musicseq.notation import make_header
    from musicseq.sampling import generate as sample
    from musicseq.sampling import plan_forms

    header = {"M": meter, "K": key, "T": title, "L": length, **(fixed or {})}
    header = {k: v for k, v in header.items() if v}
    check_header(header, tempo)
    tempo_field = header.pop("Q", None)  # written after generation: the model never sees it
    shaping = [name for name in CONSTRAINED_ONLY if name in options]
    if shaping and not constrain:
        warnings.warn(
            f"ignored without constrain=True: {', '.join(shaping)} (they shape constrained "
            "generation only)",
            MusicseqWarning,
            stacklevel=2,
        )
    if header and not constrain:
        if "prime" in options:
            raise UserError("a prime cannot be combined with meter, key, title or length")
        try:
            options["prime"] = make_header(
                header.get("M", "4/4"), header.get("K", "D"), header.get("T", ""), header.get("L")
            )
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    # The model's own sampling settings (musicseq.json "sampling") under the caller's.
    if hasattr(loaded, "sampling_settings"):
        settings = loaded.sampling_settings(constrain, options)
    else:
        settings = options
    config = SampleConfig(num=num, **settings)
    try:
        config.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    texts = sample(
        loaded.model,
        loaded.config,
        loaded.vocab,
        config,
        constrain=constrain,
        fixed=header if constrain else None,
        progress=progress,
    )
    # The plans the grammar followed (seeded, so drawn again the same).
    plans = plan_forms(config, header) if constrain else [None] * len(texts)
    name = getattr(loaded, "name", None) or Path(loaded.path).name
    tunes = TuneSet()
    for number, (text, plan) in enumerate(zip(texts, plans), start=1):
        fields = {}
        if tempo is not None:
            fields["Q"] = f"{tempo_beat(_header_value(text, 'M'))}={tempo}"
        elif tempo_field:
            fields["Q"] = tempo_field
        notes = provenance(name, config, number, plan)
        stamped = stamp_tune(text, number, notes, fields)
        tunes.append(Tune(stamped, source=str(loaded.path), number=number))
    return tunes


def provenance(model_name: str, config, number: int, plan: dict | None = None) -> list[str]:
    """The comment lines that say how tune ``number`` was made: the program, the model and
    the sampling settings, and for constrained decoding the form it followed."""
    from musicseq import __version__

    lines = [
        f"musicseq {__version__}, model {model_name}, tune {number} of {config.num}",
        f"seed {config.seed}, temperature {config.temperature:g}, top-k {config.top_k}, "
        f"top-p {config.top_p:g}, max-len {config.max_len}",
    ]
    if plan is not None:
        form = plan["form"] or "free"
        drawn = " (drawn from the corpus's forms)" if config.form == "auto" else ""
        bars = f", {plan['bars']} bars a part" if plan["form"] else ""
        cadence = f"cadence {plan['cadence'] or 'none'}"
        bias = f"repeat bias {config.repeat_bias:g}"
        lines.append(f"constrained: form {form}{drawn}{bars}, {cadence}, {bias}")
    return lines


def _header_value(text: str, name: str) -> str | None:
    """The value of header field ``name`` (before ``K:``), or None."""
    for line in text.split("\n"):
        if line.startswith(f"{name}:"):
            return line[2:].strip()
        if line.startswith("K:"):
            return None
    return None


def load_tunes(path: str | Path) -> TuneSet:
    """Every tune of an ``.abc`` file (bad ones are skipped; see ``parse_tunebook``)."""
    from musicseq.notation import decode_bytes

    result = parse_tunebook(decode_bytes(Path(path).read_bytes()), str(path))
    return TuneSet(
        Tune(t.text, source=str(path), number=i) for i, t in enumerate(result.tunes, start=1)
    )
