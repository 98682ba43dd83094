"""Decoder-only Transformer for characters, with a key/value cache for generation.

    x = token_embedding(ids) + positional_encoding(positions)          (batch, time, d)
    x = x + Attention(LayerNorm(x))   # causal, softmax(Q K^T / sqrt(d_k)) V
    x = x + MLP(LayerNorm(x))         # repeated num_layers times (pre-norm blocks)
    logits = Dense(LayerNorm(x))                                       (batch, time, vocab)

Each layer also has a one-position ``step`` that reads and writes a key/value cache of
``context`` positions, so generating a token costs one row of attention, not a re-run of
the prefix. Past the context length the sampler slides the window (see ``transformer_step``).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from musicseq.config import ModelConfig
from musicseq.models.metrical import RelativePitchLogits, add_metrical_weights, embed_packed


def sinusoid_table(length: int, dim: int) -> np.ndarray:
    """The fixed sin/cos encoding of "Attention is all you need": (length, dim) float32."""
    positions = np.arange(length)[:, None]  # (length, 1)
    rates = 1.0 / np.power(10000.0, (2 * (np.arange(dim) // 2)) / dim)  # (dim,)
    angles = positions * rates[None, :]
    table = np.zeros((length, dim), dtype=np.float32)
    table[:, 0::2] = np.sin(angles[:, 0::2])
    table[:, 1::2] = np.cos(angles[:, 1::2])
    return table


@keras.saving.register_keras_serializable(package="musicseq")
class TokenAndPosition(keras.layers.Layer):
    """Token embedding plus a sinusoidal or learned positional encoding."""

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        context: int,
        positional: str = "sinusoidal",
        chars=None,
        tonal: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if positional not in ("sinusoidal", "learned"):
            raise ValueError(f"positional must be 'sinusoidal' or 'learned', got {positional!r}")
        self.vocab_size = vocab_size
        self.dim = dim
        self.context = context
        self.positional = positional
        self.chars = list(chars) if chars is not None else None  # metrical: packed ids
        self.tonal = tonal

    def build(self, input_shape):
        # Unit-variance token vectors: the sinusoidal table has entries of size ~0.7, and token
        # vectors at Keras' default scale (0.05) would be drowned by it -- the model then cannot
        # tell characters apart and sits at the unigram loss for hundreds of steps.
        self.tokens = self.add_weight(
            shape=(self.vocab_size, self.dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="tokens",
        )
        if self.positional == "learned":
            self.positions = self.add_weight(
                shape=(self.context, self.dim),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
                name="positions",
            )
        else:
            self.positions = ops.convert_to_tensor(sinusoid_table(self.context, self.dim))
        if self.chars is not None:
            add_metrical_weights(self, self.dim, keras.initializers.RandomNormal(stddev=1.0))

    def call(self, ids, start=0):
        length = ops.shape(ids)[-1]
        if self.chars is not None:
            x = embed_packed(self, ids, self.tokens, self.vocab_size)
        else:
            x = ops.take(self.tokens, ids, axis=0)  # (batch, time, dim)
        positions = ops.slice(self.positions, (start, 0), (length, self.dim))[None]
        return x + ops.cast(positions, x.dtype)  # float16/bfloat16 under mixed precision

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "dim": self.dim,
                "context": self.context,
                "positional": self.positional,
                "chars": self.chars,
                "tonal": self.tonal,
            }
        )
        return config


# The cached step keeps its keys and values in blocks of this many positions and attends over
# the filled blocks only (position 10 reads 64 slots, position 300 reads 320, not 512).
ATTENTION_BLOCK = 64
# Training and scoring: queries attend in blocks of this many (CausalSelfAttention.call).
QUERY_BLOCK = 128


def cache_blocks(batch, heads, context, key_dim, dtype):
    """An empty key or value cache: a list of zero blocks ``(batch, heads, size, key_dim)``
    whose sizes add up to ``context`` (blocks of :data:`ATTENTION_BLOCK`, the last shorter).

    A single stream (``batch`` the Python int 1) gets one block of the whole context: its step
    is all per-operation overhead, which the block bookkeeping (a branch per layer) adds to,
    and reading 512 slots instead of 64 costs it nothing measurable (docs/benchmarks.md)."""
    block = context if isinstance(batch, int) and batch == 1 else ATTENTION_BLOCK
    sizes = [min(block, context - start) for start in range(0, context, block)]
    return [ops.zeros((batch, heads, size, key_dim), dtype) for size in sizes]


def split_like(cache, blocks):
    """A whole ``(batch, heads, context, key_dim)`` cache cut as ``blocks`` (a list from
    :func:`cache_blocks`) is cut."""
    edges = _block_edges(blocks)
    return [cache[:, :, start:end] for start, end in zip(edges[:-1], edges[1:])]


def _block_edges(blocks) -> list[int]:
    edges = [0]
    for block in blocks:
        edges.append(edges[-1] + block.shape[2])
    return edges


def _block_index(position, edges):
    """The block holding ``position`` (a scalar tensor)."""
    if len(edges) <= 2:
        return ops.convert_to_tensor(0, "int32")
    return ops.sum(ops.cast(ops.convert_to_tensor(edges[1:-1]) <= position, "int32"))


@keras.saving.register_keras_serializable(package="musicseq")
class CausalSelfAttention(keras.layers.Layer):
    """Multi-head causal self-attention, ``softmax(Q K^T / sqrt(d_k) + mask) V``.

    ``call`` attends over a whole sequence (training); ``step`` attends from one new position
    over a key/value cache of shape ``(batch, heads, context, key_dim)``.
    """

    def __init__(self, num_heads: int, key_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.dropout = dropout
        # One dropout mask over the attention weights for the whole batch (each head and
        # query its own): tensor2tensor's ``attention_dropout_broadcast_dims``. Drawing a mask
        # per sequence cost about a quarter of a training step of the default Transformer on
        # CPU (16 x 8 x 512 x 512 random numbers per layer; docs/benchmarks.md).
        self.dropout_layer = keras.layers.Dropout(
            dropout, noise_shape=(1, None, None, None), dtype=self.dtype_policy
        )

    def build(self, input_shape):
        dim = input_shape[-1]
        inner = self.num_heads * self.key_dim
        self.qkv_kernel = self.add_weight(
            shape=(dim, 3 * inner), initializer="glorot_uniform", name="qkv_kernel"
        )
        self.qkv_bias = self.add_weight(shape=(3 * inner,), initializer="zeros", name="qkv_bias")
        self.out_kernel = self.add_weight(
            shape=(inner, dim), initializer="glorot_uniform", name="out_kernel"
        )
        self.out_bias = self.add_weight(shape=(dim,), initializer="zeros", name="out_bias")

    def _w(self, variable):
        # Weights in the compute dtype: ``step`` runs outside Keras' autocasting ``__call__``.
        return ops.cast(variable, self.compute_dtype)

    def _heads(self, x):
        # (batch, time, 3 * heads * key_dim) -> three of (batch, heads, time, key_dim)
        batch, time = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, time, 3, self.num_heads, self.key_dim))
        x = ops.transpose(x, (2, 0, 3, 1, 4))
        return x[0], x[1], x[2]

    def _merge(self, context):
        # (batch, heads, time, key_dim) -> (batch, time, dim)
        batch, time = ops.shape(context)[0], ops.shape(context)[2]
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, time, -1))
        return ops.matmul(context, self._w(self.out_kernel)) + self._w(self.out_bias)

    def _project(self, x):
        """Queries (scaled), keys and values ``(batch, heads, time, key_dim)`` of ``x``."""
        q, k, v = self._heads(ops.matmul(x, self._w(self.qkv_kernel)) + self._w(self.qkv_bias))
        # Scaling the queries (t x d_k) rather than the scores (t x t) saves a pass over the
        # layer's largest tensor.
        return q * ops.cast(1.0 / math.sqrt(self.key_dim), q.dtype), k, v

    @staticmethod
    def _causal_weights(q, k, offset: int = 0):
        """Softmax weights of queries at positions ``offset …`` over keys ``0 …``: each
        query sees the keys at or before its position."""
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))  # (b, h, queries, keys)
        queries, keys = ops.shape(q)[2], ops.shape(k)[2]
        visible = ops.arange(keys)[None, :] <= ops.arange(queries)[:, None] + offset
        scores = ops.where(visible[None, None], scores, ops.cast(-1e9, scores.dtype))
        return ops.softmax(ops.cast(scores, "float32"), axis=-1)

    def attention_weights(self, x):
        """Causal attention weights ``(batch, heads, time, time)``, keys and values."""
        q, k, v = self._project(x)
        return self._causal_weights(q, k), k, v

    def call(self, x, training=None, return_kv=False):
        q, k, v = self._project(x)
        # Queries in blocks of QUERY_BLOCK, each over the keys up to its last position: the
        # score blocks above the diagonal are never computed, stored or differentiated (a
        # 512-position window computes 62.5% of its scores). A length unknown when traced
        # takes one block.
        time = x.shape[1]
        starts = range(0, time, QUERY_BLOCK) if time is not None else [0]
        parts = []
        for start in starts:
            end = min(start + QUERY_BLOCK, time) if time is not None else None
            weights = self._causal_weights(q[:, :, start:end], k[:, :, :end], start)
            weights = self.dropout_layer(weights, training=training)
            parts.append(ops.matmul(ops.cast(weights, v.dtype), v[:, :, :end]))
        context = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=2)
        out = self._merge(context)
        return (out, k, v) if return_kv else out

    def step(self, x, cache_k, cache_v, position):
        """One new position: ``x`` (batch, 1, dim) at ``position``; returns (out, cache_k, cache_v).

        The caches are lists of blocks ``(batch, heads, block, key_dim)`` covering the context
        (:func:`cache_blocks`). The new key and value are written into the one block holding
        ``position`` (the others pass through untouched), and the query attends over the
        filled blocks only: the cost of a step grows with what is written, instead of being
        that of the whole context from the first character on.
        """
        q, k, v = self._heads(
            ops.matmul(x, self._w(self.qkv_kernel)) + self._w(self.qkv_bias)
        )  # (b, h, 1, d_k)
        edges = _block_edges(cache_k)
        current = _block_index(position, edges)

        # Slot (b, h, position) for every batch row and head: a scatter copies only the one
        # block (a `where` over it reads and writes twice as much).
        batch = ops.shape(q)[0]
        rows = ops.repeat(ops.arange(batch), self.num_heads)
        heads = ops.tile(ops.arange(self.num_heads), [batch])
        k = ops.reshape(k, (-1, self.key_dim))
        v = ops.reshape(v, (-1, self.key_dim))

        def write_and_attend(j):
            # Position in block j: write its key and value there, then attend block by block
            # over blocks 0..j (concatenating them would copy the cache): scores, one softmax,
            # the weighted values summed.
            def branch():
                slot = ops.full_like(rows, position - edges[j])
                index = ops.stack([rows, heads, slot], axis=1)
                keys = [*cache_k[:j], ops.scatter_update(cache_k[j], index, k), *cache_k[j + 1 :]]
                values = [
                    *cache_v[:j],
                    ops.scatter_update(cache_v[j], index, v),
                    *cache_v[j + 1 :],
                ]
                scale = 1.0 / math.sqrt(self.key_dim)
                scores = [ops.einsum("bhqd,bhkd->bhqk", q, keys[i]) * scale for i in range(j + 1)]
                scores = ops.concatenate(scores, axis=-1) if j else scores[0]  # (b, h, 1, n)
                visible = ops.reshape(ops.arange(edges[j + 1]) <= position, (1, 1, 1, -1))
                scores = ops.where(visible, scores, ops.cast(-1e9, scores.dtype))
                weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), q.dtype)
                context = None
                for i in range(j + 1):
                    part = ops.matmul(weights[..., edges[i] : edges[i + 1]], values[i])
                    context = part if context is None else context + part
                return context, keys, values

            return branch

        if len(cache_k) == 1:  # one block: no branch to take
            context, cache_k, cache_v = write_and_attend(0)()
        else:
            context, cache_k, cache_v = ops.switch(
                current, [write_and_attend(j) for j in range(len(cache_k))]
            )
        return self._merge(context), cache_k, cache_v

    def get_config(self):
        config = super().get_config()
        config.update(
            {"num_heads": self.num_heads, "key_dim": self.key_dim, "dropout": self.dropout}
        )
        return config


@keras.saving.register_keras_serializable(package="musicseq")
class TransformerBlock(keras.layers.Layer):
    """Pre-norm block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.dropout = dropout
        # Sub-layers share this block's dtype policy (mixed precision survives a reload).
        policy = self.dtype_policy
        self.ln_attn = keras.layers.LayerNormalization(epsilon=1e-5, name="ln_attn", dtype=policy)
        self.attention = CausalSelfAttention(
            num_heads, dim // num_heads, dropout, name="attention", dtype=policy
        )
        self.ln_mlp = keras.layers.LayerNormalization(epsilon=1e-5, name="ln_mlp", dtype=policy)
        self.mlp_in = keras.layers.Dense(mlp_dim, activation="gelu", name="mlp_in", dtype=policy)
        self.mlp_out = keras.layers.Dense(dim, name="mlp_out", dtype=policy)
        self.drop = keras.layers.Dropout(dropout, dtype=policy)

    def build(self, input_shape):
        self.ln_attn.build(input_shape)
        self.attention.build(input_shape)
        self.ln_mlp.build(input_shape)
        self.mlp_in.build(input_shape)
        self.mlp_out.build((*input_shape[:-1], self.mlp_dim))

    def _mlp(self, x, training=None):
        return self.drop(self.mlp_out(self.mlp_in(self.ln_mlp(x))), training=training)

    def call(self, x, training=None, return_kv=False):
        attended = self.attention(self.ln_attn(x), training=training, return_kv=return_kv)
        if return_kv:
            attended, k, v = attended
        x = x + self.drop(attended, training=training)
        x = x + self._mlp(x, training)
        return (x, k, v) if return_kv else x

    def attention_map(self, x):
        """This block's causal attention weights ``(batch, heads, time, time)`` on input ``x``."""
        weights, _, _ = self.attention.attention_weights(self.ln_attn(x))
        return weights

    def step(self, x, cache_k, cache_v, position):
        attended, cache_k, cache_v = self.attention.step(
            self.ln_attn(x), cache_k, cache_v, position
        )
        x = x + attended
        return x + self._mlp(x), cache_k, cache_v

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dim": self.dim,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
            }
        )
        return config


def build_transformer(config: ModelConfig, chars=None) -> keras.Model:
    if config.units % config.num_heads:
        raise ValueError(f"units ({config.units}) must be divisible by heads ({config.num_heads})")
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    x = TokenAndPosition(
        config.vocab_size,
        config.units,
        config.context,
        config.positional,
        chars=chars,
        tonal=config.tonal,
        name="embedding",
    )(ids)
    for i in range(config.num_layers):
        x = TransformerBlock(
            config.units, config.num_heads, 4 * config.units, config.dropout, name=f"block_{i}"
        )(x)
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="ln_final")(x)
    if config.relative_pitch:
        logits = RelativePitchLogits(config.vocab_size, chars, name="logits")(x, ids)
    else:
        logits = keras.layers.Dense(config.vocab_size, dtype="float32", name="logits")(x)
    return keras.Model(ids, logits, name="musicseq_transformer")


def transformer_step(model: keras.Model, config: ModelConfig):
    """``(initial_state, step)`` with a key/value cache per layer, sliding past the context.

    State: the key and value caches of each layer (lists of blocks, :func:`cache_blocks`), a token buffer
    ``(batch, context)`` and the next position. When the window is full, the most recent
    half is re-encoded at positions ``0 … context/2 - 1`` (one full forward pass every
    ``context/2`` tokens) and generation continues from there.
    """
    import tensorflow as tf

    embed = model.get_layer("embedding")
    blocks = [model.get_layer(f"block_{i}") for i in range(config.num_layers)]
    ln_final, dense = model.get_layer("ln_final"), model.get_layer("logits")
    context, heads = config.context, config.num_heads
    key_dim = config.units // heads
    keep = context // 2

    def initial_state(batch):
        # The cache holds what the blocks compute: float16/bfloat16 under mixed precision.
        dtype = blocks[0].compute_dtype
        caches = [
            [cache_blocks(batch, heads, context, key_dim, dtype) for _ in "kv"] for _ in blocks
        ]
        buffer = tf.zeros(tf.stack([batch, context]), tf.int32)
        return [caches, buffer, tf.constant(0)]

    def prefill(buffer, like):
        # Re-encode the last `keep` tokens at positions 0..keep-1; later positions stay masked.
        recent = buffer[:, context - keep :]
        x = embed(recent)
        caches = []
        pad = [[0, 0], [0, 0], [0, context - keep], [0, 0]]
        for block, (old_k, old_v) in zip(blocks, like):
            x, k, v = block(x, return_kv=True)
            caches.append([split_like(tf.pad(k, pad), old_k), split_like(tf.pad(v, pad), old_v)])
        shifted = tf.concat([recent, tf.zeros_like(buffer[:, keep:])], axis=1)
        return caches, shifted

    def step(tokens, state):
        caches, buffer, position = state
        caches, buffer, position = tf.cond(
            position >= context,
            lambda: (*prefill(buffer, caches), tf.constant(keep)),
            lambda: (caches, buffer, position),
        )
        here = tf.equal(tf.range(context), position)[None, :]
        buffer = tf.where(here, tokens[:, None], buffer)
        x = embed(tokens[:, None], start=position)  # (batch, 1, dim)
        new_caches = []
        for block, (cache_k, cache_v) in zip(blocks, caches):
            x, cache_k, cache_v = block.step(x, cache_k, cache_v, position)
            new_caches.append([cache_k, cache_v])
        if config.relative_pitch:
            logits = dense(ln_final(x), tokens[:, None])[:, 0, :]  # (batch, vocab)
        else:
            logits = dense(ln_final(x))[:, 0, :]
        return logits, [new_caches, buffer, position + 1]

    return initial_state, step


def attention_maps(model: keras.Model, config: ModelConfig, ids) -> list:
    """Every block's attention weights on ``ids`` (1, T): a list of (heads, T, T) arrays."""
    x = model.get_layer("embedding")(ids)
    maps = []
    for i in range(config.num_layers):
        block = model.get_layer(f"block_{i}")
        maps.append(ops.convert_to_numpy(block.attention_map(x))[0])
        x = block(x)
    return maps
