"""Reference model: a plain one-layer keras.layers.LSTM character model with sensible defaults.

    python scripts/baseline_lstm.py --minutes 45 [--data data/abc] [--out docs/baseline_lstm.json]

Embedding 64 → keras.layers.LSTM(512) → Dense, Adam 2e-3, batch 64 × 100 characters,
trained for a wall-clock budget on the train split, then scored like every musicseq model:
held-out nats/char over whole test tunes. The shipped model must beat it (MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from musicseq.config import ModelConfig  # noqa: E402
from musicseq.corpus import load_split  # noqa: E402
from musicseq.data import encode_stream, eval_dataset, training_dataset  # noqa: E402
from musicseq.evaluate import held_out_loss  # noqa: E402
from musicseq.vocab import Vocab  # noqa: E402


class Budget(keras.callbacks.Callback):
    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.start = seconds, time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self.start >= self.seconds:
            self.model.stop_training = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--data", default="data/abc")
    parser.add_argument("--out", type=Path, default=Path("docs/baseline_lstm.json"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    train_texts = load_split(args.data, "train")
    vocab = Vocab.from_texts(train_texts)
    stream = encode_stream(train_texts, vocab)
    val = eval_dataset(encode_stream(load_split(args.data, "validation"), vocab), 100, 64)
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(len(vocab), 64, name="embedding")(ids)
    # Layer names as musicseq's own LSTM has them: the one scorer (musicseq.sampling) reads
    # a recurrent model through its step function, which finds the layers by these names.
    x = keras.layers.LSTM(512, return_sequences=True, name="rnn_0")(x)
    model = keras.Model(ids, keras.layers.Dense(len(vocab), name="logits")(x))
    model.compile(
        keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    started = time.monotonic()
    history = model.fit(
        training_dataset(stream, 100, 64, args.seed),
        steps_per_epoch=200,
        epochs=100_000,
        validation_data=val,
        callbacks=[Budget(args.minutes * 60)],
        verbose=2,
        shuffle=False,
    )
    seconds = time.monotonic() - started
    steps = int(model.optimizer.iterations.numpy())
    loss = held_out_loss(
        model, ModelConfig(kind="lstm", vocab_size=len(vocab)), vocab, load_split(args.data, "test")
    )
    result = {
        "model": "Embedding 64 -> keras.layers.LSTM(512) -> Dense; Adam 2e-3; batch 64 x 100",
        "minutes_budget": args.minutes,
        "seconds": seconds,
        "steps": steps,
        "training_tokens": steps * 64 * 100,
        "val_loss_last": history.history["val_loss"][-1],
        "test_nats_per_char": loss["nats_per_char"],
        "test_bits_per_char": loss["bits_per_char"],
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
