"""Evaluation: held-out loss over whole tunes (and, later, validity and copy metrics).

Loss is measured per tune over ``EOT tune EOT`` by the one scorer,
:func:`musicseq.sampling.score_texts`: every character of the tune and the final end-of-tune
token is predicted from everything before it in the tune (recurrent models see the whole
tune at once; the Transformer slides a window of its context length by half of it, so every
scored token has at least ``context/2`` characters of history).
"""

from __future__ import annotations

import math

import numpy as np

from musicseq.vocab import Vocab


def tune_nats(
    model, model_config, vocab: Vocab, texts: list[str], batch_size: int = 16
) -> np.ndarray:
    """Total nats of each tune (``EOT`` + text + ``EOT``): :func:`musicseq.sampling.score_texts`,
    the one scorer."""
    from musicseq.sampling import score_texts

    return score_texts(model, model_config, vocab, texts, batch_size)


def held_out_loss(
    model, model_config, vocab: Vocab, texts: list[str], batch_size: int = 16
) -> dict:
    """Nats and bits per character over whole tunes, plus the counts behind them."""
    if not texts:
        raise ValueError("no tunes to evaluate")
    from musicseq.notation.form import analyze

    nats = tune_nats(model, model_config, vocab, texts, batch_size)
    chars = sum(len(t) + 1 for t in texts)  # each tune's characters plus its end-of-tune token
    per_char = float(nats.sum() / chars)
    # Bits per note: comparable across tokenizers (a tune's whole cost over its sounding notes).
    notes = sum(analyze(t).notes for t in texts)
    return {
        "nats_per_char": per_char,
        "bits_per_char": per_char / math.log(2),
        "bits_per_note": float(nats.sum() / math.log(2) / notes) if notes else None,
        "bits_per_tune": float(nats.sum() / math.log(2) / len(texts)),
        "notes": notes,
        "tunes": len(texts),
        "characters": chars,
        "unknown_characters": sum(sum(1 for c in t if c not in vocab) for t in texts),
    }


# --- generated tunes: validity, distributions, copying ----------------------------------

COPY_SPAN = 32  # a copied passage: at least this many consecutive pitch letters


def pitch_letters(text: str) -> str:
    """The melody's pitch letters (A-G, a-g) of a tune body, in order.

    Header lines, chord symbols/annotations ``"..."``, decorations ``!...!``, inline fields
    ``[K:...]`` and grace notes ``{...}`` are removed first; this is the string on which
    copying is measured.
    """
    import re

    body = "\n".join(line for line in text.split("\n") if not re.match(r"^[A-Za-z]:", line))
    body = re.sub(r'"[^"\n]*"|![^!\n]*!|\[[A-Za-z]:[^\]\n]*\]|\{[^}\n]*\}', "", body)
    return "".join(c for c in body if c in "ABCDEFGabcdefg")


class CopyIndex:
    """Hashes of every ``span``-letter passage of the training tunes' pitch strings."""

    def __init__(self, texts: list[str], span: int = COPY_SPAN):
        self.span = span
        self.hashes: set[int] = set()
        for text in texts:
            letters = pitch_letters(text)
            for i in range(len(letters) - span + 1):
                self.hashes.add(hash(letters[i : i + span]))

    def copies(self, text: str) -> bool:
        letters = pitch_letters(text)
        return any(
            hash(letters[i : i + self.span]) in self.hashes
            for i in range(len(letters) - self.span + 1)
        )


def _distribution(values: list[str]) -> dict[str, float]:
    from collections import Counter

    counts = Counter(values)
    total = sum(counts.values()) or 1
    return {k: v / total for k, v in counts.most_common()}


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """Total variation distance between two distributions: 0 equal, 1 disjoint."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def tune_metrics(
    tunes: list[str], training_texts: list[str], copy_index: CopyIndex | None = None
) -> dict:
    """Validity, length, meter/key distributions and copy rate of generated ABC ``tunes``.

    Each tune is converted to MIDI one at a time in a scratch directory (bounded memory).
    """
    import tempfile
    from pathlib import Path

    from musicseq.notation.checker import check_text, tune_key_and_meter
    from musicseq.render import RenderError, abc_to_midi, midi_info

    copy_index = copy_index or CopyIndex(training_texts)
    midi_ok = headers_ok = all_exact = copied = 0
    checked = exact = bars = 0
    keys, meters, backends = [], [], set()
    with tempfile.TemporaryDirectory(prefix="musicseq-eval-") as tmp:
        for index, text in enumerate(tunes):
            report = check_text(text)
            headers_ok += report.headers_ok
            all_exact += report.all_bars_exact
            checked += report.bars_checked
            exact += report.bars_exact
            bars += len(report.bars)
            key, meter = tune_key_and_meter(text)
            keys.append(key or "(none)")
            meters.append(meter or "(none)")
            copied += copy_index.copies(text)
            abc = Path(tmp) / f"t{index}.abc"
            abc.write_text(text, encoding="ascii", errors="replace")
            try:
                backends.add(abc_to_midi(abc, Path(tmp) / f"t{index}.mid"))
                midi_ok += midi_info(Path(tmp) / f"t{index}.mid").notes > 0
            except RenderError:
                pass
    from musicseq.notation import form

    train_keys = [tune_key_and_meter(t)[0] or "(none)" for t in training_texts]
    train_meters = [tune_key_and_meter(t)[1] or "(none)" for t in training_texts]
    n = max(len(tunes), 1)
    key_dist, meter_dist = _distribution(keys), _distribution(meters)
    train_key_dist, train_meter_dist = _distribution(train_keys), _distribution(train_meters)
    return {
        "tunes": len(tunes),
        "midi_with_notes_pct": 100.0 * midi_ok / n,
        "midi_backend": sorted(backends),
        "valid_headers_pct": 100.0 * headers_ok / n,
        "mid_section_bars_exact_pct": 100.0 * exact / checked if checked else 0.0,
        "tunes_all_bars_exact_pct": 100.0 * all_exact / n,
        "mean_bars": bars / n,
        "copy_rate_pct": 100.0 * copied / n,
        "copy_definition": f"body shares >= {COPY_SPAN} consecutive pitch letters (A-G, a-g) with a training tune",
        "meters": meter_dist,
        "keys": key_dist,
        "training_meters": dict(list(train_meter_dist.items())[:15]),
        "training_keys": dict(list(train_key_dist.items())[:15]),
        "meter_distance_tv": total_variation(meter_dist, train_meter_dist),
        "key_distance_tv": total_variation(key_dist, train_key_dist),
        "form": form.summarize(tunes),
    }


def evaluate_model(
    model_dir,
    out_dir,
    data=None,
    num: int = 100,
    seed: int = 0,
    temperature: float | None = None,
    constrain: bool = False,
    max_len: int = 1200,
    top_k: int | None = None,
    top_p: float | None = None,
    log=print,
    progress: bool = False,
) -> dict:
    """``musicseq evaluate``: held-out loss, generated-tune metrics, plots; writes the report.

    With ``constrain`` the tunes are generated both ways and both sets of figures reported.
    ``temperature``, ``top_k``, ``top_p``: None takes the model's own setting (its
    ``musicseq.json`` "sampling"), else SampleConfig's default.
    ``progress``: report the generation loops' progress on stderr.
    """
    import time
    from pathlib import Path

    from musicseq import fileio
    from musicseq.config import DEFAULT_CORPUS, SampleConfig
    from musicseq.corpus import ensure_default, evaluation_set, is_corpus_dir, load_split
    from musicseq.errors import UserError
    from musicseq.modeldir import ModelDir
    from musicseq.notation import form
    from musicseq.progress import Progress
    from musicseq.sampling import generate

    out = Path(out_dir)
    loaded = ModelDir.load(model_dir)
    model, model_config, vocab = loaded.model, loaded.config, loaded.vocab
    if constrain and vocab.kind != "chars":
        raise UserError(
            f"{model_dir} reads {vocab.kind!r} tokens and constrained decoding writes "
            "characters: evaluate it without --constrain"
        )
    given = data is not None  # a file the user passes is a test set of its own, all of it
    data = data or loaded.data or DEFAULT_CORPUS
    if not given and Path(data) == Path(DEFAULT_CORPUS) and not is_corpus_dir(Path(data)):
        # The default corpus (the shipped models' data) is built where it is missing, as
        # `musicseq train` does: the same tunes and splits as `musicseq data` writes.
        log(f"notice: no corpus at {data}; building the default corpus there")
        ensure_default(data)
    if not Path(data).exists():
        raise UserError(f"evaluation data not found: {data}")
    test_texts, described = evaluation_set(data, whole=given)
    # Copying and the meter/key distributions are measured against what the model learned.
    trained_on = data
    if given and not is_corpus_dir(Path(data)) and loaded.data and Path(loaded.data).exists():
        trained_on = loaded.data
    train_texts = load_split(trained_on, "train")
    if not test_texts:
        raise UserError(f"no test tunes in {data}")
    report: dict = {"model_dir": str(model_dir), "data": str(data), "kind": model_config.kind}
    report["test_set"] = described
    report["training_reference"] = f"the training split of {trained_on}"
    started = time.perf_counter()
    report["held_out"] = held_out_loss(model, model_config, vocab, test_texts)
    report["held_out"]["seconds"] = time.perf_counter() - started
    held = report["held_out"]
    log(
        f"held-out: {held['nats_per_char']:.4f} nats/char, {held['bits_per_char']:.4f} bits/char, "
        f"{held['bits_per_note']:.3f} bits/note on {len(test_texts)} test tunes"
    )
    reference = form.summarize(test_texts)
    report["reference_form"] = reference
    copy_index = CopyIndex(train_texts)
    given = {"num": num, "max_len": max_len, "seed": seed}
    for field, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p)):
        if value is not None:
            given[field] = value
    runs = ["unconstrained", "constrained"] if constrain else ["unconstrained"]
    samples = {}
    for name in runs:
        started = time.perf_counter()
        reporter = Progress(f"{name} tunes", unit=vocab.unit) if progress else None
        # The model's own sampling settings (musicseq.json "sampling"), under the caller's.
        sample = SampleConfig(**loaded.sampling_settings(name == "constrained", given))
        tunes = generate(
            model, model_config, vocab, sample, constrain=name == "constrained", progress=reporter
        )
        if reporter:
            reporter.finish()
        seconds = time.perf_counter() - started
        metrics = tune_metrics(tunes, train_texts, copy_index)
        metrics["generation_seconds"] = seconds
        metrics["sampling"] = {
            field: getattr(sample, field)
            for field in ("temperature", "top_k", "top_p", "seed")
            + (("repeat_bias",) if name == "constrained" else ())
        }
        metrics["characters_per_second"] = sum(len(t) for t in tunes) / max(seconds, 1e-9)
        metrics["form_comparison"] = form.compare(metrics["form"], reference)
        report[name] = metrics
        samples[name] = tunes
        log(
            f"{name}: {metrics['midi_with_notes_pct']:.1f}% to MIDI with notes, "
            f"{metrics['tunes_all_bars_exact_pct']:.1f}% tunes with every mid-section bar exact, "
            f"copy rate {metrics['copy_rate_pct']:.1f}%, {seconds:.1f} s"
        )
        log(form.format_comparison(metrics["form_comparison"]))
    out.mkdir(parents=True, exist_ok=True)
    for name, tunes in samples.items():
        fileio.write_text(
            out / f"samples_{name}.abc", "\n".join(t.rstrip("\n") + "\n" for t in tunes)
        )
    _plots(out, samples, report, loaded.history())
    fileio.write_json(out / "report.json", report)
    fileio.write_text(out / "report.md", _markdown(report))
    log(f"wrote {out / 'report.json'}, {out / 'report.md'} and plots")
    return report


def _plots(out, samples, report, history: dict) -> None:
    import tempfile
    from pathlib import Path

    from matplotlib.figure import Figure

    from musicseq.render import RenderError, abc_to_midi, piano_roll_figure
    from musicseq.visualize import save_figure, save_history_plot

    if history:
        save_history_plot(history, out / "loss.png")
    name = "constrained" if "constrained" in samples else "unconstrained"
    with tempfile.TemporaryDirectory() as tmp:
        midis, titles = [], []
        for index, text in enumerate(samples[name]):
            path = Path(tmp) / f"t{index}.abc"
            path.write_text(text, encoding="ascii", errors="replace")
            try:
                abc_to_midi(path, Path(tmp) / f"t{index}.mid")
            except RenderError:
                continue
            midis.append(Path(tmp) / f"t{index}.mid")
            titles.append(f"{name} tune {index + 1}")
            if len(midis) == 4:
                break
        if midis:
            save_figure(piano_roll_figure(midis, titles), out / "piano_roll.png", dpi=90)
    metrics = report[name]
    fig = Figure(figsize=(12, 4))
    axes = fig.subplots(1, 2)
    for ax, field, train_field in (
        (axes[0], "meters", "training_meters"),
        (axes[1], "keys", "training_keys"),
    ):
        labels = list(metrics[train_field])[:10]
        x = range(len(labels))
        ax.bar(
            [i - 0.2 for i in x],
            [metrics[train_field].get(k, 0) for k in labels],
            0.4,
            label="training",
        )
        ax.bar(
            [i + 0.2 for i in x],
            [metrics[field].get(k, 0) for k in labels],
            0.4,
            label=f"generated ({name})",
        )
        ax.set_xticks(list(x), labels, rotation=45, fontsize=8)
        ax.set_title(f"{field}: total variation {metrics[field[:-1] + '_distance_tv']:.2f}")
        ax.legend()
    save_figure(fig, out / "distributions.png", dpi=90)
    save_figure(form_figure(report), out / "forms.png", dpi=90)


def form_figure(report: dict):
    """The form labels of the corpus's test split beside each generated set's, as bars."""
    from matplotlib.figure import Figure

    reference = report["reference_form"]["forms"]
    names = [n for n in ("unconstrained", "constrained") if n in report]
    labels = [k for k in reference if k != "other"][:8]
    for name in names:  # a generated set's own commonest forms, if the corpus lacks them
        labels += [k for k in report[name]["form"]["forms"] if k not in labels and k != "other"][:2]
    labels.append("other")
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    width = 0.8 / (1 + len(names))
    sets = [("corpus test split", reference)] + [(n, report[n]["form"]["forms"]) for n in names]
    for index, (title, shares) in enumerate(sets):
        other = 1 - sum(v for k, v in shares.items() if k in labels and k != "other")
        values = [shares.get(k, 0.0) if k != "other" else other for k in labels]
        ax.bar(
            [i + (index - len(names) / 2) * width for i in range(len(labels))],
            values,
            width,
            label=title,
        )
    ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
    ax.set_ylabel("share of tunes")
    ax.set_title("form labels (parts in played order; a repeated part appears twice)")
    ax.legend()
    return fig


def _markdown(report: dict) -> str:
    held = report["held_out"]
    lines = [
        f"# Evaluation of `{report['model_dir']}` ({report['kind']})",
        "",
        f"Held-out loss on {report['test_set']} ({held['tunes']} whole tunes, "
        f"{held['characters']:,} characters): **{held['nats_per_char']:.4f} nats/char** "
        f"({held['bits_per_char']:.4f} bits/char; {held['bits_per_note']:.3f} bits per note, "
        f"{held['bits_per_tune']:.0f} bits per tune).",
        "",
    ]
    names = [n for n in ("unconstrained", "constrained") if n in report]
    rows = [
        ("tunes generated", "tunes", "{:.0f}"),
        ("convert to MIDI with notes (%)", "midi_with_notes_pct", "{:.1f}"),
        ("valid headers (%)", "valid_headers_pct", "{:.1f}"),
        ("mid-section bars exact (%)", "mid_section_bars_exact_pct", "{:.1f}"),
        ("tunes with every mid-section bar exact (%)", "tunes_all_bars_exact_pct", "{:.1f}"),
        ("mean length (bars)", "mean_bars", "{:.1f}"),
        ("copy rate (%)", "copy_rate_pct", "{:.1f}"),
        ("meter distance to training (TV)", "meter_distance_tv", "{:.3f}"),
        ("key distance to training (TV)", "key_distance_tv", "{:.3f}"),
        ("generation time (s)", "generation_seconds", "{:.1f}"),
        ("characters/s", "characters_per_second", "{:.0f}"),
    ]
    lines += ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt.format(report[n][key]) for n in names) + " |")
    for name in names:
        if "sampling" in report[name]:  # reports written before it was recorded have none
            settings = ", ".join(f"{k} {v:g}" for k, v in report[name]["sampling"].items())
            lines.append(f"\nSampling ({name}): {settings}.")
    lines += ["", f"Copy rate: {report[names[0]]['copy_definition']}.", ""]
    lines += _form_markdown(report, names)
    lines += ["", "Plots: `loss.png`, `piano_roll.png`, `distributions.png`, `forms.png`."]
    return "\n".join(lines) + "\n"


def _form_markdown(report: dict, names: list[str]) -> list[str]:
    """Every form figure beside the corpus test split's, with the distance."""
    from musicseq.notation.form import compare, show_figure

    reference = report["reference_form"]
    lines = [
        "## Form, beside the corpus (the test split: tunes written by people)",
        "",
        "Distance: |generated − corpus| for shares, 1 − overlap for the form and pitch-class "
        "distributions. Definitions: `musicseq/notation/form.py`.",
        "",
        "| figure | corpus | " + " | ".join(f"{n} | distance" for n in names) + " |",
        "|---|---:|" + "---:|---:|" * len(names),
    ]
    rows = {n: compare(report[n]["form"], reference) for n in names}
    for i, (figure, _, ref, _) in enumerate(rows[names[0]]):
        cells = [show_figure(figure, ref)]
        for n in names:
            _, value, _, distance = rows[n][i]
            cells += [show_figure(figure, value), "-" if distance is None else f"{distance:.3f}"]
        lines.append(f"| {figure} | " + " | ".join(cells) + " |")
    lines += ["", "![form labels](forms.png)"]
    return lines
