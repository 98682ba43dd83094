"""Training throughput (tokens/s) and peak memory per model kind, and the same through plain Keras.

    python scripts/bench_train.py [--steps 30] [--warmup 5] [--only lstm512 ...]

Each configuration runs in its own subprocess (so peak memory is per configuration):
``fit`` on random ids (vocabulary 98) for ``--warmup`` steps, then ``--steps`` timed steps
(steady state). Adam, sparse cross-entropy from logits, clipnorm 1 — musicseq's training
step. PyTorch ``nn.LSTM`` with the same sizes and optimiser runs only if torch is installed.
Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parent.parent

CONFIGS = {  # name: (model config overrides, batch, sequence length)
    "lstm512": (dict(kind="lstm", units=512), 32, 100),
    "lstm1024": (dict(kind="lstm", units=1024, embedding_dim=256), 8, 100),
    "gru512": (dict(kind="gru", units=512), 32, 100),
    "rnn_scratch512": (dict(kind="rnn_scratch", units=512), 32, 100),
    "transformer": (
        dict(kind="transformer", units=256, num_layers=4, num_heads=4, context=256),
        32,
        256,
    ),
}
PLAIN = {"lstm512": "LSTM", "lstm1024": "LSTM", "gru512": "GRU"}

KERAS_RUN = textwrap.dedent(
    """
    import json, os, resource, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras, numpy as np, tensorflow as tf
    from musicseq.config import ModelConfig, TrainConfig
    from musicseq.models import build_model
    from musicseq.train import compile_model
    overrides, batch, seq, steps, warmup, plain = json.loads(sys.argv[1])
    keras.utils.set_random_seed(0)
    config = ModelConfig(vocab_size=98, **overrides)
    if plain:  # the same model through the plain Keras layer
        ids = keras.Input((None,), dtype="int32")
        x = keras.layers.Embedding(98, config.embedding_dim)(ids)
        x = getattr(keras.layers, plain)(config.units, return_sequences=True)(x)
        model = keras.Model(ids, keras.layers.Dense(98)(x))
    else:
        model = build_model(config)
    compile_model(model, TrainConfig(), model_config=None if plain else config)
    rng = np.random.default_rng(0)
    x = rng.integers(3, 98, size=(batch * 8, seq)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, np.roll(x, -1, axis=1))).repeat().batch(batch).prefetch(2)
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tokens_per_second": steps * batch * seq / seconds, "peak_mb": peak,
                      "parameters": model.count_params()}))
    """
)

TORCH_RUN = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch
    units, embedding, batch, seq, steps, warmup = json.loads(sys.argv[1])
    torch.manual_seed(0)
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(98, embedding)
            self.lstm = torch.nn.LSTM(embedding, units, batch_first=True)
            self.out = torch.nn.Linear(units, 98)
        def forward(self, x):
            return self.out(self.lstm(self.embedding(x))[0])
    model = Model()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.randint(3, 98, (batch, seq + 1))
    def step():
        optimiser.zero_grad()
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 98), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    print(json.dumps({"tokens_per_second": steps * batch * seq / seconds,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "threads": torch.get_num_threads()}))
    """
)


def run(code: str, payload) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(payload)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def pipeline_throughput(seq: int = 100, batch: int = 32, batches: int = 300) -> float:
    """tokens/s of musicseq's tf.data training pipeline alone, on the default corpus."""
    import time

    from musicseq.corpus import load_split
    from musicseq.data import encode_stream, training_dataset
    from musicseq.vocab import Vocab

    texts = load_split(ROOT / "data" / "abc", "train")
    vocab = Vocab.from_texts(texts)
    ds = training_dataset(encode_stream(texts, vocab), seq, batch, 0)
    iterator = iter(ds)
    for _ in range(20):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch * seq / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--only", nargs="+", default=list(CONFIGS))
    args = parser.parse_args()
    from _bench import machine, write_section

    rows = []
    for name in args.only:
        overrides, batch, seq = CONFIGS[name]
        ours = run(KERAS_RUN, [overrides, batch, seq, args.steps, args.warmup, None])
        row = {"name": name, "batch": batch, "seq": seq, "musicseq": ours}
        if name in PLAIN:
            row["keras"] = run(
                KERAS_RUN, [overrides, batch, seq, args.steps, args.warmup, PLAIN[name]]
            )
        if name.startswith("lstm"):
            try:
                import torch  # noqa: F401

                row["torch"] = run(
                    TORCH_RUN,
                    [
                        overrides["units"],
                        overrides.get("embedding_dim", 64),
                        batch,
                        seq,
                        args.steps,
                        args.warmup,
                    ],
                )
            except ImportError:
                pass
        rows.append(row)
        print(json.dumps(row))
    pipeline = pipeline_throughput()
    lines = [
        "## Training throughput (`python scripts/bench_train.py`)",
        "",
        f"Machine: {machine()}. Steady state: {args.warmup} warm-up steps, then {args.steps} timed "
        "steps of `fit` (Adam, clipnorm 1, vocabulary 98); each configuration in its own process "
        "(peak resident memory of that process).",
        "",
        "| configuration | musicseq tokens/s | plain Keras layer tokens/s | PyTorch tokens/s | musicseq / Keras | musicseq / PyTorch | peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours = row["musicseq"]["tokens_per_second"]
        keras_speed = row.get("keras", {}).get("tokens_per_second")
        torch_speed = row.get("torch", {}).get("tokens_per_second")
        lines.append(
            f"| {row['name']} (batch {row['batch']}, seq {row['seq']}) | {ours:,.0f} | "
            + (f"{keras_speed:,.0f}" if keras_speed else "—")
            + " | "
            + (
                f"{torch_speed:,.0f}"
                if torch_speed
                else "not installed"
                if row["name"].startswith("lstm")
                else "—"
            )
            + " | "
            + (f"{ours / keras_speed:.2f}×" if keras_speed else "—")
            + " | "
            + (f"{ours / torch_speed:.2f}×" if torch_speed else "—")
            + f" | {row['musicseq']['peak_mb']:,.0f} |"
        )
    lines += [
        "",
        f"tf.data training pipeline alone (batch 32 × 100, default corpus): {pipeline:,.0f} tokens/s.",
    ]
    write_section("bench_train", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
