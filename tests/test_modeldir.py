"""The model directory: its layout, what Keras makes of it, validated loading, and finding
a model by name (also from an installed wheel)."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from musicseq import modeldir
from musicseq.errors import UserError
from musicseq.modeldir import ModelDir, list_models, load_model_dir, resolve, search_path

ROOT = Path(__file__).resolve().parent.parent


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


def _fake_model(path: Path, kind: str = "gru", metrics: dict | None = None, history=None) -> Path:
    """A directory that looks like a model to the search (its musicseq.json), no weights."""
    path.mkdir(parents=True)
    (path / "musicseq.json").write_text(json.dumps({"format": 2, "model": {"kind": kind}}))
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
    if history is not None:
        (path / "history.json").write_text(json.dumps(history))
    return path


def test_a_name_is_looked_up_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env_a, env_b, shipped = tmp_path / "env_a", tmp_path / "env_b", tmp_path / "shipped"
    monkeypatch.setenv(modeldir.MODELS_ENV, f"{env_a}{os.pathsep}{env_b}")
    monkeypatch.setattr(modeldir, "shipped_models_dirs", lambda: [shipped])
    assert search_path() == [Path("models"), env_a, env_b, shipped]
    _fake_model(shipped / "reel")
    _fake_model(env_b / "reel")
    _fake_model(env_a / "jig")
    assert resolve("reel") == env_b / "reel"  # $MUSICSEQ_MODELS before the shipped models
    _fake_model(tmp_path / "models" / "reel")
    assert resolve("reel") == Path("models") / "reel"  # ./models before $MUSICSEQ_MODELS
    _fake_model(tmp_path / "reel")
    assert resolve("reel") == Path("reel")  # an existing path is taken as it is
    assert resolve(tmp_path / "env_a" / "jig") == env_a / "jig"
    (env_a / "air").mkdir()  # not a model: a name never matches it
    with pytest.raises(UserError) as error:
        resolve("air")
    message = str(error.value)
    assert "\n" not in message and "no model named 'air'" in message
    assert message.endswith("known models: jig, reel") and "./models" in message
    with pytest.raises(UserError, match=r"model directory not found: \./jig; known models"):
        resolve("./jig")  # a path, not a name


def test_list_models_reads_kind_size_and_held_out_loss(tmp_path, tiny_model_dir):
    first, second = tmp_path / "first", tmp_path / "second"
    _fake_model(first / "a", "lstm", metrics={"test_nats_per_char": 1.25})
    _fake_model(first / "b", "transformer", history={"val_loss": [1.5, 1.375, 1.4]})
    _fake_model(second / "a", "gru")
    shutil.copytree(tiny_model_dir, second / "tiny")
    (second / "not-a-model").mkdir()
    found = {(info.path.parent.name, info.name): info for info in list_models([first, second])}
    assert set(found) == {("first", "a"), ("first", "b"), ("second", "a"), ("second", "tiny")}
    a, b = found["first", "a"], found["first", "b"]
    assert (a.kind, a.held_out, a.held_out_source, a.shadowed) == ("lstm", 1.25, "test", False)
    assert (b.kind, b.held_out, b.held_out_source) == ("transformer", 1.375, "validation")
    assert found["second", "a"].shadowed and found["second", "a"].held_out is None
    tiny = found["second", "tiny"]
    assert tiny.parameters == ModelDir.load(tiny_model_dir).model.count_params()
    assert tiny.bytes_on_disk == sum(
        f.stat().st_size for f in (second / "tiny").rglob("*") if f.is_file()
    )
    assert a.parameters is None  # no weights file: shown as "-"


def test_the_shipped_models_are_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(modeldir.MODELS_ENV, raising=False)
    for name in ("folk-transformer", "folk-gru"):
        assert resolve(name) == ROOT / "saved_models" / name
    names = {info.name: info for info in list_models()}
    assert names["folk-gru"].kind == "gru" and names["folk-transformer"].kind == "transformer"
    metrics = json.loads((ROOT / "saved_models" / "folk-gru" / "metrics.json").read_text())
    assert names["folk-gru"].parameters == metrics["parameters"]
    assert names["folk-gru"].held_out == metrics["test_nats_per_char"]


def test_the_wheel_carries_every_package_and_the_shipped_models():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {
        ".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "musicseq").rglob("__init__.py")
    }
    assert packages | {"musicseq.saved_models"} == set(setup["packages"])
    assert setup["package-dir"] == {"musicseq.saved_models": "saved_models"}
    data = setup["package-data"]
    assert "form_prior.json" in data["musicseq.notation"]
    shipped = ROOT / "saved_models"
    for name in ("folk-transformer", "folk-gru"):
        carried = {
            p.name for pattern in data["musicseq.saved_models"] for p in shipped.glob(pattern)
        }
        assert {"model.keras", "musicseq.json", "vocab.json"} <= carried
        assert (shipped / name / "model.keras").is_file()


@pytest.mark.slow
def test_an_installed_wheel_finds_its_models(tmp_path):
    """Build the wheel from a copy of the sources, unpack it as pip would install it, and ask
    the unpacked package (not the checkout) for its models from an unrelated directory."""
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "savedmodel", "evaluation", "checkpoint", "logs")
    for name in ("musicseq", "saved_models"):
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("musicseq-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for name in ("folk-transformer", "folk-gru"):
        assert f"musicseq/saved_models/{name}/model.keras" in names
    assert "musicseq/notation/form_prior.json" in names
    assert not any("savedmodel" in n for n in names)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != modeldir.MODELS_ENV}
    env["PYTHONPATH"] = str(tmp_path / "site")  # ahead of the checkout's editable install
    done = subprocess.run(
        [sys.executable, "-m", "musicseq", "models"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=elsewhere,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    site = str(tmp_path / "site" / "musicseq" / "saved_models")
    for name in ("folk-transformer", "folk-gru"):
        assert f"{site}/{name}" in done.stdout, done.stdout


def test_a_bfloat16_model_computes_in_float32_where_the_cpu_has_no_bfloat16(
    bfloat16_model_dir, monkeypatch
):
    # The shipped default trains under mixed bfloat16; on a CPU without bfloat16 instructions
    # (and no GPU) the same weights are loaded into a float32 model, which scores the same.
    import numpy as np

    from musicseq.config import SampleConfig
    from musicseq.evaluate import held_out_loss
    from musicseq.sampling import generate

    out = bfloat16_model_dir
    tune = ["X:1\nT:a\nM:4/4\nK:G\nABcd|dcBA|GABc|d4|]\n"]
    loaded = {}
    for has_bf16 in (True, False):
        monkeypatch.setattr(modeldir, "cpu_has_bfloat16", lambda has_bf16=has_bf16: has_bf16)
        loaded[has_bf16] = load_model_dir(out)
    policies = {k: {layer.dtype_policy.name for layer in m[0].layers} for k, m in loaded.items()}
    assert "mixed_bfloat16" in policies[True] and policies[False] == {"float32"}
    for a, b in zip(loaded[True][0].get_weights(), loaded[False][0].get_weights()):
        np.testing.assert_array_equal(a, b)
    scores = [held_out_loss(*loaded[k], tune)["nats_per_char"] for k in (True, False)]
    assert abs(scores[0] - scores[1]) < 0.02, scores
    assert len(generate(*loaded[False], SampleConfig(num=2, max_len=60, seed=1))) == 2
