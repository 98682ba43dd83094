"""Where a model's held-out bits go: header fields against the tune's body, note by note.

    python scripts/bits_by_part.py saved_models/folk-transformer OLD_MODEL_DIR [--data data/abc]

Each character of each test tune (and its end-of-tune token) is scored from everything
before it in the tune, as the held-out loss scores it, and its nats are filed under what it
is: a header line's field (``T:`` title, ``X:`` number, ``K:``, ...), or in the body a note
letter, an accidental or octave mark, a duration (digits, ``/``, ``<``, ``>``), a bar line or
repeat mark, a space or line break, or anything else (decorations, chords, slurs, tuplets).
Tunes longer than a Transformer's context are left out (the held-out loss slides a window
over them); the per-tune totals are checked against the one scorer,
:func:`musicseq.sampling.score_texts`, before anything is printed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BODY_CLASSES = (
    ("note letters", set("ABCDEFGabcdefg")),
    ("accidentals and octave marks", set("^_=',")),
    ("durations", set("0123456789/<>")),
    ("bar lines and repeats", set("|:[]")),
    ("spaces and line breaks", set(" \n")),
)


def classes(text: str) -> list[str]:
    """The class of each character of ``text``."""
    out = []
    for line in text.split("\n"):
        header = len(line) > 1 and line[1] == ":" and line[0].isalpha()
        for ch in line + "\n":
            if header:
                out.append(f"header {line[0]}:")
                continue
            for name, chars in BODY_CLASSES:
                if ch in chars:
                    out.append(name)
                    break
            else:
                out.append("other body characters")
    return out[: len(text)]


def position_nats(model_dir: str, texts: list[str]):
    """(texts kept, per-character nats of each: text then end-of-tune) for one model."""
    import numpy as np
    import tensorflow as tf

    from musicseq.modeldir import load_model_dir
    from musicseq.sampling import score_texts
    from musicseq.vocab import EOT

    model, config, vocab = load_model_dir(model_dir)
    if config.kind == "transformer":
        texts = [t for t in texts if len(t) + 1 <= config.context]
    width = max(len(t) for t in texts) + 2

    @tf.function
    def nats(ids):
        inputs = ids
        if config.metrical:
            from musicseq.models import meter_clock

            inputs, _ = meter_clock(model).pack_sequences(ids)
        logits = tf.cast(model(inputs[:, :-1], training=False), tf.float32)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids[:, 1:], logits=logits)

    per_tune, batch = [], 16
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        ids = np.full((batch, width), EOT, np.int32)  # padding after a tune cannot reach it
        for row, text in enumerate(chunk):
            encoded = [EOT, *vocab.encode(text), EOT]
            ids[row, : len(encoded)] = encoded
        got = nats(tf.constant(ids)).numpy()
        per_tune += [got[row, : len(text) + 1] for row, text in enumerate(chunk)]
    totals = score_texts(model, config, vocab, texts)
    mine = np.asarray([p.sum() for p in per_tune])
    worst = float(np.max(np.abs(mine - totals) / totals))
    if worst > 1e-3:
        raise SystemExit(f"{model_dir}: per-character nats disagree with the scorer by {worst:.2%}")
    return texts, per_tune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model directories")
    parser.add_argument("--data", default="data/abc", help="corpus: its test split is scored")
    args = parser.parse_args()
    from musicseq.corpus import load_split

    tests = load_split(args.data, "test")
    tables = {}
    for model_dir in args.models:
        texts, per_tune = position_nats(model_dir, tests)
        bits, count = {}, {}
        for text, nats in zip(texts, per_tune):
            for name, value in zip([*classes(text), "end of tune"], nats):
                bits[name] = bits.get(name, 0.0) + float(value) / math.log(2)
                count[name] = count.get(name, 0) + 1
        tables[model_dir] = (len(texts), bits, count)
    names = sorted({n for _, bits, _ in tables.values() for n in bits}, key=_order)
    print(
        f"Test split of {args.data}; "
        + "; ".join(f"{d}: {n} tunes" for d, (n, _, _) in tables.items())
    )
    print()
    print(
        "| characters | count | "
        + " | ".join(f"{Path(d).name} bits | share | bits/char" for d in tables)
        + " |"
    )
    print("|---|---:|" + "---:|---:|---:|" * len(tables))
    for name in [*names, "all"]:
        cells = []
        for _, bits, count in tables.values():
            total = sum(bits.values())
            b = total if name == "all" else bits.get(name, 0.0)
            c = sum(count.values()) if name == "all" else count.get(name, 0)
            cells.append(f"{b:,.0f} | {100 * b / total:.1f}% | {b / max(c, 1):.3f}")
        first = next(iter(tables.values()))[2]
        n = sum(first.values()) if name == "all" else first.get(name, 0)
        print(f"| {name} | {n:,} | " + " | ".join(cells) + " |")


def _order(name: str):
    body = [n for n, _ in BODY_CLASSES] + ["other body characters", "end of tune"]
    return (0, name) if name.startswith("header") else (1, body.index(name))


if __name__ == "__main__":
    main()
