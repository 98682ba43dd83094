import numpy as np
import pytest

from musicseq.config import SampleConfig
from musicseq.modeldir import load_model_dir
from musicseq.notation import make_header, parse_tune
from musicseq.sampling import generate, mask_reserved, top_k_filter, top_p_filter


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
    for bad in (
        dict(temperature=0.0),
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(top_k=-1),
        dict(max_len=0),
    ):
        with pytest.raises(ValueError):
            generate(*loaded, SampleConfig(**bad))


def test_top_k_keeps_k_largest():
    import tensorflow as tf

    logits = tf.constant([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = top_k_filter(logits, tf.constant(2)).numpy()[0]
    assert np.isfinite(out).tolist() == [False, True, False, True, False]
    assert np.isfinite(top_k_filter(logits, tf.constant(0)).numpy()).all()


def test_top_p_keeps_smallest_nucleus():
    import tensorflow as tf

    probs = np.array([[0.5, 0.3, 0.15, 0.05]])
    logits = tf.constant(np.log(probs), tf.float32)
    keep = lambda p: np.isfinite(top_p_filter(logits, tf.constant(p)).numpy()[0]).tolist()  # noqa: E731
    assert keep(0.5) == [True, False, False, False]
    assert keep(0.79) == [True, True, False, False]
    assert keep(0.81) == [True, True, True, False]
    assert keep(1.0) == [True, True, True, True]


def test_reserved_tokens_masked():
    import tensorflow as tf

    out = mask_reserved(tf.zeros([1, 6])).numpy()[0]
    assert np.isinf(out[:2]).all() and np.isfinite(out[2:]).all()  # pad, unk banned; eot allowed


def test_header_prime_is_valid_abc():
    header = make_header("6/8", "Dmix", "Test Jig")
    tune = parse_tune(header + "ABA|\n")
    assert tune.get("M") == "6/8" and tune.key == "Dmix" and tune.get("L") == "1/8"
    for meter, key in (("seven", "D"), ("6/8", "H#"), ("6/8", "Dxyz")):
        with pytest.raises(ValueError):
            make_header(meter, key)


def test_top_k_one_is_greedy_and_seed_independent(loaded):
    a = generate(*loaded, SampleConfig(num=2, max_len=60, top_k=1, seed=1))
    b = generate(*loaded, SampleConfig(num=2, max_len=60, top_k=1, seed=2))
    assert a == b and a[0] == a[1]
