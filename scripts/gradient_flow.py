"""Gradient flow through time for rnn_scratch, simple_rnn, lstm and gru on real corpus text.

    python scripts/gradient_flow.py [--data data/abc] [--steps 150] [--out docs]

For each recurrent kind (128 units) it measures ``||dL/dh_t||`` against the distance from the
loss on 100-character validation windows, at initialisation and after ``--steps`` training
steps. A second panel shows gradient clipping: rnn_scratch with ReLU and identity
initialisation (the IRNN trick) trained with a high learning rate, with and without clipping
by norm, same seed. Writes ``gradient_flow.png`` and ``gradient_flow.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from musicseq.config import ModelConfig, TrainConfig  # noqa: E402
from musicseq.corpus import load_split  # noqa: E402
from musicseq.data import encode_stream, eval_dataset, training_dataset  # noqa: E402
from musicseq.gradients import state_gradient_norms  # noqa: E402
from musicseq.models import build_model  # noqa: E402
from musicseq.train import compile_model  # noqa: E402
from musicseq.vocab import Vocab  # noqa: E402

KINDS = ("rnn_scratch", "simple_rnn", "lstm", "gru")
WINDOW = 100


def clipped_run(stream, vocab, clipnorm, steps, seed):
    """Loss and global gradient norm per step for an IRNN at a high learning rate."""
    keras.utils.set_random_seed(seed)
    config = ModelConfig(
        kind="rnn_scratch",
        vocab_size=len(vocab),
        units=128,
        activation="relu",
        recurrent_initializer="identity",
    )
    model = build_model(config)
    optimizer = keras.optimizers.Adam(1e-2, clipnorm=clipnorm)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, tf.linalg.global_norm(grads)

    losses, norms = [], []
    for x, y in training_dataset(stream, WINDOW, 32, seed).take(steps):
        loss, norm = train_step(x, y)
        losses.append(float(loss))
        norms.append(float(norm))
    return losses, norms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/abc")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train_texts = load_split(args.data, "train")
    vocab = Vocab.from_texts(train_texts)
    train_stream = encode_stream(train_texts, vocab)
    val_stream = encode_stream(load_split(args.data, "validation"), vocab)
    x, y = next(iter(eval_dataset(val_stream, WINDOW, 64)))
    windows = np.concatenate([x.numpy(), y.numpy()[:, -1:]], axis=1)  # (64, WINDOW + 1)

    results = {"window": WINDOW, "steps": args.steps, "kinds": {}}
    for kind in KINDS:
        keras.utils.set_random_seed(args.seed)
        config = ModelConfig(kind=kind, vocab_size=len(vocab), units=128)
        model = build_model(config)
        before = state_gradient_norms(model, config, windows)
        compile_model(model, dataclasses.replace(TrainConfig(), learning_rate=2e-3))
        model.fit(
            training_dataset(train_stream, WINDOW, 32, args.seed),
            steps_per_epoch=args.steps,
            epochs=1,
            verbose=0,
            shuffle=False,
        )
        after = state_gradient_norms(model, config, windows)
        results["kinds"][kind] = {"init": before.tolist(), "trained": after.tolist()}
        print(
            f"{kind:12s} ||dL/dh|| at distance 0/10/50/99: init "
            + " ".join(f"{before[d]:.2e}" for d in (0, 10, 50, 99))
            + " | trained "
            + " ".join(f"{after[d]:.2e}" for d in (0, 10, 50, 99))
        )

    clip_steps = 300
    results["clipping"] = {}
    for label, clipnorm in (("clipnorm=1.0", 1.0), ("no clipping", None)):
        losses, norms = clipped_run(train_stream, vocab, clipnorm, clip_steps, args.seed)
        results["clipping"][label] = {"loss": losses, "grad_norm": norms}
        print(
            f"IRNN lr 1e-2 {label:13s}: final loss {np.mean(losses[-20:]):.3f}, max grad norm {max(norms):.1f}"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.5))
    for kind, series in results["kinds"].items():
        (line,) = ax1.semilogy(series["trained"], label=f"{kind} (trained {args.steps} steps)")
        ax1.semilogy(
            series["init"], "--", color=line.get_color(), alpha=0.6, label=f"{kind} (init)"
        )
    ax1.set_xlabel("distance from the loss (characters)")
    ax1.set_ylabel("mean ||dL/dh_t||")
    ax1.set_title("Gradient flow through time, 128 units")
    ax1.legend(fontsize=7)
    for label, series in results["clipping"].items():
        ax2.semilogy(series["loss"], label=label)
        ax3.semilogy(series["grad_norm"], label=label)
    ax2.set_title("IRNN (ReLU, identity W_hh), Adam lr 1e-2: loss")
    ax2.set_xlabel("step")
    ax2.set_ylabel("training loss (nats/char)")
    ax2.legend()
    ax3.set_title("global gradient norm before clipping")
    ax3.set_xlabel("step")
    ax3.legend()
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "gradient_flow.png", dpi=100)
    (args.out / "gradient_flow.json").write_text(json.dumps(results) + "\n")
    print(f"wrote {args.out / 'gradient_flow.png'} and {args.out / 'gradient_flow.json'}")


if __name__ == "__main__":
    main()
