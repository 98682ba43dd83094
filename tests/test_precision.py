"""Mixed precision: every model kind trains, generates (free; constrained for one kind per
precision), evaluates and exports under mixed_float16 and mixed_bfloat16 (TensorFlow runs
both on the CPU), and the custom multi-worker step scales the loss. Each precision runs in a
subprocess: the dtype policy and the multi-worker strategy are process-wide."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))

EVERY_KIND = textwrap.dedent(
    """
    import json, math, sys
    import tensorflow as tf
    from musicseq.config import MODEL_KINDS, ModelConfig, SampleConfig, TrainConfig
    from musicseq.evaluate import held_out_loss
    from musicseq.export import call_generate, export_savedmodel
    from musicseq.modeldir import load_model_dir
    from musicseq.sampling import generate, generate_constrained
    from musicseq.train import train

    data, out, precision = sys.argv[1:4]
    constrained_kind = {"mixed_float16": "transformer", "mixed_bfloat16": "lstm"}[precision]
    results = {}
    for kind in MODEL_KINDS:
        model_config = ModelConfig(kind=kind, units=16, embedding_dim=8, vocab_size=1,
                                   num_heads=2, context=32, dropout=0.1)
        history = train(data, f"{out}/{kind}", model_config,
                        TrainConfig(seq_len=32, batch_size=4, steps=4, precision=precision,
                                    tensorboard=False), log=lambda m: None, verbose=0)
        model, config, vocab = load_model_dir(f"{out}/{kind}")
        policies = sorted({layer.dtype_policy.name for layer in model.layers})
        sample = SampleConfig(num=2, max_len=80, seed=1)
        free = generate(model, config, vocab, sample)
        # The processors see float32 logits whatever the kind (the loop casts them): one
        # kind per precision decodes constrained (a trace of the grammar loop per model).
        constrained = free if kind != constrained_kind else generate_constrained(
            model, config, vocab, sample)
        loss = held_out_loss(model, config, vocab, ["X:1\\nM:4/4\\nK:G\\nABcd|\\n"])
        export_savedmodel(model, config, vocab, f"{out}/{kind}/sm", grammar=False)
        served = call_generate(tf.saved_model.load(f"{out}/{kind}/sm"), sample)
        results[kind] = {"train_loss": history["loss"][-1], "policies": policies,
                         "free": len(free), "constrained": len(constrained),
                         "held_out": loss["nats_per_char"], "served": len(served)}
    print(json.dumps(results))
    """
)

CUSTOM_STEP = textwrap.dedent(
    """
    import json, sys
    from musicseq.config import ModelConfig, TrainConfig
    from musicseq.train import train
    data, out = sys.argv[1:3]
    history = train(data, out, ModelConfig(kind="gru", units=16, embedding_dim=8, vocab_size=1),
                    TrainConfig(seq_len=32, batch_size=4, steps=6, steps_per_epoch=3,
                                strategy="multi_worker", precision="mixed_float16",
                                tensorboard=False), log=lambda m: print(m, file=sys.stderr),
                    verbose=0)
    print(json.dumps({"loss": history["loss"], "steps": history["steps"]}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_every_kind_trains_generates_evaluates_and_exports(precision, tmp_path, data_dir):
    done = subprocess.run(
        [sys.executable, "-c", EVERY_KIND, str(data_dir / "irish.abc"), str(tmp_path), precision],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(results) == sorted(["rnn_scratch", "simple_rnn", "lstm", "gru", "transformer"])
    from musicseq.modeldir import cpu_has_bfloat16

    # The layers computed in it; a bfloat16 model loads into float32 on a CPU without bfloat16.
    loads_as = "float32" if precision == "mixed_bfloat16" and not cpu_has_bfloat16() else precision
    for kind, result in results.items():
        assert loads_as in result["policies"], (kind, result)
        assert 0 < result["train_loss"] < 10 and 0 < result["held_out"] < 10, (kind, result)
        assert result["free"] == result["constrained"] == result["served"] == 2, (kind, result)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_custom_multi_worker_step_scales_the_loss_under_float16(tmp_path, data_dir):
    config = {
        "cluster": {"worker": [f"127.0.0.1:{_free_port()}"]},
        "task": {"type": "worker", "index": 0},
    }
    done = subprocess.run(
        [sys.executable, "-c", CUSTOM_STEP, str(data_dir / "irish.abc"), str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(ENV, TF_CONFIG=json.dumps(config)),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CollectiveAllReduceStrategy with 1 replica" in done.stderr, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["steps"] == 6 and all(0 < loss < 10 for loss in result["loss"]), result
