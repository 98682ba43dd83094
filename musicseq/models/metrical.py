"""Embeddings of packed ids (:mod:`musicseq.metrical`): the character's vector plus one for
its position in the bar and one for its bar in the part, and for a tonal model one for the
key's tonic and one for the scale degree of the last note; and the logits layer of a
relative-pitch model, which reads note letters as steps above that tonic."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from musicseq.metrical import NUM_BARS, NUM_DEGREES, NUM_POSITIONS, NUM_TONICS, unpack
from musicseq.vocab import RESERVED


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


# Note letters as diatonic steps from C (C = 0 … B = 6, c … b = 7 … 13) and each tonic code of
# the meter clock (1 + letter, A = 1) as a step from C: a letter's step above the tonic is
# ``letter - tonic``, -6 … 13, read from RELATIVE_SLOTS slots.
_LETTER_STEPS = {c: i for i, c in enumerate("CDEFGABcdefgab")}
_TONIC_STEPS = {1 + i: "CDEFGAB".index(c) for i, c in enumerate("ABCDEFG")}
RELATIVE_SLOTS = 20


def relative_index(chars) -> np.ndarray:
    """(NUM_TONICS, vocab) int32: for each tonic code, the slot of each id's step above the
    tonic, or RELATIVE_SLOTS (a slot that is always 0) for the reserved ids, characters that
    are not note letters and tonic code 0 (no key yet, ``K:none``). ``chars``: the
    vocabulary's characters (ids from ``len(RESERVED)`` on)."""
    table = np.full((NUM_TONICS, len(RESERVED) + len(chars)), RELATIVE_SLOTS, np.int32)
    for code, tonic in _TONIC_STEPS.items():
        for j, char in enumerate(chars, start=len(RESERVED)):
            if char in _LETTER_STEPS:
                table[code, j] = _LETTER_STEPS[char] - tonic + 6
    return table


@keras.saving.register_keras_serializable(package="musicseq")
class RelativePitchLogits(keras.layers.Layer):
    """Logits of a tonal model whose note letters are also read relative to the key.

    ``call(x, packed)`` returns ``Dense(vocab)(x)`` plus, for each note letter, a second
    head's logit for its diatonic step above the tonic in force (the packed ids' tonic
    input): the model learns "the tonic", "the fifth", "a step below the tonic" once for all
    keys instead of once per key. A transposition-augmented corpus teaches the same thing by
    showing every tune in more keys, at the price of a larger task (docs/ablation.md).
    """

    def __init__(self, vocab_size: int, chars, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.vocab_size, self.chars = vocab_size, list(chars)
        self.index = relative_index(self.chars)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.absolute = self.add_weight(
            shape=(dim, self.vocab_size), initializer="glorot_uniform", name="kernel"
        )
        self.bias = self.add_weight(shape=(self.vocab_size,), initializer="zeros", name="bias")
        # Zero at the start: the model begins as the plain logits layer.
        self.steps = self.add_weight(
            shape=(dim, RELATIVE_SLOTS), initializer="zeros", name="relative_kernel"
        )

    def call(self, x, packed):
        x = ops.cast(x, self.compute_dtype)
        _, _, _, tonic, _ = unpack(ops.cast(packed, "int32"), self.vocab_size)
        logits = ops.matmul(x, self.absolute) + self.bias
        steps = ops.matmul(x, self.steps)
        steps = ops.concatenate([steps, ops.zeros_like(steps[..., :1])], axis=-1)
        index = ops.take(ops.convert_to_tensor(self.index), tonic, axis=0)  # (…, vocab)
        return logits + ops.take_along_axis(steps, index, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.vocab_size)

    def get_config(self):
        config = super().get_config()
        config.update({"vocab_size": self.vocab_size, "chars": self.chars})
        return config
