import pytest

from musicseq.config import SampleConfig
from musicseq.sampling import generate
from musicseq.train import load_model_dir


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model_dir(tiny_model_dir)


def test_same_seed_same_tunes_different_seed_different(loaded):
    config = SampleConfig(num=3, max_len=120, seed=5, prime="X:1\n")
    first = generate(*loaded, config)
    assert first == generate(*loaded, config)
    other = generate(*loaded, SampleConfig(num=3, max_len=120, seed=6, prime="X:1\n"))
    assert first != other
    assert len(first) == 3 and all(t.startswith("X:1\n") for t in first)
    assert all(len(t) <= len("X:1\n") + 120 for t in first)


def test_streams_stop_at_end_of_tune(loaded):
    tunes = generate(*loaded, SampleConfig(num=8, max_len=2000, seed=1, temperature=0.5))
    # a model trained on tunes separated by end-of-tune learns to stop well before 2000
    assert any(len(t) < 2000 for t in tunes)


def test_bad_arguments_rejected_before_model_work(loaded):
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        generate(*loaded, SampleConfig(prime="X:1\n\u00e9"))
    with pytest.raises(ValueError, match="temperature"):
        generate(*loaded, SampleConfig(temperature=0.0))
