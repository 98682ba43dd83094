"""The model directory: its layout, what Keras makes of it, and validated loading."""

import json
import shutil

import pytest

from musicseq.errors import UserError
from musicseq.modeldir import ModelDir, load_model_dir


def test_keras_does_not_mistake_a_model_directory_for_a_keras_file(tiny_model_dir):
    import keras

    # A directory holding config.json is an unzipped .keras file to Keras (it raised
    # UnboundLocalError); musicseq.json is not, so Keras says what it does not support.
    with pytest.raises(ValueError, match="File format not supported"):
        keras.saving.load_model(tiny_model_dir)
    import musicseq.models  # noqa: F401  (registers musicseq's layers)

    model = keras.saving.load_model(tiny_model_dir / "model.keras")
    assert model.output_shape[-1] == ModelDir.load(tiny_model_dir).config.vocab_size


def test_a_format_1_directory_still_loads(tiny_model_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_model_dir, old)
    meta = json.loads((old / "musicseq.json").read_text())
    (old / "musicseq.json").unlink()
    (old / "config.json").write_text(json.dumps({**meta, "format": 1}))
    loaded = ModelDir.load(old)
    assert loaded.meta["format"] == 1 and loaded.train_config.seq_len == 32


def test_vocabulary_is_checked_against_the_model_output(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    vocab = json.loads((broken / "vocab.json").read_text())
    vocab["chars"].append("\u00a7")
    (broken / "vocab.json").write_text(json.dumps(vocab))
    meta = json.loads((broken / "musicseq.json").read_text())
    meta["model"]["vocab_size"] += 1  # consistent with vocab.json, not with the weights
    (broken / "musicseq.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="the model predicts"):
        load_model_dir(broken)
