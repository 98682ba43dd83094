"""Character models with a recurrent stack: Embedding → (MyRNNCell | SimpleRNN | LSTM | GRU) × n → Dense.

The model maps ids ``(batch, time)`` to next-character logits ``(batch, time, vocab)``.
:func:`recurrent_step` exposes the same weights one character at a time, with explicit
state, for the compiled sampling loop.
"""

from __future__ import annotations

import keras

from musicseq.config import ModelConfig
from musicseq.models.metrical import MetricalEmbedding
from musicseq.models.rnn_cell import MyRNNCell

_LAYERS = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}


def recurrent_layer(config: ModelConfig, name: str) -> keras.layers.Layer:
    """One recurrent layer of ``config.kind`` returning the whole sequence."""
    if config.kind == "rnn_scratch":
        cell = MyRNNCell(
            config.units,
            activation=config.activation,
            recurrent_initializer=config.recurrent_initializer,
        )
        return keras.layers.RNN(cell, return_sequences=True, name=name)
    if config.fused and config.kind in ("lstm", "gru"):
        from musicseq.models.fused import FusedGRU, FusedLSTM

        layer_cls = FusedLSTM if config.kind == "lstm" else FusedGRU
    else:
        layer_cls = getattr(keras.layers, _LAYERS[config.kind])
    return layer_cls(config.units, return_sequences=True, name=name)


def build_recurrent(config: ModelConfig, chars=None) -> keras.Model:
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    if chars is not None:
        embedding = MetricalEmbedding(
            config.vocab_size, config.embedding_dim, chars, config.tonal, name="embedding"
        )
    else:
        embedding = keras.layers.Embedding(
            config.vocab_size, config.embedding_dim, name="embedding"
        )
    x = embedding(ids)
    for i in range(config.num_layers):
        x = recurrent_layer(config, f"rnn_{i}")(x)  # (batch, time, units)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(config.vocab_size, dtype="float32", name="logits")(x)
    return keras.Model(ids, logits, name=f"musicseq_{config.kind}")


def recurrent_step(model: keras.Model, config: ModelConfig):
    """``(initial_state(batch), step(tokens, states) -> (logits, states))`` for sampling.

    ``tokens`` is ``(batch,)`` int32; ``states`` a list (one entry per layer) of state lists.
    """
    import tensorflow as tf

    embedding = model.get_layer("embedding")
    cells = [model.get_layer(f"rnn_{i}").cell for i in range(config.num_layers)]
    dense = model.get_layer("logits")
    per_layer = 2 if config.kind == "lstm" else 1  # LSTM carries (h, c)

    def initial_state(batch):
        # States are what the cells compute: float16/bfloat16 under mixed precision.
        zeros = tf.zeros(tf.stack([batch, config.units]), dtype=cells[0].compute_dtype)
        return [[zeros] * per_layer for _ in cells]

    def step(tokens, states):
        x = embedding(tokens)  # (batch, embedding_dim)
        new_states = []
        for cell, state in zip(cells, states):
            x, state = cell(x, list(state), training=False)  # (batch, units)
            new_states.append(list(state))
        return dense(x), new_states  # (batch, vocab)

    return initial_state, step


def top_hidden(states) -> object:
    """The top layer's hidden state ``h`` (batch, units) in a :func:`recurrent_step` state."""
    return states[-1][0]
