"""Faster CPU recurrences for LSTM and GRU, as drop-in subclasses of the Keras layers.

``FusedLSTM`` and ``FusedGRU`` have exactly the weights (names, shapes, layout) and maths
of ``keras.layers.LSTM`` / ``GRU``. On a GPU, or in any configuration the fast path does
not cover (masks, recurrent dropout, ``go_backwards``, non-default activations), they
defer to the Keras implementation, so cuDNN is used as before. On CPU they:

1. compute the input projection ``x_t W_x + b`` for all time steps in one matrix multiply
   (Keras' generic loop does it inside every step);
2. run the recurrence in one ``tf.while_loop`` whose step does one fused matmul
   ``h_{t-1} W_h`` for all gates and the element-wise gate maths;
3. backpropagate with a hand-written backward recurrence (``tf.custom_gradient``) that
   does one matmul per step and then computes the weight gradients as three large matrix
   multiplies over all steps at once, as cuDNN does, instead of TensorFlow's automatic
   gradient of the loop, which does two small matmuls per step.

With XLA (``jit_compile``, on by default for these layers on CPU: see ``train.py``) the
element-wise gate maths of each step is fused as well. Numerically the same model: the
tests compare outputs and gradients with the Keras layers given the same weights.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _cpu_only() -> bool:
    return not tf.config.list_logical_devices("GPU")


def _reverse_scan(step, steps, initial):
    """Run ``step(t, state) -> (state, row)`` for t = steps-1 … 0; returns (rows stacked by t, state)."""
    rows = tf.TensorArray(initial[0].dtype, size=steps)

    def body(t, rows, state):
        state, row = step(t, state)
        return t - 1, rows.write(t, row), state

    _, rows, state = tf.while_loop(lambda t, *_: t >= 0, body, (steps - 1, rows, initial))
    return rows.stack(), state


@tf.custom_gradient
def _lstm_core(x, h0, c0, kernel, recurrent_kernel, bias):
    """The LSTM with a hand-written backward pass in the style of cuDNN: the backward
    recurrence does one matmul per step (``dz W_h^T``); the weight gradients are then
    three large matrix multiplies over all steps at once, instead of one small one per step."""
    projected = tf.einsum("btf,fg->tbg", x, kernel) + bias  # (time, batch, 4 units): one GEMM
    steps = tf.shape(projected)[0]
    inputs = tf.TensorArray(projected.dtype, size=steps).unstack(projected)
    hs = tf.TensorArray(x.dtype, size=steps)
    cs = tf.TensorArray(x.dtype, size=steps)
    gates = tf.TensorArray(x.dtype, size=steps)

    def body(t, hs, cs, gates, h, c):
        z = inputs.read(t) + tf.matmul(h, recurrent_kernel)  # (batch, 4 units)
        zi, zf, zg, zo = tf.split(z, 4, axis=-1)
        i, f, g, o = tf.sigmoid(zi), tf.sigmoid(zf), tf.tanh(zg), tf.sigmoid(zo)
        c = f * c + i * g
        h = o * tf.tanh(c)
        return (
            t + 1,
            hs.write(t, h),
            cs.write(t, c),
            gates.write(t, tf.concat([i, f, g, o], -1)),
            h,
            c,
        )

    _, hs, cs, gates, h, c = tf.while_loop(
        lambda t, *_: t < steps, body, (0, hs, cs, gates, h0, c0)
    )
    H, C, G = hs.stack(), cs.stack(), gates.stack()  # (time, batch, ·)

    def grad(d_outputs, d_h, d_c):
        d_outputs = tf.zeros_like(H) if d_outputs is None else tf.transpose(d_outputs, (1, 0, 2))
        d_h = tf.zeros_like(h0) if d_h is None else d_h
        d_c = tf.zeros_like(c0) if d_c is None else d_c
        C_prev = tf.concat([c0[None], C[:-1]], axis=0)
        w_t = tf.transpose(recurrent_kernel)

        def back(t, state):
            dh, dc = state
            i, f, g, o = tf.split(G[t], 4, axis=-1)
            dh = dh + d_outputs[t]
            tc = tf.tanh(C[t])
            dc = dc + dh * o * (1.0 - tc * tc)
            dz = tf.concat(
                [
                    dc * g * i * (1.0 - i),
                    dc * C_prev[t] * f * (1.0 - f),
                    dc * i * (1.0 - g * g),
                    dh * tc * o * (1.0 - o),
                ],
                axis=-1,
            )
            return (tf.matmul(dz, w_t), dc * f), dz

        DZ, (dh0, dc0) = _reverse_scan(back, steps, (d_h, d_c))  # DZ: (time, batch, 4 units)
        H_prev = tf.concat([h0[None], H[:-1]], axis=0)
        d_recurrent = tf.einsum("tbu,tbg->ug", H_prev, DZ)  # one GEMM over all steps
        d_kernel = tf.einsum("btf,tbg->fg", x, DZ)
        d_bias = tf.reduce_sum(DZ, axis=(0, 1))
        dx = tf.einsum("tbg,fg->btf", DZ, kernel)
        return dx, dh0, dc0, d_kernel, d_recurrent, d_bias

    return (tf.transpose(H, (1, 0, 2)), h, c), grad


def fused_lstm(x, h0, c0, kernel, recurrent_kernel, bias):
    """LSTM over ``x`` (batch, time, features) with Keras' gate order i, f, c, o.

    Returns ``(outputs (batch, time, units), h, c)``.
    """
    if bias is None:
        bias = tf.zeros([tf.shape(kernel)[1]], x.dtype)
    return _lstm_core(
        x,
        h0,
        c0,
        tf.convert_to_tensor(kernel),
        tf.convert_to_tensor(recurrent_kernel),
        tf.convert_to_tensor(bias),
    )


@tf.custom_gradient
def _gru_core(x, h0, kernel, recurrent_kernel, input_bias, recurrent_bias):
    """GRU (reset_after) with a cuDNN-style backward pass, like :func:`_lstm_core`."""
    projected = tf.einsum("btf,fg->tbg", x, kernel) + input_bias  # (time, batch, 3 units)
    steps = tf.shape(projected)[0]
    inputs = tf.TensorArray(projected.dtype, size=steps).unstack(projected)
    hs = tf.TensorArray(x.dtype, size=steps)
    saved = tf.TensorArray(x.dtype, size=steps)  # z, r, candidate, recurrent candidate part

    def body(t, hs, saved, h):
        x_z, x_r, x_h = tf.split(inputs.read(t), 3, axis=-1)
        h_z, h_r, h_h = tf.split(tf.matmul(h, recurrent_kernel) + recurrent_bias, 3, axis=-1)
        z, r = tf.sigmoid(x_z + h_z), tf.sigmoid(x_r + h_r)
        n = tf.tanh(x_h + r * h_h)
        h = z * h + (1.0 - z) * n
        return t + 1, hs.write(t, h), saved.write(t, tf.concat([z, r, n, h_h], -1)), h

    _, hs, saved, h = tf.while_loop(lambda t, *_: t < steps, body, (0, hs, saved, h0))
    H, S = hs.stack(), saved.stack()

    def grad(d_outputs, d_h):
        d_outputs = tf.zeros_like(H) if d_outputs is None else tf.transpose(d_outputs, (1, 0, 2))
        d_h = tf.zeros_like(h0) if d_h is None else d_h
        H_prev = tf.concat([h0[None], H[:-1]], axis=0)
        w_t = tf.transpose(recurrent_kernel)

        def back(t, state):
            (dh,) = state
            z, r, n, h_h = tf.split(S[t], 4, axis=-1)
            dh = dh + d_outputs[t]
            dn = dh * (1.0 - z) * (1.0 - n * n)  # through tanh
            dz = dh * (H_prev[t] - n) * z * (1.0 - z)
            dr = dn * h_h * r * (1.0 - r)
            d_rec = tf.concat([dz, dr, dn * r], axis=-1)  # gradient of h W_h + b_rec
            d_in = tf.concat([dz, dr, dn], axis=-1)  # gradient of x W_x + b_in
            return (dh * z + tf.matmul(d_rec, w_t),), tf.concat([d_in, d_rec], -1)

        D, (dh0,) = _reverse_scan(back, steps, (d_h,))
        D_in, D_rec = tf.split(D, 2, axis=-1)  # (time, batch, 3 units) each
        d_kernel = tf.einsum("btf,tbg->fg", x, D_in)
        d_recurrent = tf.einsum("tbu,tbg->ug", H_prev, D_rec)
        dx = tf.einsum("tbg,fg->btf", D_in, kernel)
        return (
            dx,
            dh0,
            d_kernel,
            d_recurrent,
            tf.reduce_sum(D_in, (0, 1)),
            tf.reduce_sum(D_rec, (0, 1)),
        )

    return (tf.transpose(H, (1, 0, 2)), h), grad


def fused_gru(x, h0, kernel, recurrent_kernel, bias):
    """GRU (``reset_after=True``, Keras' gate order z, r, h) over ``x``; returns (outputs, h)."""
    units3 = tf.shape(kernel)[1]
    if bias is None:
        input_bias = recurrent_bias = tf.zeros([units3], x.dtype)
    else:
        bias = tf.convert_to_tensor(bias)
        input_bias, recurrent_bias = bias[0], bias[1]
    return _gru_core(
        x,
        h0,
        tf.convert_to_tensor(kernel),
        tf.convert_to_tensor(recurrent_kernel),
        input_bias,
        recurrent_bias,
    )


def _fast_path_ok(layer, mask, training) -> bool:
    cell = layer.cell
    return (
        mask is None
        and not layer.go_backwards
        and not layer.unroll
        and not cell.recurrent_dropout
        and not (training and cell.dropout)
        and cell.activation is keras.activations.tanh
        and cell.recurrent_activation is keras.activations.sigmoid
        and _cpu_only()
    )


@keras.saving.register_keras_serializable(package="musicseq")
class FusedLSTM(keras.layers.LSTM):
    """``keras.layers.LSTM`` with a faster CPU path (same weights and results)."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _fast_path_ok(self, mask, training):
            return super().inner_loop(sequences, initial_state, mask, training)
        cell = self.cell
        outputs, h, c = fused_lstm(
            sequences,
            initial_state[0],
            initial_state[1],
            cell.kernel,
            cell.recurrent_kernel,
            cell.bias if cell.use_bias else None,
        )
        return h, outputs, [h, c]


@keras.saving.register_keras_serializable(package="musicseq")
class FusedGRU(keras.layers.GRU):
    """``keras.layers.GRU`` with a faster CPU path (same weights and results)."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not (_fast_path_ok(self, mask, training) and self.cell.reset_after):
            return super().inner_loop(sequences, initial_state, mask, training)
        cell = self.cell
        h0 = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        outputs, h = fused_gru(
            sequences, h0, cell.kernel, cell.recurrent_kernel, cell.bias if cell.use_bias else None
        )
        return h, outputs, [h]
