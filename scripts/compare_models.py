"""Train every model kind for the same CPU time on the default corpus and compare them.

    python scripts/compare_models.py [--minutes 4] [--data data/abc] [--out docs/model_comparison.md]

Fairness: every kind gets the same wall-clock budget, the same data, batch (32 x 128
characters; the Transformer trains on windows of its context, 256), optimiser (Adam 2e-3, clipnorm 1) and seed, and a size chosen so that all have
about 350k parameters (sizes in ``SIZES``). Held-out loss is measured on the test split over
whole tunes with :func:`musicseq.evaluate.held_out_loss`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from musicseq.config import ModelConfig, TrainConfig  # noqa: E402
from musicseq.corpus import load_split  # noqa: E402
from musicseq.evaluate import held_out_loss  # noqa: E402
from musicseq.modeldir import load_model_dir  # noqa: E402
from musicseq.train import train  # noqa: E402

# ~350k parameters each (vocabulary ~98).
SIZES = {
    "rnn_scratch": dict(units=512),
    "simple_rnn": dict(units=512),
    "lstm": dict(units=256),
    "gru": dict(units=296),
    "transformer": dict(units=128, num_layers=2, num_heads=4, context=256),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--data", default="data/abc")
    parser.add_argument("--workdir", type=Path, default=Path("out/compare"))
    parser.add_argument("--out", type=Path, default=Path("docs/model_comparison.md"))
    parser.add_argument("--kinds", nargs="+", default=list(SIZES))
    parser.add_argument(
        "--update", action="store_true", help="replace only these kinds' rows in --out's JSON"
    )
    args = parser.parse_args()

    test_texts = load_split(args.data, "test")
    previous = json.loads(args.out.with_suffix(".json").read_text()) if args.update else []
    rows = [r for r in previous if r["kind"] not in args.kinds]
    for kind in args.kinds:
        model_dir = args.workdir / kind
        started = time.monotonic()
        history = train(
            args.data,
            model_dir,
            ModelConfig(kind=kind, vocab_size=1, **SIZES[kind]),
            TrainConfig(
                seq_len=128, batch_size=32, minutes=args.minutes, steps_per_epoch=100, seed=0
            ),
            verbose=0,
        )
        seconds = time.monotonic() - started
        model, config, vocab = load_model_dir(model_dir)
        loss = held_out_loss(model, config, vocab, test_texts)
        speeds = history["tokens_per_second"][1:] or history["tokens_per_second"]
        rows.append(
            {
                "kind": kind,
                "size": SIZES[kind],
                "parameters": model.count_params(),
                "tokens_per_second": sum(speeds) / len(speeds),
                "steps": history["steps"],
                "training_tokens": history["tokens"],
                "test_nats_per_char": loss["nats_per_char"],
                "test_bits_per_char": loss["bits_per_char"],
                "seconds": seconds,
            }
        )
        print(json.dumps(rows[-1]))

    lines = [
        "# Model comparison",
        "",
        f"Command: `python scripts/compare_models.py --minutes {args.minutes:g}` "
        f"({platform.machine()}, {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}).",
        "",
        "Every kind trained for the same wall-clock budget on the default corpus (train split), "
        "batch 32 x 128 characters (the Transformer: 32 x 256, its context length, so that every "
        "position it is evaluated at was trained), Adam 2e-3 with clipnorm 1, seed 0; sizes chosen for about "
        "350k parameters each. Held-out loss: test split, whole tunes "
        f"({len(test_texts)} tunes), `musicseq.evaluate.held_out_loss`.",
        "",
        "| kind | size | parameters | tokens/s | steps | test nats/char | test bits/char | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows.sort(key=lambda r: list(SIZES).index(r["kind"]))
    for r in rows:
        size = ", ".join(f"{k}={v}" for k, v in r["size"].items())
        lines.append(
            f"| {r['kind']} | {size} | {r['parameters']:,} | {r['tokens_per_second']:,.0f} | {r['steps']:,} "
            f"| {r['test_nats_per_char']:.3f} | {r['test_bits_per_char']:.3f} | {r['seconds']:.0f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
