"""The pretrained models shipped in saved_models/ (issue: a model that `make demo` uses).

folk-transformer is the default (`make demo`, `make train`); folk-gru is the smaller, faster one.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["folk-transformer", "folk-gru"]


@pytest.fixture(scope="module", params=MODELS)
def shipped(request):
    from musicseq.modeldir import load_model_dir

    return ROOT / "saved_models" / request.param, load_model_dir(
        ROOT / "saved_models" / request.param
    )


@pytest.mark.parametrize("name", MODELS)
def test_shipped_files_are_all_there_and_small(name):
    model_dir = ROOT / "saved_models" / name
    names = {p.name for p in model_dir.iterdir()}
    assert {
        "model.keras",
        "musicseq.json",
        "vocab.json",
        "history.json",
        "loss.png",
        "metrics.json",
        "savedmodel",
        "MODEL_CARD.md",
    } <= names
    for path in model_dir.rglob("*"):
        if path.is_file():
            assert path.stat().st_size < 25 * 2**20, path
    assert not (model_dir / "checkpoint").exists() and not (model_dir / "logs").exists()
    config = json.loads((model_dir / "musicseq.json").read_text())
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert (
        metrics["command"].startswith("musicseq train ")
        and f"--out saved_models/{name} " in metrics["command"]
    )
    assert metrics["train_config"] == config["train"] and metrics["training_steps"] > 0


@pytest.fixture(scope="module")
def default_test_split():
    """The test split of the default corpus, built in memory from music21's tunebooks."""
    from musicseq import corpus

    return corpus.build_corpus(corpus.collection_files(corpus.DEFAULT_COLLECTIONS)).texts("test")


@pytest.mark.slow
def test_recorded_held_out_loss_reproduces(shipped, default_test_split):
    model_dir, shipped = shipped
    from musicseq.evaluate import held_out_loss

    recorded = json.loads((model_dir / "metrics.json").read_text())["test_nats_per_char"]
    measured = held_out_loss(*shipped, default_test_split)["nats_per_char"]
    assert abs(measured - recorded) < 0.01


def test_eight_tunes_with_a_fixed_seed_all_convert_to_midi(shipped, tmp_path):
    _, shipped = shipped
    from musicseq.config import SampleConfig
    from musicseq.render import abc_to_midi, midi_info
    from musicseq.sampling import generate_constrained

    tunes = generate_constrained(
        *shipped, SampleConfig(num=8, seed=7, temperature=0.9, max_len=1200)
    )
    for index, text in enumerate(tunes):
        abc = tmp_path / f"t{index}.abc"
        abc.write_text(text)
        abc_to_midi(abc, tmp_path / f"t{index}.mid")
        assert midi_info(tmp_path / f"t{index}.mid").notes > 0


@pytest.mark.parametrize("name", MODELS)
def test_savedmodel_answers_without_musicseq(name):
    code = textwrap.dedent(
        """
        import sys
        sys.modules["musicseq"] = None
        import tensorflow as tf
        m = tf.saved_model.load(sys.argv[1])
        out = m.signatures["generate"](prime=tf.constant("X:1\\n"), num_tunes=tf.constant(2),
            max_len=tf.constant(300), temperature=tf.constant(0.9), top_k=tf.constant(0),
            top_p=tf.constant(1.0), seed=tf.constant(3), constrain=tf.constant(True),
            meter=tf.constant("6/8"), key=tf.constant("D"), form=tf.constant("AABB"),
            bars=tf.constant(8), cadence=tf.constant("tonic"),
            repeat_bias=tf.constant(1.5))["tunes"].numpy()
        assert len(out) == 2 and all(t.startswith(b"X:1\\n") for t in out)
        assert all(b"\\nM:6/8\\n" in t and b"\\nK:D\\n" in t and b":|" in t for t in out)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "saved_models" / name / "savedmodel")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
