"""Form and meter figures of one model's tunes under several sampling settings.

    python scripts/sampling_sweep.py folk-transformer --num 200 --seed 1 \
        --settings "temperature=1.0" "temperature=0.9" "temperature=0.8,top_p=0.95" \
        [--constrain] [--out docs/sampling_sweep.md]
    python scripts/sampling_sweep.py saved_models/folk-transformer \
        --set free top_p=0.9 --set constrained repeat_bias=0.875

Each setting is a comma-separated list of SampleConfig fields (temperature, top_k, top_p,
repeat_bias, ...). Every setting generates ``--num`` tunes with the same seed and is measured
as ``musicseq evaluate`` measures them (the checker's exact bars, notation.form's figures);
the corpus's test split is the first row. Appends a table to ``--out``. A row is
SampleConfig's defaults plus its setting: a model's own sampling settings do not apply.

``--set`` writes the settings a model is then generated with when a caller gives none
(``musicseq.json`` → ``"sampling"``; see ``ModelDir.sampling_defaults``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from musicseq import fileio  # noqa: E402
from musicseq.config import SampleConfig  # noqa: E402
from musicseq.corpus import load_split  # noqa: E402
from musicseq.evaluate import CopyIndex, tune_metrics  # noqa: E402
from musicseq.modeldir import ModelDir, config_path, read_meta, resolve  # noqa: E402
from musicseq.sampling import generate  # noqa: E402

COLUMNS = (
    ("every bar exact", "all_exact", "{:.1%}"),
    ("ends on the tonic", "ends_on_tonic", "{:.1%}"),
    ("final bar tonic", "final_bar_tonic", "{:.1%}"),
    ("bar repetition", "bar_repetition", "{:.3f}"),
    ("bar i = i−4", "bar_minus_4", "{:.3f}"),
    ("AABB/8", "aabb_8", "{:.1%}"),
    ("all parts 8/16", "all_sections_8_or_16", "{:.1%}"),
    ("out of key", "out_of_key", "{:.1%}"),
    ("median range", "median_range", "{:.0f}"),
    ("copies", "copy_rate", "{:.1%}"),
)


def parse_setting(text: str) -> dict:
    fields = SampleConfig.__dataclass_fields__
    setting = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in fields:
            raise SystemExit(f"unknown sampling field: {name}")
        setting[name] = type(fields[name].default)(value)
    return setting


def figures(tunes: list[str], train_texts: list[str], copies: CopyIndex) -> dict:
    """``musicseq evaluate``'s own measurements (evaluate.tune_metrics), as shares."""
    metrics = tune_metrics(tunes, train_texts, copies)
    return {
        **metrics["form"],
        "all_exact": metrics["tunes_all_bars_exact_pct"] / 100,
        "copy_rate": metrics["copy_rate_pct"] / 100,
    }


def row(name: str, values: dict, seconds: float | None) -> str:
    cells = ["–" if values.get(key) is None else fmt.format(values[key]) for _, key, fmt in COLUMNS]
    return (
        f"| {name} | " + " | ".join(cells) + f" | {'' if seconds is None else f'{seconds:.0f}'} |"
    )


def set_defaults(model_dir: Path, items: list[list[str]]) -> None:
    meta = read_meta(model_dir)
    sampling = meta.setdefault("sampling", {})
    for mode, text in items:
        if mode not in ("free", "constrained"):
            raise SystemExit(f"--set takes free or constrained, got {mode}")
        sampling[mode] = parse_setting(text)
    fileio.write_json(config_path(model_dir), meta)
    print(f"{model_dir}: sampling {sampling}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--settings", nargs="+", default=[])
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--constrain", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--set",
        nargs=2,
        action="append",
        metavar=("free|constrained", "SETTING"),
        default=[],
        help="write SETTING as the model's own sampling settings for free or constrained "
        'generation (musicseq.json "sampling"; callers\' options still win) and exit',
    )
    args = parser.parse_args()
    if args.set:
        set_defaults(resolve(args.model), args.set)
        return

    loaded = ModelDir.load(resolve(args.model))
    settings = [parse_setting(s) for s in args.settings]
    data = loaded.data or "data/abc"
    train_texts = load_split(data, "train")
    copies = CopyIndex(train_texts)
    how = "constrained (`--constrain`)" if args.constrain else "free"
    lines = [
        f"\n### {args.model}: {how}, {args.num} tunes, seed {args.seed}\n",
        "| setting | " + " | ".join(c for c, _, _ in COLUMNS) + " | seconds |",
        "|---|" + "---:|" * (len(COLUMNS) + 1),
        row("corpus test split", figures(load_split(data, "test"), train_texts, copies), None),
    ]
    print("\n".join(lines), flush=True)
    for text, setting in zip(args.settings, settings):
        config = SampleConfig(num=args.num, seed=args.seed, **setting)
        started = time.perf_counter()
        tunes = generate(
            loaded.model, loaded.config, loaded.vocab, config, constrain=args.constrain
        )
        lines.append(row(text, figures(tunes, train_texts, copies), time.perf_counter() - started))
        print(lines[-1], flush=True)
    if args.out:
        with args.out.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
