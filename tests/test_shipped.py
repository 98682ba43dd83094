"""The pretrained model shipped in saved_models/folk-gru (issue: a model that `make demo` uses)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parent.parent / "saved_models" / "folk-gru"


@pytest.fixture(scope="module")
def shipped():
    from musicseq.train import load_model_dir

    return load_model_dir(SHIPPED)


def test_shipped_files_are_all_there_and_small():
    names = {p.name for p in SHIPPED.iterdir()}
    assert {"model.keras", "config.json", "vocab.json", "history.json", "loss.png", "metrics.json",
            "savedmodel", "MODEL_CARD.md"} <= names  # fmt: skip
    for path in SHIPPED.rglob("*"):
        if path.is_file():
            assert path.stat().st_size < 25 * 2**20, path


@pytest.mark.slow
def test_recorded_held_out_loss_reproduces(shipped, tmp_path):
    from musicseq import corpus
    from musicseq.evaluate import held_out_loss

    built = corpus.build_corpus(
        corpus.collection_files(corpus.DEFAULT_COLLECTIONS)
    )  # the default corpus
    recorded = json.loads((SHIPPED / "metrics.json").read_text())["test_nats_per_char"]
    measured = held_out_loss(*shipped, built.texts("test"))["nats_per_char"]
    assert abs(measured - recorded) < 0.01


def test_eight_tunes_with_a_fixed_seed_all_convert_to_midi(shipped, tmp_path):
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


def test_savedmodel_answers_without_musicseq():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["musicseq"] = None
        import tensorflow as tf
        m = tf.saved_model.load(sys.argv[1])
        out = m.signatures["generate"](prime=tf.constant("X:1\\n"), num_tunes=tf.constant(2),
            max_len=tf.constant(300), temperature=tf.constant(0.9), top_k=tf.constant(0),
            top_p=tf.constant(1.0), seed=tf.constant(3))["tunes"].numpy()
        assert len(out) == 2 and all(t.startswith(b"X:1\\n") for t in out)
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code, str(SHIPPED / "savedmodel")], capture_output=True,
                          text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
