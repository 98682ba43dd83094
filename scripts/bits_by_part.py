"""Where a model's held-out bits go: header fields against the tune's body, note by note.

    python scripts/bits_by_part.py saved_models/folk-transformer OLD_MODEL_DIR [--data data/abc]

Each character of each test tune (and its end-of-tune token) is scored from everything
before it in the tune, as the held-out loss scores it, and its nats are filed under what it
is: a header line's field (``T:`` title, ``X:`` number, ``K:``, ...), or in the body a note
letter, an accidental or octave mark, a duration (digits, ``/``, ``<``, ``>``), a bar line or
repeat mark, a space or line break, or anything else (decorations, chords, slurs, tuplets).
The nats come from the one scorer (:func:`musicseq.sampling.score_texts`, character by
character): a Transformer slides its window over tunes longer than its context as the
held-out loss does, so the table's total is the held-out loss's. Character models only.
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
    """Per-character nats of each tune (its text, then end-of-tune) for one model, from the
    one scorer (:func:`musicseq.sampling.score_texts`, ``per_token=True``)."""
    from musicseq.modeldir import load_model_dir
    from musicseq.sampling import score_texts

    model, config, vocab = load_model_dir(model_dir)
    if vocab.kind != "chars":
        raise SystemExit(f"{model_dir}: a {vocab.kind}-token model; this script files characters")
    return score_texts(model, config, vocab, texts, per_token=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model directories")
    parser.add_argument("--data", default="data/abc", help="corpus: its test split is scored")
    args = parser.parse_args()
    from musicseq.corpus import load_split

    tests = load_split(args.data, "test")
    tables = {}
    for model_dir in args.models:
        per_tune = position_nats(model_dir, tests)
        bits, count = {}, {}
        for text, nats in zip(tests, per_tune):
            for name, value in zip([*classes(text), "end of tune"], nats):
                bits[name] = bits.get(name, 0.0) + float(value) / math.log(2)
                count[name] = count.get(name, 0) + 1
        tables[model_dir] = (len(tests), bits, count)
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
