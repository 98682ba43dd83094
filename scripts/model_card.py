"""Evaluate the shipped model and write its metrics.json, SavedModel and MODEL_CARD.md.

    python scripts/model_card.py saved_models/folk-gru [--num 200] [--baseline docs/baseline_lstm.json]

Runs ``musicseq evaluate`` (with and without --constrain), the Kneser-Ney n-gram references
(orders 3-8) on the same split, reads the plain-Keras LSTM reference from --baseline, exports
the SavedModel, and writes everything with the exact training command into the model card.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from musicseq.corpus import load_split  # noqa: E402
from musicseq.evaluate import evaluate_model  # noqa: E402
from musicseq.export import export_savedmodel  # noqa: E402
from musicseq.ngram import KneserNey  # noqa: E402
from musicseq.train import load_model_dir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--data", default="data/abc")
    parser.add_argument("--baseline", type=Path, default=ROOT / "docs" / "baseline_lstm.json")
    args = parser.parse_args()
    model_dir = args.model_dir
    shutil.rmtree(model_dir / "checkpoint", ignore_errors=True)  # not shipped
    report = evaluate_model(model_dir, model_dir / "evaluation", data=args.data, num=args.num, seed=args.seed,
                            temperature=args.temperature, constrain=True)  # fmt: skip
    test, train = load_split(args.data, "test"), load_split(args.data, "train")
    ngram = {n: KneserNey(n).fit(train).nats_per_char(test) for n in range(3, 9)}
    best_order = min(ngram, key=ngram.get)
    baseline = json.loads(args.baseline.read_text()) if args.baseline.is_file() else None
    model, config, vocab = load_model_dir(model_dir)
    export_savedmodel(model, config, vocab, model_dir / "savedmodel")
    history = json.loads((model_dir / "history.json").read_text())
    train_config = json.loads((model_dir / "config.json").read_text())["train"]
    ours = report["held_out"]["nats_per_char"]
    metrics = {
        "test_nats_per_char": ours,
        "test_bits_per_char": report["held_out"]["bits_per_char"],
        "test_tunes": report["held_out"]["tunes"],
        "ngram_nats_per_char": {str(k): v for k, v in ngram.items()},
        "ngram_best": {"order": best_order, "nats_per_char": ngram[best_order]},
        "improvement_over_ngram_pct": 100 * (1 - ours / ngram[best_order]),
        "baseline_lstm": baseline,
        "improvement_over_baseline_lstm_pct": 100 * (1 - ours / baseline["test_nats_per_char"])
        if baseline
        else None,
        "generated": {
            k: {
                m: report[k][m]
                for m in (
                    "tunes",
                    "midi_with_notes_pct",
                    "valid_headers_pct",
                    "mid_section_bars_exact_pct",
                    "tunes_all_bars_exact_pct",
                    "mean_bars",
                    "copy_rate_pct",
                    "meter_distance_tv",
                    "key_distance_tv",
                    "characters_per_second",
                )
            }
            for k in ("unconstrained", "constrained")
        },  # fmt: skip
        "training_tokens": history["tokens"],
        "training_steps": history["steps"],
        "training_seconds": history["seconds"],
        "train_config": train_config,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
    }
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: v for k, v in metrics.items() if k != "generated"}, indent=2))


if __name__ == "__main__":
    main()
