"""Exact resume: a run interrupted at any step and resumed ends bit-identical to one that was
never interrupted (deterministic ops); finished, early-stopped and re-budgeted runs."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from musicseq.config import ModelConfig, TrainConfig
from musicseq.errors import UserError
from musicseq.train import train

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))

# Crashes are raised right after the checkpoint at a given step is written: what a kill at
# that moment (or at any later moment before the next checkpoint) leaves on disk.
CRASHES = textwrap.dedent(
    """
    import json, sys
    from musicseq import train as training
    from musicseq.config import ModelConfig, TrainConfig

    data, out = sys.argv[1:3]

    class Killed(Exception):
        pass

    write = training.Checkpointer.save

    def run(name, kind, crash_at):
        pending = set(crash_at)

        def save(self, model, state):
            write(self, model, state)
            if state.step in pending:
                pending.discard(state.step)
                raise Killed(state.step)

        training.Checkpointer.save = save
        model = ModelConfig(kind=kind, units=16, embedding_dim=8, vocab_size=1, num_heads=2,
                            context=24, dropout=0.2)
        config = TrainConfig(seq_len=24, batch_size=4, steps=18, steps_per_epoch=6, save_every=4,
                             seed=5, deterministic=True, tensorboard=False)
        resumed = 0
        while True:
            try:
                history = training.train(data, f"{out}/{name}", model, config,
                                         log=lambda m: None, verbose=0)
                return history["weights_sha256"], resumed, history["loss"]
            except Killed:
                resumed += 1

    results = {}
    for kind in ("gru", "transformer"):
        for name, crash_at in (("straight", ()), ("mid_epoch", (4,)), ("epoch_end", (6,)),
                               ("twice", (8, 16))):
            results[f"{kind}_{name}"] = run(f"{kind}_{name}", kind, crash_at)
    print(json.dumps(results))
    """
)


@pytest.mark.slow
def test_resume_after_a_crash_is_bit_identical(tmp_path, data_dir):
    done = subprocess.run(
        [sys.executable, "-c", CRASHES, str(data_dir / "irish.abc"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for kind in ("gru", "transformer"):
        digest, resumed, loss = results[f"{kind}_straight"]
        assert resumed == 0 and len(loss) == 3
        for name, crashes in (("mid_epoch", 1), ("epoch_end", 1), ("twice", 2)):
            other = results[f"{kind}_{name}"]
            assert other[1] == crashes, (kind, name, other)
            assert other[0] == digest, (kind, name, "weights differ from the uninterrupted run")
            # The same per-epoch losses (an interrupted epoch's mean includes its first part).
            assert np.allclose(other[2], loss, rtol=1e-5, atol=0), (kind, name, other[2], loss)


def _cli_train(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "musicseq",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--model",
        "gru",
        "--units",
        "16",
        "--embedding-dim",
        "8",
        "--dropout",
        "0.2",
        "--seq-len",
        "32",
        "--batch-size",
        "8",
        "--steps",
        "240",
        "--steps-per-epoch",
        "60",
        "--save-every",
        "7",
        "--seed",
        "2",
        "--deterministic",
        "--quiet",
        "--no-tensorboard",
        *extra,
    ]


@pytest.mark.slow
def test_sigkill_twice_then_resume_matches_an_uninterrupted_run(tmp_path, data_dir):
    data = data_dir / "irish.abc"
    straight = subprocess.run(
        _cli_train(tmp_path / "straight", data),
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert straight.returncode == 0, straight.stderr[-2000:]
    out = tmp_path / "killed"
    state_file = out / "checkpoint" / "state.json"
    resumed_at = []
    for threshold in (30, 130):  # killed in epoch 1, then again in epoch 3
        proc = subprocess.Popen(
            _cli_train(out, data),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and proc.poll() is None:
                if state_file.exists():
                    try:
                        step = json.loads(state_file.read_text())["step"]
                    except (json.JSONDecodeError, KeyError):
                        step = 0
                    if step >= threshold:
                        proc.send_signal(signal.SIGKILL)
                        break
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                proc.kill()
            stdout, _ = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
        if "resuming from" in stdout:
            resumed_at.append(stdout)
    done = subprocess.run(
        _cli_train(out, data), capture_output=True, text=True, timeout=300, env=ENV
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stdout and len(resumed_at) == 1  # the 2nd run resumed too
    digest = lambda text: text.split("weights sha256 ")[-1].strip()  # noqa: E731
    assert digest(done.stdout) == digest(straight.stdout)
    history = json.loads((out / "history.json").read_text())
    assert history["steps"] == 240 and len(history["loss"]) == 4


def _tiny(data, out, **options):
    config = TrainConfig(seed=0, tensorboard=False, seq_len=32, batch_size=4, **options)
    model = ModelConfig(kind="gru", units=16, embedding_dim=8, vocab_size=1)
    messages = []
    return train(data, out, model, config, log=messages.append, verbose=0), messages


def test_checkpoints_are_written_once_per_step(tmp_path, data_dir, monkeypatch):
    from musicseq import train as training

    steps = []
    write = training.Checkpointer.save
    monkeypatch.setattr(
        training.Checkpointer,
        "save",
        lambda self, model, state: (steps.append(state.step), write(self, model, state)),
    )
    _tiny(data_dir / "three.abc", tmp_path / "m", steps=20, steps_per_epoch=10, save_every=5)
    assert steps == [5, 10, 15, 20]  # the epoch ends (10, 20) are not written twice


def test_a_finished_early_stopped_run_is_not_trained_again(tmp_path, data_dir):
    options = dict(epochs=30, steps_per_epoch=5, learning_rate=3.0, clipnorm=None, early_stopping=1)
    first, _ = _tiny(data_dir / "irish.abc", tmp_path / "m", **options)
    assert first["stopped_early"] and len(first["val_loss"]) < 30
    again, messages = _tiny(data_dir / "irish.abc", tmp_path / "m", **options)
    assert any("is complete" in m and "stopped early" in m for m in messages), messages
    assert again["steps"] == first["steps"] and again["weights_sha256"] == first["weights_sha256"]


def test_changed_budget(tmp_path, data_dir):
    data = data_dir / "three.abc"
    first, _ = _tiny(data, tmp_path / "constant", steps=10, steps_per_epoch=5)
    longer, messages = _tiny(data, tmp_path / "constant", steps=20, steps_per_epoch=5)
    assert first["steps"] == 10 and longer["steps"] == 20  # a constant rate: simply extended
    assert any("resuming from" in m for m in messages)
    cosine = dict(lr_schedule="cosine", warmup_steps=2, steps_per_epoch=5)
    _tiny(data, tmp_path / "cosine", steps=10, **cosine)
    with pytest.raises(UserError, match="planned over 10 steps"):
        _tiny(data, tmp_path / "cosine", steps=20, **cosine)


def test_a_checkpoint_from_before_a_new_setting_resumes(tmp_path, data_dir):
    # A run checkpointed by a musicseq without TrainConfig.tokens (its settings lack the
    # field) resumes when the field holds its default; another value is another run.
    data, out = data_dir / "three.abc", tmp_path / "m"
    _tiny(data, out, steps=10, steps_per_epoch=5)
    file = out / "checkpoint" / "checkpoint.npz"
    with np.load(file) as saved:
        arrays = dict(saved)
    state = json.loads(str(arrays["state"]))
    del state["settings"]["train"]["tokens"]
    arrays["state"] = np.asarray(json.dumps(state))
    np.savez(file, **arrays)
    longer, messages = _tiny(data, out, steps=15, steps_per_epoch=5)
    assert longer["steps"] == 15 and any("resuming from" in m for m in messages), messages
    with pytest.raises(UserError, match="other settings"):
        _tiny(data, out, steps=20, steps_per_epoch=5, tokens="abc")


def test_one_budget_at_a_time():
    with pytest.raises(ValueError, match="give one budget"):
        TrainConfig(steps=100, minutes=5.0, lr_schedule="cosine").validate()
    with pytest.raises(ValueError, match="give one budget"):
        TrainConfig(steps=100, epochs=2).validate()


def test_time_budget_with_a_cosine_schedule_estimates_its_steps(tmp_path, data_dir):
    history, _ = _tiny(
        data_dir / "irish.abc",
        tmp_path / "m",
        minutes=0.25,
        steps_per_epoch=40,
        lr_schedule="cosine",
        warmup_steps=5,
    )
    steps, planned = history["steps"], history["planned_steps"]
    assert steps > 40 and 0.5 * steps < planned < 2 * steps, (steps, planned)
    rates = history["learning_rate"]
    assert max(rates) > 1e-3 and rates[-1] < 0.5 * 2e-3, rates  # it decayed over the budget


def test_early_stopping_keeps_the_best_weights(tmp_path, data_dir):
    import tensorflow as tf

    from musicseq.corpus import load_split
    from musicseq.data import encode_stream, eval_dataset
    from musicseq.modeldir import load_model_dir

    data = data_dir / "irish.abc"
    history, _ = _tiny(
        data,
        tmp_path / "m",
        epochs=30,
        steps_per_epoch=5,
        learning_rate=3.0,
        clipnorm=None,
        early_stopping=1,
    )
    best = min(history["val_loss"])
    assert history["val_loss"][-1] > best and history["best_val_loss"] == best
    model, _, vocab = load_model_dir(tmp_path / "m")
    stream = encode_stream(load_split(data, "validation"), vocab)
    total = count = 0.0
    for x, y in eval_dataset(stream, 32, 4):
        nats = tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x))
        total, count = total + float(tf.reduce_sum(nats)), count + int(tf.size(nats))
    assert np.isclose(total / count, best, rtol=1e-4), (total / count, history["val_loss"])
