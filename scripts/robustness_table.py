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
    done = subprocess.run(
        [sys.executable, "-m", "musicseq", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
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
        run(
            "train",
            "--data",
            str(three),
            "--out",
            str(model),
            "--steps",
            "3",
            "--units",
            "16",
            "--seq-len",
            "32",
            "--batch-size",
            "4",
            "--quiet",
            "--no-tensorboard",
        )
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
                "dropout out of range",
                ["train", "--data", str(three), "--out", str(t / "m"), "--dropout", "1.5"],
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
    lines += ["", *fault_table()]
    target = ROOT / "docs" / "robustness.md"
    fuzz = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fuzz.py")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=1200,
    )
    lines += ["", "## Fuzz run (`python scripts/fuzz.py`)", "", "```", fuzz.stdout.strip(), "```"]
    target.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# Each fault test: what it does to a run, and what the run must not lose.
FAULTS = {
    "test_resume_after_a_crash_is_bit_identical": (
        "GRU and Transformer (dropout 0.2), 18 steps, epochs of 6, checkpoints every 4: stopped "
        "right after the checkpoint at step 4 (mid-epoch), at step 6 (an epoch end), and at "
        "steps 8 and 16 (twice in one run); each resumed",
        "weights bit-identical to the uninterrupted run (SHA-256); per-epoch losses equal",
    ),
    "test_sigkill_twice_then_resume_matches_an_uninterrupted_run": (
        "`musicseq train --deterministic` (GRU, 240 steps, checkpoints every 7) killed with "
        "SIGKILL past step 30, rerun and killed again past step 130, rerun to the end",
        "weights bit-identical to the uninterrupted run; 240 steps, 4 epochs",
    ),
    "test_sigkill_then_rerun_resumes_from_the_checkpoint": (
        "LSTM, 600 steps: SIGKILL mid-epoch 2, rerun",
        "epoch 1 kept, the interrupted epoch finished with exactly its missing steps",
    ),
    "test_a_finished_early_stopped_run_is_not_trained_again": (
        "a run that stopped early is run again with the same command",
        "nothing trained; 'the run … is complete'; the best weights, unchanged",
    ),
    "test_changed_budget": (
        "resumed with --steps 20 after 10: constant rate; then a cosine run likewise",
        "constant: extended to 20 steps; cosine: refused in one line (its decay was planned "
        "over 10 steps)",
    ),
    "test_time_budget_with_a_cosine_schedule_estimates_its_steps": (
        "--minutes with --lr-schedule cosine",
        "total steps estimated from the measured step time and recorded; the rate decays",
    ),
    "test_checkpoints_are_written_once_per_step": (
        "--save-every dividing the epoch",
        "each checkpoint written once",
    ),
    "test_every_kind_trains_generates_evaluates_and_exports[mixed_float16]": (
        "all five kinds with --precision mixed_float16 (on the CPU)",
        "train, generate (free and constrained), held-out loss, SavedModel export and call",
    ),
    "test_every_kind_trains_generates_evaluates_and_exports[mixed_bfloat16]": (
        "all five kinds with --precision mixed_bfloat16 (on the CPU)",
        "train, generate (free and constrained), held-out loss, SavedModel export and call",
    ),
    "test_custom_multi_worker_step_scales_the_loss_under_float16": (
        "the custom multi-worker loop with mixed_float16 (loss scaling)",
        "6 steps, finite losses",
    ),
}


def fault_table() -> list[str]:
    """Run the fault tests and report each: what was done to the run and what was lost."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "tests/test_resume.py",
            "tests/test_precision.py",
            "tests/test_distribute.py::test_sigkill_then_rerun_resumes_from_the_checkpoint",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=1800,
    )
    passed = {
        line.split("::", 1)[1] for line in done.stdout.splitlines() if line.startswith("PASSED ")
    }
    lines = [
        "## Faults: kills, precision modes, changed budgets",
        "",
        "Measured by the tests named below (run by this script; `make test` runs them too).",
        "",
        "| test | what was done | what must survive | lost |",
        "|---|---|---|---|",
    ]
    for test, (done_to_it, survives) in FAULTS.items():
        lost = "nothing" if test in passed else "**FAILED**"
        lines.append(f"| `{test}` | {done_to_it} | {survives} | {lost} |")
    return lines


if __name__ == "__main__":
    main()
