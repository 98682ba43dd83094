"""tf.data pipelines of ``(x, y)`` next-character pairs.

Tunes are joined into one id stream, each tune preceded by the end-of-tune token
(``EOT t1 EOT t2 EOT …``), so a window that crosses from one tune into the next always has
``EOT`` between them and the model learns where tunes start and stop. Target ``y`` is the
next character: ``x[:, 1:] == y[:, :-1]``.
"""

from __future__ import annotations

import numpy as np

from musicseq.errors import UserError
from musicseq.vocab import EOT, PAD, Vocab


def _without_autotune(ds):
    # tf.data's autotuning thread can hold the iterator's teardown for up to ~5 s (measured:
    # the end of a `fit` call waited 5.05 s in about half of the runs, idle, in
    # ~RootDataset::Iterator); the pipeline is far faster than any model step, so fixed
    # buffer sizes lose nothing (docs/benchmarks.md, training section).
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def encode_stream(texts: list[str], vocab: Vocab) -> np.ndarray:
    """``EOT t1 EOT t2 … EOT`` as int32 ids (a metrical model's stream:
    :func:`musicseq.metrical.pack_stream`; its targets are ``ids % len(vocab)``, which
    :func:`training_dataset` and :func:`eval_dataset` take as ``vocab_size``)."""
    parts: list[int] = []
    for text in texts:
        parts.append(EOT)
        parts.extend(vocab.encode(text))
    parts.append(EOT)
    return np.asarray(parts, dtype=np.int32)


def cadence_weight_stream(texts: list[str], weight: float) -> np.ndarray:
    """Per-target loss weights for :func:`encode_stream`'s layout: ``weight`` on the
    characters of each part's last bar (:func:`musicseq.notation.form.cadence_spans`), 1
    elsewhere, scaled so that they average 1 over the stream (the step size stays that of an
    unweighted run). A character vocabulary's layout only: one id per character."""
    from musicseq.notation.form import cadence_spans

    parts: list[np.ndarray] = []
    for text in texts:
        w = np.ones(len(text) + 1, np.float32)  # EOT, then the text
        for start, end in cadence_spans(text):
            w[1 + start : 1 + end] = weight
        parts.append(w)
    parts.append(np.ones(1, np.float32))
    stream = np.concatenate(parts)
    return (stream / stream.mean()).astype(np.float32)


def length_batches(rows: list[np.ndarray], batch_size: int):
    """Rows of ids in batches of similar length (less padding): yields ``(indices, ids)``,
    ``ids`` of shape (len(indices), longest) padded with PAD."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        ids = np.full((len(batch), max(len(rows[i]) for i in batch)), PAD, np.int32)
        for row, i in enumerate(batch):
            ids[row, : len(rows[i])] = rows[i]
        yield batch, ids


def window_count(stream_len: int, seq_len: int) -> tuple[int, int]:
    """(distinct start offsets, windows per offset) for windows of ``seq_len + 1`` ids."""
    if stream_len < seq_len + 1:
        raise UserError(
            f"the data has {stream_len} characters, fewer than one window of {seq_len + 1}; "
            "use more tunes or shorter windows (seq_len)"
        )
    offsets = min(seq_len, stream_len - seq_len)
    return offsets, (stream_len - seq_len - offsets) // seq_len + 1


def training_dataset(
    stream: np.ndarray,
    seq_len: int,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    vocab_size: int | None = None,
    weights: np.ndarray | None = None,
):
    """Endless shuffled batches of ``(x, y)``, shape ``(batch, seq_len)`` each; with
    ``weights`` (one per id of the stream, :func:`cadence_weight_stream`) ``(x, y, w)``,
    ``w`` the weights of the targets ``y``.

    The batches are a fixed sequence for a given ``seed``; ``start_step`` starts it at that
    batch, so a resumed run sees exactly the batches an uninterrupted one would have.

    Pass ``p`` over the stream starts at a random offset in ``[0, seq_len)`` (so window
    boundaries move from pass to pass) and visits its windows in a random order. Both come
    from stateless RNG keyed by ``(seed, p)``: the order is the same however the pipeline is
    rewritten (e.g. re-batched per replica by a ``tf.distribute`` strategy).
    """
    import tensorflow as tf

    offsets, per_offset = window_count(len(stream), seq_len)
    ids = tf.constant(stream, dtype=tf.int32)
    span = tf.range(seq_len + 1, dtype=tf.int32)

    def starts_for_pass(p):
        key = tf.stack([tf.constant(seed, tf.int64), p])
        offset = tf.random.stateless_uniform([], key, maxval=offsets, dtype=tf.int32)
        order = tf.argsort(tf.random.stateless_uniform([per_offset], key + [0, 1 << 40]))
        return tf.data.Dataset.from_tensor_slices(offset + tf.cast(order, tf.int32) * seq_len)

    ds = tf.data.Dataset.range(1 << 62).flat_map(starts_for_pass)
    ds = ds.skip(start_step * batch_size)  # window starts only: cheap to skip
    ds = ds.batch(batch_size, drop_remainder=True)
    if weights is None:
        ds = ds.map(
            lambda s: _split_windows(tf.gather(ids, s[:, None] + span), vocab_size),
            num_parallel_calls=2,
        )
    else:
        if len(weights) != len(stream):
            raise ValueError(f"{len(weights)} weights for a stream of {len(stream)} ids")
        w = tf.constant(weights, dtype=tf.float32)

        def windows_with_weights(s):
            x, y = _split_windows(tf.gather(ids, s[:, None] + span), vocab_size)
            return x, y, tf.gather(w, s[:, None] + span[1:])

        ds = ds.map(windows_with_weights, num_parallel_calls=2)
    return _without_autotune(ds.prefetch(2))


def eval_dataset(stream: np.ndarray, seq_len: int, batch_size: int, vocab_size: int | None = None):
    """Consecutive non-overlapping windows from offset 0, in order, each once."""
    import tensorflow as tf

    _, count = window_count(len(stream), seq_len)
    starts = np.arange(count, dtype=np.int32) * seq_len
    windows = stream[starts[:, None] + np.arange(seq_len + 1)]
    ds = tf.data.Dataset.from_tensor_slices(windows).batch(batch_size)
    return _without_autotune(ds.map(lambda w: _split_windows(w, vocab_size)).prefetch(2))


def _split_windows(windows, vocab_size=None):
    # (batch, seq_len + 1) -> x = all but last, y = all but first: the shift by one. Packed
    # (metrical) streams: the targets are the plain ids.
    if vocab_size is None:
        return windows[:, :-1], windows[:, 1:]
    return windows[:, :-1], windows[:, 1:] % vocab_size


def steps_per_pass(stream_len: int, seq_len: int, batch_size: int) -> int:
    """Batches in one pass over the stream (at least one)."""
    _, per_offset = window_count(stream_len, seq_len)
    return max(1, per_offset // batch_size)
