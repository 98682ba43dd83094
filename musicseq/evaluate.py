"""Evaluation: held-out loss over whole tunes (and, later, validity and copy metrics).

Loss is measured per tune over ``EOT tune EOT``: every character of the tune and the final
end-of-tune token is predicted from everything before it in the tune. Recurrent models see
the whole tune at once; the Transformer slides a window of its context length with a stride
of half the context, so every scored token has at least ``context/2`` characters of history.
"""

from __future__ import annotations

import math

import numpy as np

from musicseq.vocab import EOT, PAD, Vocab


def _tune_ids(text: str, vocab: Vocab) -> np.ndarray:
    return np.asarray([EOT, *vocab.encode(text), EOT], dtype=np.int32)


def _windows(ids: np.ndarray, context: int | None):
    """(inputs, targets, first scored index) windows covering ``ids``; each target scored once."""
    n = len(ids) - 1  # number of predictions
    if context is None or n <= context:
        yield ids[:-1], ids[1:], 0
        return
    stride = context // 2
    start, scored_to = 0, 0  # predictions before `scored_to` are already scored
    while scored_to < n:
        end = min(start + context, n)
        yield ids[start:end], ids[start + 1 : end + 1], scored_to - start
        scored_to = end
        start = min(start + stride, n - context)


def tune_nats(
    model, model_config, vocab: Vocab, texts: list[str], batch_size: int = 16
) -> np.ndarray:
    """Total nats of each tune (``EOT`` + text + ``EOT``, scoring text and final ``EOT``)."""
    import tensorflow as tf

    context = model_config.context if model_config.kind == "transformer" else None
    pieces = []  # (tune index, inputs, targets, first scored position)
    for index, text in enumerate(texts):
        for inputs, targets, first in _windows(_tune_ids(text, vocab), context):
            pieces.append((index, inputs, targets, first))
    pieces.sort(key=lambda p: len(p[1]))  # similar lengths per batch: less padding
    totals = np.zeros(len(texts), dtype=np.float64)

    @tf.function(reduce_retracing=True)
    def score(x, y, weight):
        logits = model(x, training=False)
        nats = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=tf.cast(logits, tf.float32)
        )
        return tf.reduce_sum(nats * weight, axis=1)

    for start in range(0, len(pieces), batch_size):
        batch = pieces[start : start + batch_size]
        width = max(len(p[1]) for p in batch)
        x = np.full((len(batch), width), PAD, np.int32)
        y = np.full((len(batch), width), PAD, np.int32)
        weight = np.zeros((len(batch), width), np.float32)
        for row, (_, inputs, targets, first) in enumerate(batch):
            x[row, : len(inputs)] = inputs
            y[row, : len(targets)] = targets
            weight[row, first : len(targets)] = 1.0
        sums = score(tf.constant(x), tf.constant(y), tf.constant(weight)).numpy()
        for (index, *_), value in zip(batch, sums):
            totals[index] += value
    return totals


def held_out_loss(
    model, model_config, vocab: Vocab, texts: list[str], batch_size: int = 16
) -> dict:
    """Nats and bits per character over whole tunes, plus the counts behind them."""
    if not texts:
        raise ValueError("no tunes to evaluate")
    nats = tune_nats(model, model_config, vocab, texts, batch_size)
    chars = sum(len(t) + 1 for t in texts)  # each tune's characters plus its end-of-tune token
    per_char = float(nats.sum() / chars)
    return {
        "nats_per_char": per_char,
        "bits_per_char": per_char / math.log(2),
        "tunes": len(texts),
        "characters": chars,
        "unknown_characters": sum(sum(1 for c in t if c not in vocab) for t in texts),
    }
