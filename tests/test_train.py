import json

import numpy as np
import pytest

from musicseq.config import ModelConfig, TrainConfig
from musicseq.errors import UserError
from musicseq.modeldir import load_model_dir
from musicseq.train import train


def test_tiny_training_lowers_the_loss(tmp_path, data_dir):
    history = train(
        data_dir / "three.abc",
        tmp_path / "m",
        ModelConfig(kind="lstm", units=32, embedding_dim=16, vocab_size=1),
        TrainConfig(
            seq_len=32, batch_size=8, steps=40, steps_per_epoch=10, seed=0, learning_rate=1e-2
        ),
        log=lambda _m: None,
        verbose=0,
    )
    assert history["loss"][-1] < history["loss"][0] - 0.3
    assert history["steps"] == 40


def test_model_directory_contents(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"model.keras", "musicseq.json", "vocab.json", "history.json", "loss.png"} <= names
    config = json.loads((tiny_model_dir / "musicseq.json").read_text())
    assert config["model"]["kind"] == "lstm" and config["train"]["clipnorm"] == 1.0
    assert not [n for n in names if ".tmp" in n]


def test_model_file_keeps_the_trained_weights_but_no_optimizer_state(tiny_model_dir, tmp_path):
    import zipfile

    import h5py

    from musicseq.modeldir import weights_digest

    with zipfile.ZipFile(tiny_model_dir / "model.keras") as archive:
        archive.extract("model.weights.h5", tmp_path)
    with h5py.File(tmp_path / "model.weights.h5") as weights:
        assert "layers" in weights and "optimizer" not in weights
    model, _, _ = load_model_dir(tiny_model_dir)
    history = json.loads((tiny_model_dir / "history.json").read_text())
    assert weights_digest(model) == history["weights_sha256"]


def test_save_load_gives_identical_logits(tiny_model_dir):
    import keras

    model, config, vocab = load_model_dir(tiny_model_dir)
    again, _, _ = load_model_dir(tiny_model_dir)
    ids = np.array([vocab.encode("X:1\nK:G\nABcd|")], dtype=np.int32)
    np.testing.assert_array_equal(model(ids).numpy(), again(ids).numpy())
    assert isinstance(model, keras.Model) and config.vocab_size == len(vocab)


def test_load_rejects_incomplete_or_mismatched_dirs(tiny_model_dir, tmp_path):
    import shutil

    with pytest.raises(UserError, match="not found"):
        load_model_dir(tmp_path / "missing")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "vocab.json").unlink()
    with pytest.raises(UserError, match="vocab.json is missing"):
        load_model_dir(broken)
    shutil.copy(tiny_model_dir / "vocab.json", broken / "vocab.json")
    config = json.loads((broken / "musicseq.json").read_text())
    config["model"]["vocab_size"] += 1
    (broken / "musicseq.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="tokens but the model expects"):
        load_model_dir(broken)
    config["format"] = 99
    (broken / "musicseq.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="incompatible"):
        load_model_dir(broken)


def _train(data, out, kind, **train_options):
    """A tiny, silent training run (16 units, seed 0, no TensorBoard)."""
    config = TrainConfig(seed=0, tensorboard=False, **train_options)
    model = ModelConfig(kind=kind, units=16, embedding_dim=8, vocab_size=1)
    return train(data, out, model, config, log=lambda _m: None, verbose=0)


def test_tensorboard_logs_and_checkpoint_are_written(tiny_model_dir):
    events = list((tiny_model_dir / "logs").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event files"
    assert (tiny_model_dir / "checkpoint" / "state.json").is_file()


def test_cosine_schedule_warms_up_then_decays(tmp_path, data_dir):
    history = _train(
        data_dir / "three.abc",
        tmp_path / "m",
        "gru",
        seq_len=32,
        batch_size=4,
        steps=40,
        steps_per_epoch=5,
        lr_schedule="cosine",
        warmup_steps=10,
    )
    lr = history["learning_rate"]
    assert lr[0] < lr[1] and lr[-1] < lr[2] and max(lr) <= 2e-3 + 1e-9


def test_rerun_of_a_finished_run_does_not_train_again(tmp_path, data_dir):
    args = (
        data_dir / "three.abc",
        tmp_path / "m",
        ModelConfig(kind="lstm", units=8, embedding_dim=4, vocab_size=1),
        TrainConfig(seq_len=16, batch_size=4, steps=6, seed=0, tensorboard=False),
    )
    first = train(*args, log=lambda _m: None, verbose=0)
    again = train(*args, log=lambda _m: None, verbose=0)
    assert (
        again["steps"] == first["steps"] == 6 and again["weights_sha256"] == first["weights_sha256"]
    )
    fresh = train(*args, log=lambda _m: None, verbose=0, restart=True)
    assert (
        fresh["steps"] == 6 and fresh["weights_sha256"] == first["weights_sha256"]
    )  # seeded: same run


def test_plan_steps_respects_steps_per_epoch_in_minutes_mode():
    from musicseq.train import plan_steps

    assert plan_steps(TrainConfig(minutes=1.0, steps_per_epoch=500), 10_000) == (1_000_000, 500)
    assert plan_steps(TrainConfig(minutes=1.0), 10_000) == (1_000_000, 200)
    assert plan_steps(TrainConfig(steps=1000, steps_per_epoch=300), 10_000) == (4, 250)


def test_fine_tuning_starts_from_the_base_model(tmp_path, data_dir, tiny_model_dir):
    base = load_model_dir(tiny_model_dir)
    history = train(
        data_dir / "three.abc",
        tmp_path / "tuned",
        None,  # the base model's settings are kept
        TrainConfig(steps=2, batch_size=4, seq_len=32, learning_rate=1e-6, tensorboard=False),
        init_from=tiny_model_dir,
        log=lambda _m: None,
        verbose=0,
    )
    assert history["steps"] == 2
    tuned = load_model_dir(tmp_path / "tuned")
    assert tuned[1] == base[1] and tuned[2] == base[2]  # config and vocabulary
    for before, after in zip(base[0].get_weights(), tuned[0].get_weights()):
        np.testing.assert_allclose(before, after, atol=1e-4)  # two tiny steps from the base
    with pytest.raises(ValueError, match="model_config, or init_from"):
        train(data_dir / "three.abc", tmp_path / "x", None, TrainConfig(steps=1))


def test_cadence_weight_weighs_the_loss_in_both_train_steps(tmp_path, data_dir):
    import keras
    import tensorflow as tf

    from musicseq.models import build_model
    from musicseq.train import _custom_step, compile_model

    # The custom (multi-worker) step: the weighted mean of each window's nats, then the mean
    # over windows.
    config = ModelConfig(kind="gru", units=16, embedding_dim=8, vocab_size=12)
    train_config = TrainConfig(seq_len=8, batch_size=2, steps=1)
    model = build_model(config)
    compile_model(model, train_config, 1, config)
    rng = np.random.default_rng(0)
    x = rng.integers(4, 12, (2, 8)).astype(np.int32)
    y = rng.integers(4, 12, (2, 8)).astype(np.int32)
    w = rng.uniform(0.5, 3, (2, 8)).astype(np.float32)
    nats = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(y, model(x))
    expected = float(np.mean(np.mean(np.asarray(nats) * w, axis=-1)))
    step, _ = _custom_step(tf.distribute.get_strategy(), model)
    weighted = float(step(iter(tf.data.Dataset.from_tensors((x, y, w)))))
    assert weighted == pytest.approx(expected, rel=1e-4)
    assert abs(weighted - float(np.mean(nats))) > 1e-3  # the weights mattered

    # `fit`: a weighted run logs its share and trains on other losses than an unweighted one.
    def run(weight, out):
        logged = []
        history = train(
            data_dir / "three.abc",
            out,
            ModelConfig(kind="gru", units=16, embedding_dim=8, vocab_size=1),
            TrainConfig(seq_len=32, batch_size=4, steps=3, seed=0, cadence_weight=weight),
            log=logged.append,
            verbose=0,
        )
        return history, logged

    plain, plain_log = run(1.0, tmp_path / "plain")
    weighted_run, log = run(5.0, tmp_path / "weighted")
    assert not any("cadence weight" in m for m in plain_log)
    assert any(m.startswith("cadence weight 5 on the last bar of each part (") for m in log), log
    assert weighted_run["loss"][0] != pytest.approx(plain["loss"][0], abs=1e-4)
    with pytest.raises(ValueError, match="cadence weight"):
        TrainConfig(cadence_weight=0.5).validate()
    with pytest.raises(ValueError, match="character model"):
        TrainConfig(cadence_weight=2, tokens="abc").validate()
