"""Make docs/gallery.md: pictures from real models, each with the command that made it.

python scripts/gallery.py [--model saved_models/folk-gru] [--transformer out/compare/transformer]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))


def musicseq(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "musicseq", *args],
        check=True,
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="saved_models/folk-gru")
    parser.add_argument("--transformer", default="out/compare/transformer")
    parser.add_argument("--tune", default="tests/data/ariel.abc")
    args = parser.parse_args()
    gallery = ROOT / "docs" / "gallery"
    shutil.rmtree(gallery, ignore_errors=True)
    lines = [
        "# Gallery",
        "",
        "Every picture here was made from a trained model by the command above it "
        "(`python scripts/gallery.py` re-makes them all).",
        "",
    ]
    units_cmd = [
        "inspect",
        args.model,
        "--tune",
        args.tune,
        "--out",
        "docs/gallery/units",
        "--top",
        "1",
    ]
    musicseq(*units_cmd)
    units = json.loads((gallery / "units" / "units.json").read_text())
    lines += [
        "## Hidden units of the shipped GRU",
        "",
        f"`musicseq {' '.join(units_cmd)}`",
        "",
        "Each picture is the tune's text coloured by one unit's activation (red positive, blue negative); "
        "the unit is the one whose activation correlates best with the named feature.",
        "",
    ]
    for feature, ranked in units["ranking"].items():
        best = ranked[0]
        lines += [
            f"**{feature}** — unit {best['unit']}, r = {best['r']:+.2f}",
            "",
            f"![{feature}](gallery/units/{feature}_unit{best['unit']}.png)",
            "",
        ]
    if Path(ROOT / args.transformer).is_dir():
        att_cmd = [
            "inspect",
            args.transformer,
            "--tune",
            args.tune,
            "--out",
            "docs/gallery/attention",
        ]
        musicseq(*att_cmd)
        attention = json.loads((gallery / "attention" / "attention.json").read_text())
        heads = sorted(attention["heads"], key=lambda h: -h["previous_bar_line"])
        lines += [
            "## Attention of the comparison Transformer",
            "",
            f"`musicseq {' '.join(att_cmd)}`",
            "",
            "| layer | head | attention on the previous bar line | on the same position one bar back | uniform baseline |",
            "|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {h['layer']} | {h['head']} | {h['previous_bar_line']:.3f} | {h['one_bar_back']:.3f} | "
            f"{h['uniform_baseline']:.3f} |"
            for h in heads
        ]
        for png in sorted((gallery / "attention").glob("*.png")):
            lines += ["", f"![{png.stem}](gallery/attention/{png.name})"]
        lines.append("")
    eval_dir = Path(args.model) / "evaluation"
    if (ROOT / eval_dir / "piano_roll.png").is_file():
        (gallery / "evaluation").mkdir(parents=True, exist_ok=True)
        for name in ("piano_roll.png", "distributions.png", "loss.png"):
            shutil.copy(ROOT / eval_dir / name, gallery / "evaluation" / name)
        lines += [
            "## Generated tunes, meters and keys, training loss",
            "",
            f"From `python scripts/model_card.py {args.model}` (which runs `musicseq evaluate ... --constrain`).",
            "",
            "![piano rolls](gallery/evaluation/piano_roll.png)",
            "",
            "![meters and keys](gallery/evaluation/distributions.png)",
            "",
            "![loss](gallery/evaluation/loss.png)",
            "",
        ]
    (ROOT / "docs" / "gallery.md").write_text("\n".join(lines) + "\n")
    print("wrote docs/gallery.md")


if __name__ == "__main__":
    main()
