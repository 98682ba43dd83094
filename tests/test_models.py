"""The model zoo: course-number tests for MyRNNCell, attention against Keras, every kind round-trips."""

import dataclasses

import keras
import numpy as np
import pytest

from musicseq.config import MODEL_KINDS, ModelConfig
from musicseq.models import build_model, step_function
from musicseq.models.rnn_cell import MyRNNCell


def _rnn(cell, inputs, h0=None):
    layer = keras.layers.RNN(cell, return_sequences=True)
    x = np.asarray(inputs, dtype=np.float32)
    layer.build(x.shape)
    return layer, x


def test_worked_example_from_the_course():
    cell = MyRNNCell(2, activation="tanh")
    layer, x = _rnn(cell, [[[1.0], [-1.0], [2.0]]])
    w_h = np.array([[0.5, 0.1], [0.2, 0.6]], np.float32)
    cell.kernel.assign(np.array([[0.3, 0.4]], np.float32))  # W_x^T
    cell.recurrent_kernel.assign(w_h.T)  # Keras multiplies row vectors: h @ W_hh^T
    cell.bias.assign(np.zeros(2, np.float32))
    h = layer(x).numpy()[0]
    np.testing.assert_allclose(h[0], [0.2913, 0.3799], atol=1e-4)
    np.testing.assert_allclose(h[1], [-0.1158, -0.1133], atol=1e-4)
    np.testing.assert_allclose(h[2], [0.4860, 0.6100], atol=1e-4)


def test_hand_built_relu_rnn_detects_two_ones():
    cell = MyRNNCell(3, activation="relu", use_bias=False)
    sequence = [0, 1, 0, 1, 1, 1, 0, 1, 1]
    layer, x = _rnn(cell, [[[v] for v in sequence]])
    cell.kernel.assign(np.array([[1.0, 0.0, 0.0]], np.float32))
    w_hh = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    cell.recurrent_kernel.assign(w_hh.T)
    h = layer(x, initial_state=[np.array([[0.0, 0.0, 1.0]], np.float32)]).numpy()[0]
    y = np.maximum(h @ np.array([1.0, 1.0, -1.0], np.float32), 0.0)
    np.testing.assert_array_equal(y, [0, 0, 0, 0, 1, 1, 0, 0, 1])


def test_my_rnn_cell_equals_keras_simple_rnn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 7, 5)).astype(np.float32)
    mine = keras.layers.RNN(MyRNNCell(6), return_sequences=True)
    theirs = keras.layers.SimpleRNN(6, return_sequences=True)
    mine.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(
        [
            w.astype(np.float32)
            for w in (rng.normal(size=(5, 6)), rng.normal(size=(6, 6)) * 0.3, rng.normal(size=6))
        ]
    )
    mine.set_weights(theirs.get_weights())
    np.testing.assert_allclose(mine(x).numpy(), theirs(x).numpy(), atol=1e-5)


def test_bptt_gradients_match_finite_differences():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 6, 3)), tf.float64)
    layer = keras.layers.RNN(MyRNNCell(4, dtype="float64"), return_sequences=False, dtype="float64")
    layer.build(x.shape)
    cell = layer.cell
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    grad = tape.gradient(loss, cell.recurrent_kernel).numpy()
    w = cell.recurrent_kernel.numpy()
    eps = 1e-6
    for i, j in [(0, 0), (1, 2), (3, 1)]:
        bumped = w.copy()
        bumped[i, j] += eps
        cell.recurrent_kernel.assign(bumped)
        up = float(tf.reduce_sum(layer(x) ** 2))
        bumped[i, j] -= 2 * eps
        cell.recurrent_kernel.assign(bumped)
        down = float(tf.reduce_sum(layer(x) ** 2))
        cell.recurrent_kernel.assign(w)
        assert abs((up - down) / (2 * eps) - grad[i, j]) < 1e-6


def test_identity_initialisation_trick():
    cell = MyRNNCell(5, activation="relu", recurrent_initializer="identity")
    cell.build((None, 3))
    np.testing.assert_array_equal(cell.recurrent_kernel.numpy(), np.eye(5))
    np.testing.assert_array_equal(cell.bias.numpy(), np.zeros(5))
    again = MyRNNCell.from_config(cell.get_config())
    assert again.activation == "relu" and again.units == 5


def test_causal_attention_matches_keras_multi_head_attention():
    from musicseq.models.transformer import CausalSelfAttention

    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 9, 16)).astype(np.float32)
    heads, key_dim = 4, 4
    mine = CausalSelfAttention(heads, key_dim)
    mine.build(x.shape)
    mine.set_weights(
        [
            w.astype(np.float32)
            for w in (
                rng.normal(size=(16, 48)) * 0.3,
                rng.normal(size=48) * 0.1,
                rng.normal(size=(16, 16)) * 0.3,
                rng.normal(size=16) * 0.1,
            )
        ]
    )
    qkv, qkv_b, out, out_b = mine.get_weights()
    mha = keras.layers.MultiHeadAttention(heads, key_dim)
    mha(x, x, use_causal_mask=True)
    qkv = qkv.reshape(16, 3, heads, key_dim)
    qkv_b = qkv_b.reshape(3, heads, key_dim)
    mha.set_weights(
        [
            qkv[:, 0],
            qkv_b[0],
            qkv[:, 1],
            qkv_b[1],
            qkv[:, 2],
            qkv_b[2],
            out.reshape(heads, key_dim, 16),
            out_b,
        ]
    )
    np.testing.assert_allclose(mine(x).numpy(), mha(x, x, use_causal_mask=True).numpy(), atol=1e-5)


def test_causal_attention_in_query_blocks_matches_one_block(monkeypatch):
    # Training attends in query blocks (each over the keys up to its end); on a length that
    # is not a multiple of the block, outputs and gradients equal one block over everything
    # (and the short case above matches Keras's MultiHeadAttention).
    import tensorflow as tf

    from musicseq.models import transformer
    from musicseq.models.transformer import CausalSelfAttention

    x = tf.constant(np.random.default_rng(4).normal(size=(2, 23, 16)).astype(np.float32))
    layer = CausalSelfAttention(4, 4)
    layer.build(x.shape)
    layer.set_weights([w * 3.0 for w in layer.get_weights()])

    def run(block):
        monkeypatch.setattr(transformer, "QUERY_BLOCK", block)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x)
            loss = tf.reduce_sum(out * tf.sin(out))
        return out.numpy(), [g.numpy() for g in tape.gradient(loss, [x, *layer.weights])]

    whole, whole_grads = run(64)
    assert transformer.QUERY_BLOCK == 64 and 23 <= 64
    for block in (5, 8):
        out, grads = run(block)
        np.testing.assert_allclose(out, whole, atol=1e-5)
        for got, want in zip(grads, whole_grads):
            # float32 sums in another order: gradients up to ~180 here differ by ~6e-6 of that
            scale = max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


def _config(kind, **overrides):
    base = dict(
        kind=kind, vocab_size=11, units=16, embedding_dim=8, num_layers=2, num_heads=2, context=12
    )
    base.update(overrides)
    return ModelConfig(**base)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_kind_round_trips_and_steps_like_the_full_model(kind, tmp_path):
    from musicseq.models import register_custom_objects

    register_custom_objects()
    config = _config(kind)
    model = build_model(config)
    ids = np.random.default_rng(3).integers(0, 11, size=(3, 10)).astype(np.int32)
    logits = model(ids).numpy()
    assert logits.shape == (3, 10, 11)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded(ids).numpy(), logits, atol=1e-6)
    clone = keras.Model.from_config(model.get_config())
    assert clone.count_params() == model.count_params()
    # The one-character step function computes the same logits as the whole-sequence model.
    initial_state, step = step_function(model, config)
    state = initial_state(3)
    for t in range(10):
        out, state = step(ids[:, t], state)
        np.testing.assert_allclose(out.numpy(), logits[:, t], atol=1e-4)


def test_transformer_step_attends_over_filled_blocks_like_the_full_pass():
    # Context 160 with blocks of 64: positions 0-63 read 64 slots, 64-127 read 128, then all
    # 160; every block edge must give the full pass's logits, eagerly and compiled.
    import tensorflow as tf

    from musicseq.models.transformer import ATTENTION_BLOCK

    assert ATTENTION_BLOCK == 64
    config = _config("transformer", context=160)
    model = build_model(config)
    ids = np.random.default_rng(5).integers(0, 11, size=(2, 150)).astype(np.int32)
    logits = model(ids).numpy()
    initial_state, step = step_function(model, config)
    compiled = tf.function(step)
    eager_state = compiled_state = initial_state(2)
    for t in range(150):
        out, eager_state = step(ids[:, t], eager_state)
        np.testing.assert_allclose(out.numpy(), logits[:, t], atol=1e-4)
        fast, compiled_state = compiled(tf.constant(ids[:, t]), compiled_state)
        np.testing.assert_allclose(fast.numpy(), logits[:, t], atol=1e-4)


def test_transformer_single_stream_keeps_one_block_and_the_same_logits():
    # One stream (the Python int 1, as the sampler passes it) keeps its cache in one block of the
    # whole context, through a slide past the context too: the logits are the other layout's.
    config = _config("transformer", context=128)
    model = build_model(config)
    ids = np.random.default_rng(6).integers(0, 11, size=(1, 140)).astype(np.int32)
    initial_state, step = step_function(model, config)
    single, blocked = initial_state(1), initial_state(np.int32(1))
    assert [len(layer[0]) for layer in single[0]] == [1] * config.num_layers
    assert [len(layer[0]) for layer in blocked[0]] == [2] * config.num_layers
    for t in range(140):
        one, single = step(ids[:, t], single)
        two, blocked = step(ids[:, t], blocked)
        np.testing.assert_allclose(one.numpy(), two.numpy(), atol=1e-4)
    assert [len(layer[0]) for layer in single[0]] == [1] * config.num_layers
    # The slide at t = 128 re-encoded tokens 64..127 at positions 0..63: token 139 sits at
    # position 75 of ids[64:140].
    np.testing.assert_allclose(one.numpy(), model(ids[:, 64:140]).numpy()[:, -1], atol=1e-4)


def test_transformer_slides_past_its_context():
    config = _config("transformer", context=8)
    model = build_model(config)
    ids = np.random.default_rng(4).integers(0, 11, size=(2, 20)).astype(np.int32)
    initial_state, step = step_function(model, config)
    state = initial_state(2)
    for t in range(20):
        out, state = step(ids[:, t], state)
    # Context 8 keeps the newest 4 tokens on each slide: slides at t = 8, 12, 16; the last one
    # re-encoded tokens 12..15 at positions 0..3, so token 19 sits at position 7 of ids[12:20].
    window = ids[:, 12:20]
    np.testing.assert_allclose(out.numpy(), model(window).numpy()[:, -1], atol=1e-4)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_few_training_steps_lower_the_loss(kind):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = build_model(_config(kind, vocab_size=5, num_layers=1))
    model.compile(
        keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    pattern = np.tile(np.array([1, 2, 3, 4], np.int32), 40)
    x = np.stack([pattern[i : i + 12] for i in range(16)])
    y = np.stack([pattern[i + 1 : i + 13] for i in range(16)])
    first = model.evaluate(x, y, verbose=0)
    model.fit(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat(),
        steps_per_epoch=30,
        verbose=0,
        shuffle=False,
    )
    assert model.evaluate(x, y, verbose=0) < first * 0.7


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError):
        build_model(dataclasses.replace(_config("transformer"), num_heads=3))
    with pytest.raises(ValueError):
        build_model(_config("nope"))


def test_lecture_gradient_arithmetic_diag_09_11_after_49_steps():
    from musicseq.gradients import linear_recurrence_gradient

    grad = linear_recurrence_gradient([0.9, 1.1], steps=49)
    np.testing.assert_allclose(grad, [0.9**49, 1.1**49], rtol=1e-9)
    assert abs(grad[0] - 0.00573) < 1e-5 and abs(grad[1] - 106.7) < 0.05


def test_state_gradient_norms_shapes_and_vanishing_in_simple_rnn():
    from musicseq.gradients import state_gradient_norms

    keras.utils.set_random_seed(0)
    config = _config("simple_rnn", num_layers=1, units=32)
    model = build_model(config)
    ids = np.random.default_rng(0).integers(3, 11, size=(8, 41)).astype(np.int32)
    norms = state_gradient_norms(model, config, ids)
    assert norms.shape == (40,) and np.all(norms >= 0)
    assert norms[30:].mean() < norms[:3].mean()  # far-away states get less gradient


@pytest.mark.parametrize("kind", ["transformer", "gru"])
def test_the_one_scorer_scores_every_character_once_with_half_a_context_of_history(kind):
    # Reference written out by hand: prediction t of a Transformer with context 8 comes from
    # the window starting at 0 (t < 8) or at 4 * (1 + (t - 8) // 4), i.e. with >= 4 before it.
    import tensorflow as tf

    from musicseq.sampling import Sampler

    config = _config(kind, context=8)
    model = build_model(config)
    rng = np.random.default_rng(6)
    lengths = np.asarray([30, 7, 19], np.int32)
    ids = np.zeros((3, 30), np.int32)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(3, 11, size=n)
    sampler = Sampler(model, config)
    got = sampler.score_ids(tf.constant(ids), tf.constant(lengths)).numpy()
    positions = sampler.score_positions(tf.constant(ids), tf.constant(lengths)).numpy()
    assert positions.shape == (3, 29)
    for row, n in enumerate(lengths):
        expected = np.zeros(29)
        for t in range(n - 1):
            start = 0 if kind != "transformer" or t < 8 else 4 * (1 + (t - 8) // 4)
            window = ids[row : row + 1, start : t + 1]
            logits = model(window).numpy()[0, -1].astype(np.float64)
            log_z = np.log(np.exp(logits - logits.max()).sum()) + logits.max()
            expected[t] = log_z - logits[ids[row, t + 1]]
        assert got[row] == pytest.approx(expected.sum(), rel=1e-4)
        np.testing.assert_allclose(positions[row], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_fused_layers_equal_keras_layers_in_outputs_and_gradients(name):
    import tensorflow as tf

    from musicseq.models import fused

    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=(3, 11, 7)).astype(np.float32))
    ref = getattr(keras.layers, name)(9, return_sequences=True, return_state=True)
    mine = getattr(fused, f"Fused{name}")(9, return_sequences=True, return_state=True)
    ref.build(x.shape)
    mine.build(x.shape)
    ref.set_weights(
        [w + rng.normal(size=w.shape).astype(np.float32) * 0.3 for w in ref.get_weights()]
    )
    mine.set_weights(ref.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outs = [ref(x), mine(x)]
        losses = [tf.reduce_sum(o[0] ** 2) + tf.reduce_sum(o[-1] * 0.5) for o in outs]
    for a, b in zip(*outs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    ref_grads = tape.gradient(losses[0], [x, *ref.trainable_weights])
    my_grads = tape.gradient(losses[1], [x, *mine.trainable_weights])
    for a, b in zip(ref_grads, my_grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_fused_layers_defer_to_keras_where_the_fast_path_does_not_apply():
    from musicseq.models import fused

    layer = fused.FusedLSTM(4, go_backwards=True)
    layer.build((1, 3, 2))
    assert not fused._fast_path_ok(layer, None, False)
    plain = fused.FusedGRU(4)
    plain.build((1, 3, 2))
    assert fused._fast_path_ok(plain, None, False)  # CPU, default activations
    assert not fused._fast_path_ok(plain, np.ones((1, 3), bool), False)  # masks use Keras' loop


def test_fused_model_loads_as_plain_keras_weights(tmp_path):
    config = _config("lstm", num_layers=1)
    fused_model = build_model(config)
    plain_model = build_model(dataclasses.replace(config, fused=False))
    plain_model.set_weights(fused_model.get_weights())  # same weights, same layout
    ids = np.random.default_rng(6).integers(0, 11, size=(2, 8)).astype(np.int32)
    np.testing.assert_allclose(fused_model(ids).numpy(), plain_model(ids).numpy(), atol=1e-5)
