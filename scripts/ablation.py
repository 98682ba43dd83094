"""Ablation: what each ingredient of the default model buys, every row trained by `musicseq
train` on the same step budget and evaluated the same way (free sampling: the model on its own).

    python scripts/ablation.py --steps 1800 --rows char metrical metrical+transpose \
        [--runs /tmp/ablation] [--num 200] [--out docs/ablation.md]

Rows share the shipped default's flags (BASE) and add their own (ROWS). A row whose model
directory already holds a finished run is evaluated, not retrained (a run that was stopped
resumes), so rows can be added one session at a time; every measured row is kept in
``docs/ablation_results.json`` (``--results``; rows measured before it existed were read back
from the table, rounded as shown) and written to the table. Held-out loss is given per
character, per note and per tune (comparable whatever the input features); then the generated
tunes' meter, cadence and repetition beside the corpus's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
MUSICSEQ = [sys.executable, "-m", "musicseq"]

BASE = (
    "--model transformer --units 256 --layers 4 --heads 8 --context 512 --seq-len 512 "
    "--batch-size 16 --dropout 0.1 --learning-rate 1.5e-3 --lr-schedule cosine "
    "--warmup-steps 100 --steps-per-epoch 150 --save-every 150 --seed 2026"
)
ROWS = {
    "char": "",
    "metrical": "--metrical",
    "metrical+transpose": "--metrical --transpose 2",
    "metrical+dropout0.2": "--metrical --dropout 0.2",
    "metrical+small": "--metrical --units 192 --heads 6",
    "metrical+tonal": "--metrical --tonal",
    "metrical+tonal+bf16": "--metrical --tonal --precision mixed_bfloat16",
    "metrical+tonal+bf16+transpose": "--metrical --tonal --precision mixed_bfloat16 --transpose 2",
    "metrical+tonal+bf16+small": "--metrical --tonal --precision mixed_bfloat16 --units 192 --heads 6",
    "metrical+tonal+bf16+cadence3": "--metrical --tonal --precision mixed_bfloat16 --cadence-weight 3",
    "metrical+tonal+bf16+dropout0": "--metrical --tonal --precision mixed_bfloat16 --dropout 0",
    "metrical+tonal+bf16+relative": "--metrical --tonal --precision mixed_bfloat16 --relative-pitch",
    "abc": "--tokens abc",
}
DESCRIBE = {
    "char": "characters only (the first Transformer default)",
    "metrical": "+ metrical inputs (position in the bar, bar in the part)",
    "metrical+transpose": "+ metrical, + 2 transpositions of each training tune",
    "metrical+dropout0.2": "+ metrical, dropout 0.2",
    "metrical+small": "+ metrical, width 192",
    "metrical+tonal": "+ metrical, + tonal inputs (the key's tonic, the last note's degree)",
    "metrical+tonal+bf16": "+ metrical, + tonal, trained in mixed bfloat16 (the previous default)",
    "metrical+tonal+bf16+transpose": "the default + 2 transpositions of each training tune",
    "metrical+tonal+bf16+small": "the default at width 192 (6 heads of 32)",
    "metrical+tonal+bf16+cadence3": "the default, loss weight 3 on each part's last bar",
    "metrical+tonal+bf16+dropout0": "the default without dropout",
    "metrical+tonal+bf16+relative": "the default + note letters' logits read relative to the tonic (the default since 2026-11-23)",
    "abc": "musical ABC tokens instead of characters (no metrical inputs)",
}


def run_row(
    name: str, steps: int, runs: Path, num: int, seed: int, use: Path | None, reuse: bool
) -> dict:
    """Train (unless ``use`` names a finished run of this row's flags) and evaluate a row."""
    out = use or runs / name
    flags = shlex.split(BASE) + shlex.split(ROWS[name])
    # The base's dropout is replaced when a row gives its own.
    if flags.count("--dropout") > 1:
        i = flags.index("--dropout")
        del flags[i : i + 2]
    command = [*MUSICSEQ, "train", *flags, "--steps", str(steps), "--out", str(out), "--quiet"]
    started = time.monotonic()
    if use is None:
        subprocess.run(command, check=True)
    history = json.loads((out / "history.json").read_text())
    if use is not None:  # a finished run: the budget it was trained on
        steps = json.loads((out / "musicseq.json").read_text())["train"]["steps"] or steps
    evaluation = runs / name / "evaluation"  # never inside a used (e.g. shipped) model
    done = out / "evaluation" / "report.json"  # e.g. scripts/model_card.py's, same seed
    if reuse and use is not None and done.is_file():
        report = json.loads(done.read_text())
    else:
        subprocess.run(
            [*MUSICSEQ, "evaluate", str(out), "--num", str(num), "--seed", str(seed)]
            # plain sampling at temperature 1 for every row, whatever a model's own settings
            + ["--temperature", "1.0", "--top-k", "0", "--top-p", "1.0"]
            + ["--out", str(evaluation), "--quiet"],
            check=True,
        )
        report = json.loads((evaluation / "report.json").read_text())
    if report["unconstrained"]["tunes"] != num:
        raise SystemExit(f"{name}: the evaluation has {report['unconstrained']['tunes']} tunes")
    free, form = report["unconstrained"], report["unconstrained"]["form"]
    return {
        "row": name,
        "flags": ROWS[name],
        "steps": steps,
        "training_minutes": history["seconds"] / 60 if history.get("seconds") else None,
        "wall_minutes_this_call": (time.monotonic() - started) / 60,
        "val_loss_last": history["val_loss"][-1],
        "held_out": report["held_out"],
        "tunes": free["tunes"],
        "tunes_all_bars_exact_pct": free["tunes_all_bars_exact_pct"],
        "mid_section_bars_exact_pct": free["mid_section_bars_exact_pct"],
        "ends_on_tonic": form["ends_on_tonic"],
        "bar_repetition": form["bar_repetition"],
        "bar_minus_4": form["bar_minus_4"],
        "reference": {
            k: report["reference_form"][k]
            for k in ("ends_on_tonic", "bar_repetition", "bar_minus_4")
        },
    }


def corpus_all_exact_pct(data: str = "data/abc") -> float:
    """Share of the test split's tunes with every mid-section bar exact (musicseq's checker)."""
    from musicseq.corpus import load_split
    from musicseq.notation.checker import check_text

    tunes = load_split(data, "test")
    return 100.0 * sum(check_text(t).all_bars_exact for t in tunes) / len(tunes)


def table(results: list[dict]) -> str:
    ref = results[0]["reference"]
    lines = [
        "| row | steps | train min | nats/char | bits/note | bits/tune | every bar exact | "
        "ends on tonic | bar repetition | bar i = i−4 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| corpus (test split) | | | | | | {corpus_all_exact_pct():.1f}% | "
        f"{100 * ref['ends_on_tonic']:.1f}% | "
        f"{ref['bar_repetition']:.3f} | {ref['bar_minus_4']:.3f} |",
    ]
    for r in results:
        h = r["held_out"]
        minutes = f"{r['training_minutes']:.0f}" if r["training_minutes"] else "-"
        lines.append(
            f"| {DESCRIBE.get(r['row'], r['row'])} | {r['steps']} | {minutes} | "
            f"{h['nats_per_char']:.4f} | {h['bits_per_note']:.3f} | {h['bits_per_tune']:.0f} | "
            f"{r['tunes_all_bars_exact_pct']:.1f}% | {100 * r['ends_on_tonic']:.1f}% | "
            f"{r['bar_repetition']:.3f} | {r['bar_minus_4']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), required=True)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/ablation"))
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ablation_table.md")
    parser.add_argument(
        "--use",
        action="append",
        default=[],
        metavar="ROW=DIR",
        help="evaluate DIR (a finished run of that row's flags; its own step budget) instead "
        "of training",
    )
    parser.add_argument(
        "--reuse-evaluation",
        action="store_true",
        help="for --use rows: read DIR/evaluation/report.json when it exists (same --num/--seed)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=ROOT / "docs" / "ablation_results.json",
        help="every measured row, kept between sessions (the runs directory may not be)",
    )
    args = parser.parse_args()
    use = {row: Path(d) for row, d in (item.split("=", 1) for item in args.use)}
    args.runs.mkdir(parents=True, exist_ok=True)
    store = args.results
    results = json.loads(store.read_text()) if store.is_file() else {}
    for name in args.rows:
        results[name] = run_row(
            name, args.steps, args.runs, args.num, args.seed, use.get(name), args.reuse_evaluation
        )
        store.write_text(json.dumps(results, indent=2) + "\n")
    rows = [results[n] for n in ROWS if n in results]
    args.out.write_text(
        f"<!-- written by scripts/ablation.py from {args.results.name} -->\n\n{table(rows)}\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
