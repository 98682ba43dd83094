import numpy as np
import pytest

from musicseq.data import encode_stream, eval_dataset, training_dataset
from musicseq.errors import UserError
from musicseq.vocab import EOT, Vocab


def _stream():
    texts = [f"X:{i}\nK:G\n" + "ABcd|" * (i + 3) + "\n" for i in range(20)]
    vocab = Vocab.from_texts(texts)
    return encode_stream(texts, vocab), vocab


def test_shift_invariant_and_shapes():
    stream, _ = _stream()
    x, y = next(iter(training_dataset(stream, seq_len=16, batch_size=4, seed=0)))
    assert x.shape == (4, 16) and y.shape == (4, 16)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])


def test_windows_are_contiguous_stream_slices():
    stream, _ = _stream()
    text = stream.tobytes()
    for x, y in training_dataset(stream, seq_len=16, batch_size=4, seed=0).take(5):
        for row_x, row_y in zip(x.numpy(), y.numpy()):
            window = np.concatenate([row_x, row_y[-1:]]).astype(np.int32)
            assert window.tobytes() in text


def test_tunes_are_separated_by_end_of_tune():
    stream, vocab = _stream()
    assert stream[0] == EOT and stream[-1] == EOT
    x_id = vocab.encode("X")[0]
    starts = np.where(stream[1:] == x_id)[0] + 1
    assert all(stream[s - 1] == EOT for s in starts)  # every tune begins right after EOT


def test_eval_dataset_covers_stream_in_order():
    stream, _ = _stream()
    xs = np.concatenate([x.numpy().ravel() for x, _ in eval_dataset(stream, 16, 4)])
    np.testing.assert_array_equal(xs, stream[: len(xs)])


def test_seeded_order_is_reproducible():
    stream, _ = _stream()
    a = [x.numpy() for x, _ in training_dataset(stream, 16, 4, seed=3).take(3)]
    b = [x.numpy() for x, _ in training_dataset(stream, 16, 4, seed=3).take(3)]
    np.testing.assert_array_equal(a, b)


def test_too_short_data_is_a_user_error():
    stream, _ = _stream()
    with pytest.raises(UserError):
        training_dataset(stream[:10], seq_len=16, batch_size=2, seed=0)


def test_cadence_weights_follow_the_targets():
    from musicseq.data import cadence_weight_stream
    from musicseq.notation.form import cadence_spans

    texts = [f"X:{i}\nM:4/4\nL:1/8\nK:G\n|:" + "ABcd ABcd|" * (i + 3) + "G8:|\n" for i in range(20)]
    vocab = Vocab.from_texts(texts)
    stream = encode_stream(texts, vocab)
    weights = cadence_weight_stream(texts, 4.0)
    assert weights.shape == stream.shape and abs(weights.mean() - 1) < 1e-5
    # Weighted exactly where the spans are (each tune's last bar, 'G8:|'), 4x the others.
    high = weights > weights.min()
    assert high.sum() == sum(len(text[a:b]) for text in texts for a, b in cadence_spans(text))
    assert high.sum() == 4 * len(texts)
    np.testing.assert_allclose(weights[high] / weights.min(), 4.0, rtol=1e-5)
    assert "".join(vocab.decode(stream[high], stop_at_eot=False)) == "G8:|" * len(texts)
    # The pipeline gives each target its own weight: weights that are the ids themselves
    # come out equal to the targets.
    as_ids = stream.astype(np.float32)
    for _, y, w in training_dataset(stream, 16, 4, seed=0, weights=as_ids).take(3):
        np.testing.assert_array_equal(w.numpy(), y.numpy().astype(np.float32))
    with pytest.raises(ValueError, match="weights"):
        training_dataset(stream, 16, 4, seed=0, weights=as_ids[:-1])
