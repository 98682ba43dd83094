"""What the models learned: interpretable hidden units and Transformer attention.

``inspect_model`` (the ``musicseq inspect`` command) runs a tune through a model one
character at a time. For recurrent kinds it records every hidden unit of the top layer,
correlates each unit with features of ABC structure, ranks the units, and draws the tune's
text coloured by the best units' activations, in the style of Karpathy's char-RNN
visualisations. For the Transformer it draws attention maps per layer and head and scores
which heads look at the previous bar line or at the same position one bar back.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

FEATURES = ("bar_position", "in_quotes", "in_repeat", "to_line_end")


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    """Lay out and write a :class:`matplotlib.figure.Figure` atomically.

    musicseq draws on ``Figure`` objects, never through pyplot, so it never changes the
    caller's matplotlib backend (a notebook keeps its inline plots).
    """
    from musicseq import fileio

    fig.tight_layout()
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)


def history_figure(history: dict):
    """Training and validation loss per epoch."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    epochs = range(1, len(history.get("loss", [])) + 1)
    ax.plot(epochs, history.get("loss", []), label="train")
    if history.get("val_loss"):
        ax.plot(epochs, history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats/char)")
    ax.set_title("musicseq training loss")
    ax.legend()
    return fig


def save_history_plot(history: dict, path: Path) -> None:
    save_figure(history_figure(history), Path(path))


def char_features(text: str) -> dict[str, np.ndarray]:
    """Per-character structure of a tune's text (length ``len(text)``).

    - ``bar_position``: fraction of the meter elapsed in the current bar (0 … 1);
    - ``in_quotes``: 1 inside a chord symbol or annotation ``"..."``;
    - ``in_repeat``: 1 between ``|:`` and ``:|``;
    - ``to_line_end``: characters left until the end of the line.
    """
    from musicseq.notation.checker import bar_positions

    n = len(text)
    quotes, repeat, to_end = np.zeros(n), np.zeros(n), np.zeros(n)
    inside_quote = inside_repeat = False
    for i, ch in enumerate(text):
        if ch == '"':
            inside_quote = not inside_quote
        if text.startswith("|:", i) or (ch == ":" and text.startswith("::", i)):
            inside_repeat = True
        if text.startswith(":|", i):
            inside_repeat = False
        quotes[i] = inside_quote or ch == '"'
        repeat[i] = inside_repeat
    line_end = n
    for i in range(n - 1, -1, -1):
        if text[i] == "\n":
            line_end = i
        to_end[i] = line_end - i
    return {
        "bar_position": np.asarray(bar_positions(text), dtype=float),
        "in_quotes": quotes,
        "in_repeat": repeat,
        "to_line_end": to_end,
    }


def hidden_states(model, model_config, vocab, text: str) -> np.ndarray:
    """Top recurrent layer's hidden state after each character of ``text``: (len(text), units)."""
    import tensorflow as tf

    from musicseq.models import step_function, top_hidden
    from musicseq.vocab import EOT

    if model_config.kind == "transformer":
        raise ValueError(
            "hidden units are inspected for recurrent kinds; use attention maps for the Transformer"
        )
    initial_state, step = step_function(model, model_config)
    step = tf.function(step, reduce_retracing=True)
    state = initial_state(tf.constant(1))
    ids = [EOT, *vocab.encode(text)]
    rows = []
    for token in ids:
        _, state = step(tf.constant([token], tf.int32), state)
        rows.append(top_hidden(model_config, state).numpy()[0])  # (units,)
    return np.asarray(rows[1:])  # after each character of the text


def correlations(activations: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson correlation of every unit (column) with ``feature``; 0 where either is constant."""
    a = activations - activations.mean(axis=0)
    f = feature - feature.mean()
    denominator = np.sqrt((a**2).sum(axis=0) * (f**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * f[:, None]).sum(axis=0) / denominator
    return np.nan_to_num(r)


def rank_units(activations: np.ndarray, features: dict[str, np.ndarray], top: int = 10) -> dict:
    """For each feature, the units ranked by |correlation|: ``{feature: [{unit, r}, …]}``."""
    ranked = {}
    for name, feature in features.items():
        r = correlations(activations, feature)
        order = np.argsort(-np.abs(r))[:top]
        ranked[name] = [{"unit": int(u), "r": float(r[u])} for u in order]
    return ranked


def _colour(value: float) -> tuple[float, float, float]:
    # -1 … 1 -> blue … white … red
    v = float(np.clip(value, -1, 1))
    return (1.0, 1 - v, 1 - v) if v >= 0 else (1 + v, 1 + v, 1.0)


def text_heatmap_html(text: str, values: np.ndarray, title: str) -> str:
    spans = []
    for ch, value in zip(text, values):
        r, g, b = (int(255 * c) for c in _colour(value))
        shown = "⏎<br>" if ch == "\n" else html.escape(ch).replace(" ", "&nbsp;")
        spans.append(f'<span style="background: rgb({r},{g},{b})">{shown}</span>')
    return (
        f"<h4>{html.escape(title)}</h4><div style='font-family: monospace; line-height: 1.6'>"
        f"{''.join(spans)}</div>"
    )


def text_heatmap_png(text: str, values: np.ndarray, title: str, path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    lines = text.split("\n")
    width = max(len(line) for line in lines) + 1
    fig = Figure(figsize=(max(6, width * 0.11), max(2, len(lines) * 0.28 + 0.6)))
    ax = fig.subplots()
    index = 0
    for row, line in enumerate(lines):
        for column, ch in enumerate(line + "\n"):
            if index >= len(values):
                break
            ax.add_patch(
                Rectangle((column, -row - 1), 1, 1, color=_colour(values[index]), linewidth=0)
            )
            if ch != "\n":
                ax.text(
                    column + 0.5,
                    -row - 0.5,
                    ch,
                    ha="center",
                    va="center",
                    fontsize=7,
                    family="monospace",
                )
            index += 1
    ax.set_xlim(0, width)
    ax.set_ylim(-len(lines), 0)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path, dpi=110)


def inspect_recurrent(
    model, model_config, vocab, text: str, out: Path, top: int = 3, log=print
) -> dict:
    activations = hidden_states(model, model_config, vocab, text)  # (chars, units)
    features = char_features(text)
    ranked = rank_units(activations, features)
    result = {
        "kind": model_config.kind,
        "units": int(activations.shape[1]),
        "characters": len(text),
        "features": list(FEATURES),
        "ranking": ranked,
    }
    pages = []
    for feature, units in ranked.items():
        for entry in units[:top]:
            unit = entry["unit"]
            values = activations[:, unit]
            scale = np.max(np.abs(values)) or 1.0
            title = f"unit {unit}: r = {entry['r']:+.2f} with {feature}"
            text_heatmap_png(text, values / scale, title, out / f"{feature}_unit{unit}.png")
            pages.append(text_heatmap_html(text, values / scale, title))
        log(f"{feature}: best unit {units[0]['unit']} (r = {units[0]['r']:+.3f})")
    from musicseq import fileio

    fileio.write_text(out / "units.html", "<html><body>" + "\n".join(pages) + "</body></html>\n")
    fileio.write_json(out / "units.json", result)
    return result


def attention_maps(model, model_config, vocab, text: str, out: Path, log=print) -> dict:
    """Per-layer attention PNGs over (up to the context of) ``text``, and head scores."""
    from matplotlib.figure import Figure

    from musicseq import fileio
    from musicseq.models import attention_maps as block_attention
    from musicseq.vocab import EOT

    ids = [EOT, *vocab.encode(text)][: model_config.context]
    chars = text[: len(ids) - 1]
    maps = block_attention(model, model_config, np.asarray([ids], np.int32))
    bar_lines = [i + 1 for i, ch in enumerate(chars) if ch == "|"]  # positions in `ids`
    scores = []
    for layer in range(model_config.num_layers):
        weights = maps[layer]  # (heads, T, T)
        heads = weights.shape[0]
        fig = Figure(figsize=(4 * heads, 4))
        axes = fig.subplots(1, heads, squeeze=False)
        for head in range(heads):
            ax = axes[0, head]
            ax.imshow(weights[head], cmap="viridis", aspect="auto")
            ax.set_title(f"layer {layer}, head {head}", fontsize=9)
            ax.set_xlabel("key position")
            ax.set_ylabel("query position")
            scores.append(_head_scores(weights[head], bar_lines, layer, head))
        save_figure(fig, out / f"attention_layer{layer}.png", dpi=80)
    result = {"kind": "transformer", "characters": len(chars), "heads": scores}
    best_bar = max(scores, key=lambda s: s["previous_bar_line"])
    best_back = max(scores, key=lambda s: s["one_bar_back"])
    log(
        f"previous bar line: layer {best_bar['layer']} head {best_bar['head']} "
        f"({best_bar['previous_bar_line']:.3f}); one bar back: layer {best_back['layer']} "
        f"head {best_back['head']} ({best_back['one_bar_back']:.3f})"
    )
    fileio.write_json(out / "attention.json", result)
    return result


def _head_scores(weights: np.ndarray, bar_lines: list[int], layer: int, head: int) -> dict:
    """Mean attention a query puts on the previous bar line, and on the same offset one bar back."""
    to_bar, back = [], []
    for query in range(weights.shape[0]):
        previous = [b for b in bar_lines if b < query]
        if previous:
            to_bar.append(weights[query, previous[-1]])
            if len(previous) >= 2:
                key = previous[-2] + (query - previous[-1])
                if key < previous[-1]:
                    back.append(weights[query, key])
    uniform = float(np.mean([1.0 / (q + 1) for q in range(weights.shape[0])]))
    return {
        "layer": layer,
        "head": head,
        "previous_bar_line": float(np.mean(to_bar)) if to_bar else 0.0,
        "one_bar_back": float(np.mean(back)) if back else 0.0,
        "uniform_baseline": uniform,
    }


def inspect_model(model_dir, tune_file, out_dir, top: int = 3, log=print) -> dict:
    from musicseq.errors import UserError
    from musicseq.modeldir import load_model_dir
    from musicseq.notation import decode_bytes, parse_tunebook

    model, model_config, vocab = load_model_dir(model_dir)
    path = Path(tune_file)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    parsed = parse_tunebook(decode_bytes(path.read_bytes()), str(path))
    if not parsed.tunes:
        raise UserError(
            f"no usable tune in {path}" + (f": {parsed.errors[0]}" if parsed.errors else "")
        )
    text = parsed.tunes[0].text
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model_config.kind == "transformer":
        return attention_maps(model, model_config, vocab, text, out, log)
    return inspect_recurrent(model, model_config, vocab, text, out, top, log)
