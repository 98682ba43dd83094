"""Where the time of an LSTM training step goes (512 units, batch 32, sequence 100, CPU).

    python scripts/profile_lstm.py

Times, in one process, the pieces of the step for the plain Keras layer and musicseq's fused
layer (with and without XLA): the forward pass, forward + backward, and the whole optimiser
step. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _bench import machine, write_section  # noqa: E402

from musicseq.models.fused import FusedLSTM  # noqa: E402

B, T, U, E, V = 32, 100, 512, 64, 98


def best_of(fn, repeats=5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def build(layer_cls):
    keras.utils.set_random_seed(0)
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(V, E)(ids)
    x = layer_cls(U, return_sequences=True)(x)
    return keras.Model(ids, keras.layers.Dense(V)(x))


def time_steps(layer_cls, xla: bool, x, y) -> list[float]:
    """Seconds for the forward pass, forward + backward, and a whole optimiser step."""
    model = build(layer_cls)
    optimizer = keras.optimizers.Adam(2e-3, clipnorm=1.0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=xla)
    def forward():
        return model(x, training=True)

    @tf.function(jit_compile=xla)
    def gradients():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    @tf.function(jit_compile=xla)
    def train_step():
        grads = gradients.python_function()
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    return [best_of(f) for f in (forward, gradients, train_step)]


def main() -> None:
    x = tf.constant(np.random.default_rng(0).integers(3, V, size=(B, T)), tf.int32)
    y = tf.roll(x, -1, axis=1)
    rows = []
    for label, layer_cls, xla in (
        ("keras.layers.LSTM", keras.layers.LSTM, False),
        ("FusedLSTM", FusedLSTM, False),
        ("FusedLSTM + XLA", FusedLSTM, True),
    ):
        times = time_steps(layer_cls, xla, x, y)
        rows.append((label, *times))
        print(label, [f"{t * 1000:.0f} ms" for t in times])

    tokens = B * T
    lines = [
        "## Where the LSTM training time goes (`python scripts/profile_lstm.py`)",
        "",
        f"LSTM 512 units, batch 32 × 100, vocabulary 98, Adam. Machine: {machine()}. Best of 5, one process.",
        "",
        "| implementation | forward (ms) | forward + backward (ms) | whole train step (ms) | tokens/s |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r[0]} | {r[1] * 1e3:.0f} | {r[2] * 1e3:.0f} | {r[3] * 1e3:.0f} | {tokens / r[3]:,.0f} |"
        for r in rows
    ]
    write_section("profile_lstm", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
