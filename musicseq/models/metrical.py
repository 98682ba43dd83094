"""Embeddings of packed ids (:mod:`musicseq.metrical`): the character's vector plus one for
its position in the bar and one for its bar in the part, and for a tonal model one for the
key's tonic and one for the scale degree of the last note."""

from __future__ import annotations

import keras
from keras import ops

from musicseq.metrical import NUM_BARS, NUM_DEGREES, NUM_POSITIONS, NUM_TONICS, unpack


def add_metrical_weights(layer: keras.layers.Layer, dim: int, initializer) -> None:
    """Give ``layer`` the tables ``metre_positions`` (NUM_POSITIONS, dim) and ``metre_bars``
    (NUM_BARS, dim); when ``layer.tonal``, also ``tonal_tonics`` (NUM_TONICS, dim) and
    ``tonal_degrees`` (NUM_DEGREES, dim)."""
    layer.metre_positions = layer.add_weight(
        shape=(NUM_POSITIONS, dim), initializer=initializer, name="metre_positions"
    )
    layer.metre_bars = layer.add_weight(
        shape=(NUM_BARS, dim), initializer=initializer, name="metre_bars"
    )
    if layer.tonal:
        # Small at the start: added at the tokens' unit scale (the Transformer's) they are
        # noise the model must first learn away -- a first run so started trailed the
        # metrical model's validation loss by ~0.06 nats/char from step 260 to 1,040.
        small = keras.initializers.RandomNormal(stddev=0.02)
        layer.tonal_tonics = layer.add_weight(
            shape=(NUM_TONICS, dim), initializer=small, name="tonal_tonics"
        )
        layer.tonal_degrees = layer.add_weight(
            shape=(NUM_DEGREES, dim), initializer=small, name="tonal_degrees"
        )


def embed_packed(layer: keras.layers.Layer, packed, tokens, vocab_size: int):
    """(…, dim): ``tokens[id] + metre_positions[position] + metre_bars[bar]`` (+
    ``tonal_tonics[tonic] + tonal_degrees[degree]`` for a tonal layer)."""
    ids, position, bar, tonic, degree = unpack(ops.cast(packed, "int32"), vocab_size)
    x = ops.take(tokens, ids, axis=0)
    x = x + ops.take(layer.metre_positions, position, axis=0)
    x = x + ops.take(layer.metre_bars, bar, axis=0)
    if layer.tonal:
        x = x + ops.take(layer.tonal_tonics, tonic, axis=0)
        x = x + ops.take(layer.tonal_degrees, degree, axis=0)
    return x


@keras.saving.register_keras_serializable(package="musicseq")
class MetricalEmbedding(keras.layers.Layer):
    """The recurrent kinds' embedding of packed ids; ``chars`` (the vocabulary's characters)
    is kept for the meter clock of the sampling step."""

    def __init__(self, vocab_size: int, dim: int, chars, tonal: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.dim, self.chars = vocab_size, dim, list(chars)
        self.tonal = tonal

    def build(self, input_shape):
        init = keras.initializers.RandomUniform(-0.05, 0.05)  # keras.layers.Embedding's
        self.embeddings = self.add_weight(
            shape=(self.vocab_size, self.dim), initializer=init, name="embeddings"
        )
        add_metrical_weights(self, self.dim, init)

    def call(self, packed):
        return embed_packed(self, packed, self.embeddings, self.vocab_size)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "dim": self.dim,
                "chars": self.chars,
                "tonal": self.tonal,
            }
        )
        return config
