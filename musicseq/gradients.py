"""Gradient flow through time: ``||dL/dh_t||`` against the distance from the loss.

The lectures' story of vanishing and exploding gradients, measured on real models: the loss
is the cross-entropy of the prediction at the last step ``T`` of a window, and for every
earlier step ``t`` we take the norm of its gradient with respect to the recurrent state
``h_t`` (for an LSTM the full state ``[h_t, c_t]``), averaged over a batch. Distance 0 is the
state that made the prediction.
"""

from __future__ import annotations

import numpy as np


def state_gradient_norms(model, model_config, ids: np.ndarray) -> np.ndarray:
    """Mean ``||dL/dstate_t||`` over the batch for ``t = T-1 … 0``, indexed by distance.

    ``ids`` is ``(batch, T + 1)``: the model reads ``ids[:, :T]`` and the loss is the
    prediction of ``ids[:, T]`` from the state after step ``T - 1``. Recurrent kinds only;
    the gradient is taken with respect to the first layer's state.
    """
    import tensorflow as tf

    from musicseq.models import step_function

    if model_config.kind == "transformer":
        raise ValueError("state gradients are defined for recurrent kinds only")
    initial_state, step = step_function(model, model_config)
    ids = tf.constant(ids, tf.int32)
    steps = int(ids.shape[1]) - 1
    with tf.GradientTape() as tape:
        state = initial_state(tf.shape(ids)[0])
        watched = []
        for t in range(steps):
            logits, state = step(ids[:, t], state)
            layers = state[1] if model_config.metrical else state  # [clock, layers]
            watched.append(layers[0])  # first layer's state list after reading ids[:, t]
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids[:, steps], logits=logits)
        )
    grads = tape.gradient(loss, watched)
    norms = []
    for parts in grads:
        squared = sum(tf.reduce_sum(tf.square(g), axis=-1) for g in parts if g is not None)
        norms.append(float(tf.reduce_mean(tf.sqrt(squared))))
    return np.asarray(norms[::-1])  # index = distance from the loss


def linear_recurrence_gradient(diagonal: list[float], steps: int) -> np.ndarray:
    """``d(sum h_T)/dh_0`` for ``h_t = relu(W h_{t-1})`` with ``W = diag(diagonal)``, ``h_0 = 1``.

    With a positive state ReLU is the identity, so this is the lecture's linear recurrence:
    the answer is ``diagonal ** steps`` component-wise, computed here by backpropagation
    through :class:`MyRNNCell`.
    """
    import keras
    import tensorflow as tf

    from musicseq.models.rnn_cell import MyRNNCell

    units = len(diagonal)
    cell = MyRNNCell(units, activation="relu", use_bias=False, dtype="float64")
    layer = keras.layers.RNN(cell, dtype="float64")
    layer.build((1, steps, 1))
    cell.kernel.assign(np.zeros((1, units)))
    cell.recurrent_kernel.assign(np.diag(diagonal))
    h0 = tf.ones((1, units), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(h0)
        h_last = layer(tf.zeros((1, steps, 1), tf.float64), initial_state=[h0])
        loss = tf.reduce_sum(h_last)
    return tape.gradient(loss, h0).numpy()[0]
