"""Run the CLI on each bad input and write what the user sees to docs/robustness.md.

    python scripts/robustness_table.py

Every row is measured: the command runs in a subprocess and its exit status and first
line of stderr are recorded. The fuzz run's summary (scripts/fuzz.py) is appended.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))


def run(*args: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "musicseq", *args], capture_output=True, text=True, env=ENV,
                          timeout=600)  # fmt: skip
    lines = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and not line.startswith(("W0000", "I0000", "E0000", "WARNING: All"))
    ]
    shown = [
        line for line in lines if "error" in line or "skipped" in line or "failed" in line
    ] or lines
    if not shown:  # nothing on stderr: show the last line of the output instead
        out = [line for line in done.stdout.splitlines() if line.strip()]
        return done.returncode, "(stdout) " + (" ".join(out[-1].split()) if out else "")
    return done.returncode, shown[0]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        three = ROOT / "tests" / "data" / "three.abc"
        model = t / "model"
        run("train", "--data", str(three), "--out", str(model), "--steps", "3", "--units", "16",
            "--seq-len", "32", "--batch-size", "4", "--quiet", "--no-tensorboard")  # fmt: skip
        (t / "empty.abc").write_text("")
        (t / "binary.abc").write_bytes(bytes(range(256)) * 10)
        (t / "noabc").mkdir()
        (t / "dir.abc").mkdir()
        (t / "evil.abc").write_text("X:1\nT:../../etc/x\nM:2/4\nL:1/8\nK:D\nAB cd|ef ga|]\n")
        (t / "bad_and_good.abc").write_text("X:1\nT:no key\nM:2/4\nAB|\n\n" + three.read_text())
        no_vocab = t / "no_vocab"
        shutil.copytree(model, no_vocab)
        (no_vocab / "vocab.json").unlink()
        mismatch = t / "mismatch"
        shutil.copytree(model, mismatch)
        vocab = json.loads((mismatch / "vocab.json").read_text())
        vocab["chars"].append("\u00e9")
        (mismatch / "vocab.json").write_text(json.dumps(vocab))
        old = t / "old_version"
        shutil.copytree(model, old)
        config = json.loads((old / "musicseq.json").read_text())
        config["format"] = 0
        (old / "musicseq.json").write_text(json.dumps(config))
        lam = t / "lambda"
        shutil.copytree(model, lam)
        code = (
            "import keras, sys; i = keras.Input((None,), dtype='int32');"
            "x = keras.layers.Embedding(40, 4, name='embedding')(i); x = keras.layers.Lambda(lambda t: t * 2)(x);"
            "keras.Model(i, keras.layers.Dense(3)(x)).save(sys.argv[1])"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(lam / "model.keras")],
            env=ENV,
            capture_output=True,
            check=True,
        )
        out = str(t / "out")
        cases = [
            ("missing input file", ["render", str(t / "nope.abc"), "--out", out]),
            ("a directory where a file is expected", ["render", str(t / "dir.abc"), "--out", out]),
            (
                "empty .abc file as training data",
                ["train", "--data", str(t / "empty.abc"), "--out", str(t / "m")],
            ),
            (
                "binary junk as training data",
                ["train", "--data", str(t / "binary.abc"), "--out", str(t / "m")],
            ),
            (
                "directory without .abc files",
                ["data", "--data", str(t / "noabc"), "--out", str(t / "c")],
            ),
            (
                "a bad tune next to good ones (render)",
                ["render", str(t / "bad_and_good.abc"), "--out", out, "--no-wav"],
            ),
            ("title with ../ (render)", ["render", str(t / "evil.abc"), "--out", out, "--no-wav"]),
            ("model directory without vocab.json", ["generate", str(no_vocab), "--out", out]),
            ("vocab.json that does not match the model", ["generate", str(mismatch), "--out", out]),
            ("model directory from another format version", ["generate", str(old), "--out", out]),
            ("model file carrying a Lambda layer", ["generate", str(lam), "--out", out]),
            (
                "prime with characters the model never saw",
                ["generate", str(model), "--out", out, "--prime", "X:1\n\u00e9"],
            ),
            ("unknown key", ["generate", str(model), "--out", out, "--key", "H#"]),
            (
                "meter that is not a meter",
                ["generate", str(model), "--out", out, "--meter", "seven"],
            ),
            ("temperature 0", ["generate", str(model), "--out", out, "--temperature", "0"]),
            ("top-p outside (0, 1]", ["generate", str(model), "--out", out, "--top-p", "1.5"]),
            ("negative step count", ["train", "--out", str(t / "m"), "--steps", "-5"]),
            (
                "conflicting flags (--steps and --epochs)",
                ["train", "--out", str(t / "m"), "--steps", "5", "--epochs", "2"],
            ),
            (
                "conflicting flags (--prime and --key)",
                ["generate", str(model), "--out", out, "--prime", "X:1", "--key", "G"],
            ),
            (
                "multi_worker without TF_CONFIG",
                [
                    "train",
                    "--data",
                    str(three),
                    "--out",
                    str(t / "m"),
                    "--strategy",
                    "multi_worker",
                ],
            ),
            (
                "cosine schedule with a time budget",
                ["train", "--out", str(t / "m"), "--minutes", "1", "--lr-schedule", "cosine"],
            ),
            ("unknown subcommand", ["frobnicate"]),
        ]
        for label, args in cases:
            status, message = run(*args)
            rows.append(
                (
                    label,
                    "musicseq "
                    + " ".join(a if len(a) < 30 else "…/" + Path(a).name for a in args[:1]),
                    status,
                    message.replace(tmp, "…"),
                )
            )
    lines = [
        "# Robustness: what the user sees",
        "",
        "Every row was produced by `python scripts/robustness_table.py`, which runs the command in a "
        "subprocess and records its exit status and the first line it printed on stderr.",
        "",
        "| bad input | command | exit | what the user sees |",
        "|---|---|---:|---|",
    ]
    for label, command, status, message in rows:
        lines.append(f"| {label} | `{command}` | {status} | `{message.replace('|', '¦')}` |")
    lines += [
        "",
        "Not in the table, covered by tests (`tests/test_robustness.py`, `tests/test_distribute.py`):",
        "a full disk while writing (simulated: `fsync` fails with ENOSPC) exits 2 with one line and "
        "leaves no partial or temporary file; a renderer that hangs is killed after its timeout and "
        "reported while the other tunes render; training killed with SIGKILL resumes from its last "
        "checkpoint; a failed corpus rebuild leaves the previous corpus intact; symlink loops are not "
        "followed; a 10 MB line and 1 MB pathological lines are parsed and checked in linear time.",
    ]
    target = ROOT / "docs" / "robustness.md"
    fuzz = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz.py")], capture_output=True, text=True,
                          env=ENV, timeout=1200)  # fmt: skip
    lines += ["", "## Fuzz run (`python scripts/fuzz.py`)", "", "```", fuzz.stdout.strip(), "```"]
    target.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
