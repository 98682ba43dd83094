"""tf.distribute and fault tolerance: 2-replica Mirrored vs single device, 2 local workers,
SIGKILL and resume. Each runs in subprocesses so this process keeps its single CPU device."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))

MIRRORED = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from musicseq.config import ModelConfig, TrainConfig
    from musicseq.train import train
    data, out = sys.argv[1], sys.argv[2]
    model = ModelConfig(kind="lstm", units=16, embedding_dim=8, vocab_size=1)
    runs = {}
    for name, strategy, batch in (("mirrored", "mirrored", 4), ("single", "default", 8)):
        cfg = TrainConfig(seq_len=32, batch_size=batch, steps=12, steps_per_epoch=4, seed=3,
                          strategy=strategy, tensorboard=False)
        runs[name] = train(data, f"{out}/{name}", model, cfg, log=lambda m: print(m, file=sys.stderr), verbose=0)
    print(json.dumps({k: {"loss": v["loss"], "val_loss": v["val_loss"]} for k, v in runs.items()}))
    """
)


@pytest.mark.slow
def test_mirrored_two_replicas_matches_single_device(tmp_path, data_dir):
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(data_dir / "irish.abc"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MirroredStrategy with 2 replica(s): batch 4 per replica, 8 global" in done.stderr
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("loss", "val_loss"):
        for a, b in zip(runs["mirrored"][key], runs["single"][key]):
            assert abs(a - b) < 1e-5, (key, runs)
    assert runs["single"]["loss"][-1] < runs["single"]["loss"][0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_local_workers_end_with_identical_weights(tmp_path, data_dir):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    try:
        for index in range(2):
            env = dict(
                ENV,
                TF_CONFIG=json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                ),
            )
            args = [
                sys.executable,
                "-m",
                "musicseq",
                "train",
                "--strategy",
                "multi_worker",
                "--data",
                str(data_dir / "three.abc"),
                "--out",
                str(tmp_path / "model"),
                "--steps",
                "6",
                "--units",
                "16",
                "--seq-len",
                "32",
                "--batch-size",
                "4",
                "--quiet",
                "--no-tensorboard",
            ]
            procs.append(
                subprocess.Popen(
                    args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
                )
            )
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    digests = [out.split("weights sha256 ")[-1].strip() for out, _ in outputs]
    assert len(digests[0]) == 16 and digests[0] == digests[1]
    assert "2 replica(s): batch 4 per replica, 8 global" in outputs[0][0]
    assert (tmp_path / "model" / "model.keras").is_file()  # the chief wrote the model directory


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_from_the_checkpoint(tmp_path, data_dir):
    out = tmp_path / "model"
    args = [
        sys.executable,
        "-m",
        "musicseq",
        "train",
        "--data",
        str(data_dir / "irish.abc"),
        "--out",
        str(out),
        "--steps",
        "600",
        "--steps-per-epoch",
        "200",
        "--save-every",
        "25",
        "--units",
        "64",
        "--seq-len",
        "64",
        "--batch-size",
        "16",
        "--quiet",
        "--seed",
        "1",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    state_file = out / "checkpoint" / "state.json"
    killed_after = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if state_file.exists():
                step = json.loads(state_file.read_text())["step"]
                if step >= 250:  # mid-epoch 2: an epoch-end checkpoint and step checkpoints exist
                    proc.send_signal(signal.SIGKILL)
                    killed_after = step
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert killed_after is not None, "training finished or never checkpointed before the kill"
    assert not (out / "model.keras").exists()
    saved = json.loads(state_file.read_text())
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from {out / 'checkpoint'} at step {saved['step']}" in done.stdout
    history = json.loads((out / "history.json").read_text())
    assert (
        history["steps"] == 600
    )  # exactly the budget: the interrupted epoch was finished, not replayed
    assert len(history["loss"]) == 3
    vocab_size = len(json.loads((out / "vocab.json").read_text())["chars"]) + 3
    assert history["loss"][1] < 0.75 * math.log(vocab_size)  # continued, not restarted from ~ln(V)
    assert history["loss"][:1] == saved["history"]["loss"][:1]  # epoch 1 kept from before the kill


def test_xla_auto_is_on_for_fused_recurrent_layers_and_a_float32_transformer():
    import keras

    from musicseq.config import ModelConfig, TrainConfig
    from musicseq.distribute import use_xla

    auto = TrainConfig()

    def model(kind, **kw):
        return ModelConfig(kind=kind, vocab_size=20, units=16, **kw)

    assert use_xla(auto, model("lstm")) and use_xla(auto, model("gru"))
    assert not use_xla(auto, model("lstm", fused=False))
    assert not use_xla(auto, model("simple_rnn")) and not use_xla(auto, None)
    assert use_xla(auto, model("transformer", num_heads=2, context=16))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:  # measured slower under XLA on the CPU: off
        assert not use_xla(auto, model("transformer", num_heads=2, context=16))
        assert use_xla(auto, model("lstm"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    off = TrainConfig(jit_compile="off")
    assert not use_xla(off, model("lstm"))
    assert use_xla(TrainConfig(jit_compile="on"), model("simple_rnn"))
