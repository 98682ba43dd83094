"""MyRNNCell: the lecture's vanilla RNN cell, written from scratch to the Keras cell contract.

    h_t = activation(W_hh h_{t-1} + W_xh x_t + b)        y_t = W_hy h_t

Keras stores weights for row vectors, so in code the update reads
``h_t = act(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)`` with ``kernel = W_xh^T`` and
``recurrent_kernel = W_hh^T``. The cell emits ``h_t``; ``W_hy`` is the model's output layer.
"""

from __future__ import annotations

import keras
from keras import ops

ACTIVATIONS = ("tanh", "relu")


@keras.saving.register_keras_serializable(package="musicseq")
class MyRNNCell(keras.layers.Layer):
    """A vanilla (Elman) RNN cell usable inside ``keras.layers.RNN``.

    Args:
        units: size of the hidden state ``h``.
        activation: ``"tanh"`` or ``"relu"``.
        recurrent_initializer: initializer of ``W_hh``; ``"identity"`` with ``activation="relu"``
            and zero biases is the lecture's "Trick #2" (an IRNN).
        kernel_initializer: initializer of ``W_xh``.
        use_bias: whether to add ``b``.
    """

    def __init__(
        self,
        units: int,
        activation: str = "tanh",
        recurrent_initializer="orthogonal",
        kernel_initializer="glorot_uniform",
        use_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.units = units
        self.activation = activation
        self.recurrent_initializer = recurrent_initializer
        self.kernel_initializer = kernel_initializer
        self.use_bias = use_bias
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(input_dim, self.units), initializer=self.kernel_initializer, name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units),
            initializer=keras.initializers.get(self.recurrent_initializer),
            name="recurrent_kernel",
        )
        self.bias = (
            self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
            if self.use_bias
            else None
        )

    def call(self, inputs, states, training=None):
        h_prev = states[0] if isinstance(states, (list, tuple)) else states  # (batch, units)
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel)
        if self.bias is not None:
            z = z + self.bias
        h = ops.tanh(z) if self.activation == "tanh" else ops.relu(z)  # (batch, units)
        return h, [h]

    def get_initial_state(self, batch_size=None):
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": self.activation,
                "recurrent_initializer": keras.initializers.serialize(
                    keras.initializers.get(self.recurrent_initializer)
                ),
                "kernel_initializer": keras.initializers.serialize(
                    keras.initializers.get(self.kernel_initializer)
                ),
                "use_bias": self.use_bias,
            }
        )
        return config
