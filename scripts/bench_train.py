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
import re
import statistics
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
        dict(kind="transformer", units=256, num_layers=4, num_heads=8, context=512),
        8,
        512,
    ),
    # `make train`'s Transformer as it trains: batch 16, dropout 0.1.
    "transformer_train": (
        dict(kind="transformer", units=256, num_layers=4, num_heads=8, context=512, dropout=0.1),
        16,
        512,
    ),
    # The same under mixed bfloat16 (`make train`'s precision since 2026-11-22); PyTorch under
    # torch.autocast(bfloat16), its mixed precision on the CPU.
    "transformer_train_bf16": (
        dict(
            kind="transformer",
            units=256,
            num_layers=4,
            num_heads=8,
            context=512,
            dropout=0.1,
            precision="mixed_bfloat16",
        ),
        16,
        512,
    ),
}
TORCH_PEERS = (
    "lstm512",
    "lstm1024",
    "gru512",
    "transformer",
    "transformer_train",
    "transformer_train_bf16",
)
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
    keras.mixed_precision.set_global_policy(overrides.pop("precision", "float32"))
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
    options = tf.data.Options()  # as musicseq.data: no autotuning thread (it can hold the
    options.autotune.enabled = False  # end of `fit` for ~5 s: see docs/benchmarks.md)
    data = data.with_options(options)
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"tokens_per_second": steps * batch * seq / seconds,
                      "peak_mb": r1.ru_maxrss / 1024, "parameters": model.count_params(),
                      "user": (r1.ru_utime - r0.ru_utime) / seconds,
                      "sys": (r1.ru_stime - r0.ru_stime) / seconds}))
    """
)

TORCH_RUN = textwrap.dedent(
    """
    import json, math, resource, sys, time
    import torch
    (kind, units, embedding, heads, layers, dropout, batch, seq, steps, warmup,
     precision) = json.loads(sys.argv[1])
    torch.manual_seed(0)
    class Recurrent(torch.nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.embedding = torch.nn.Embedding(98, embedding)
            self.rnn = cell(embedding, units, batch_first=True)
            self.out = torch.nn.Linear(units, 98)
        def forward(self, x):
            return self.out(self.rnn(self.embedding(x))[0])
    class Transformer(torch.nn.Module):
        # musicseq's Transformer: token embedding + sinusoidal positions, pre-norm blocks
        # (causal attention, GELU MLP of 4x width), final norm, output layer.
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(98, units)
            position = torch.arange(seq)[:, None]
            rate = torch.exp(torch.arange(0, units, 2) * (-math.log(10000.0) / units))
            table = torch.zeros(seq, units)
            table[:, 0::2], table[:, 1::2] = torch.sin(position * rate), torch.cos(position * rate)
            self.register_buffer("positions", table)
            # PyTorch's dropout also acts after the MLP's activation (musicseq's does not).
            block = torch.nn.TransformerEncoderLayer(units, heads, 4 * units, dropout=dropout,
                activation="gelu", batch_first=True, norm_first=True)
            self.blocks = torch.nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
            self.norm = torch.nn.LayerNorm(units)
            self.out = torch.nn.Linear(units, 98)
            self.register_buffer("mask", torch.nn.Transformer.generate_square_subsequent_mask(seq))
        def forward(self, x):
            h = self.embedding(x) * math.sqrt(units) + self.positions[: x.shape[1]]
            return self.out(self.norm(self.blocks(h, mask=self.mask, is_causal=True)))
    model = Transformer() if kind == "transformer" else Recurrent(
        torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.randint(3, 98, (batch, seq + 1))
    def step():
        optimiser.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "mixed_bfloat16"):
            logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, 98), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
    for _ in range(warmup):
        step()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"tokens_per_second": steps * batch * seq / seconds,
                      "peak_mb": r1.ru_maxrss / 1024, "threads": torch.get_num_threads(),
                      "user": (r1.ru_utime - r0.ru_utime) / seconds,
                      "sys": (r1.ru_stime - r0.ru_stime) / seconds,
                      "parameters": sum(p.numel() for p in model.parameters())}))
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


def spread(values, digits=0) -> str:
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def torch_payload(overrides, batch, seq, steps, warmup):
    return [
        overrides["kind"],
        overrides["units"],
        overrides.get("embedding_dim", 64),
        overrides.get("num_heads", 4),
        overrides.get("num_layers", 1),
        overrides.get("dropout", 0.0),
        batch,
        seq,
        steps,
        warmup,
        overrides.get("precision", "float32"),
    ]


def kept_rows() -> dict[str, str]:
    """The table rows already in docs/benchmarks.md, by configuration: a run with ``--only``
    replaces its own rows and keeps the others."""
    from _bench import BENCHMARKS

    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    section = re.search(r"<!-- bench_train:start -->(.*?)<!-- bench_train:end -->", text, re.S)
    rows = {}
    for line in section.group(1).splitlines() if section else []:
        name = line[2:].split(" ", 1)[0] if line.startswith("| ") else ""
        if name in CONFIGS:
            rows[name] = line
    return rows


def torch_version() -> str:
    """``, PyTorch X`` when the peers ran (their speed moves with the PyTorch release)."""
    try:
        import torch
    except ImportError:
        return ""
    return f", PyTorch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--only", nargs="+", default=list(CONFIGS))
    args = parser.parse_args()
    from _bench import machine, write_section

    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    results = {name: {"musicseq": [], "keras": [], "torch": []} for name in args.only}
    for round_ in range(args.rounds):  # interleaved: each round runs every system once
        for name in args.only:
            overrides, batch, seq = CONFIGS[name]
            got = results[name]
            got["musicseq"].append(
                run(KERAS_RUN, [overrides, batch, seq, args.steps, args.warmup, None])
            )
            if name in PLAIN:
                got["keras"].append(
                    run(KERAS_RUN, [overrides, batch, seq, args.steps, args.warmup, PLAIN[name]])
                )
            if have_torch and name in TORCH_PEERS:
                payload = torch_payload(overrides, batch, seq, args.steps, args.warmup)
                got["torch"].append(run(TORCH_RUN, payload))
            print(
                round_,
                name,
                json.dumps({k: [r["tokens_per_second"] for r in v] for k, v in got.items()}),
                flush=True,
            )
    pipeline = pipeline_throughput()
    lines = [
        "## Training throughput (`python scripts/bench_train.py`)",
        "",
        f"Machine: {machine()}{torch_version()}. Steady state: {args.warmup} warm-up steps, then {args.steps} timed "
        "steps (Adam, clipnorm 1, vocabulary 98; musicseq and plain Keras through `fit`, PyTorch "
        "with its own loop), each run in its own process; "
        f"{args.rounds} interleaved rounds (every system once per round). Figures: median "
        "(min–max) tokens/s; ratios: median of the per-round ratios (min–max); CPU: user and "
        "system CPU seconds per second of the musicseq run (2 = both cores busy).",
        "",
        "| configuration | musicseq | plain Keras layer | PyTorch | musicseq / Keras | musicseq / PyTorch | musicseq CPU user+sys | PyTorch CPU user+sys | peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = kept_rows()
    for name in args.only:
        _, batch, seq = CONFIGS[name]
        got = results[name]
        speed = {k: [r["tokens_per_second"] for r in v] for k, v in got.items()}

        def ratio(other, speed=speed):
            if not speed[other]:
                return "—"
            values = [a / b for a, b in zip(speed["musicseq"], speed[other])]
            return spread(values, 2).replace(" (", "× (")

        def cpu(system, got=got):
            runs = got[system]
            if not runs:
                return "—"
            user = statistics.median(r["user"] for r in runs)
            sys_ = statistics.median(r["sys"] for r in runs)
            return f"{user:.2f} + {sys_:.2f}"

        dropout = CONFIGS[name][0].get("dropout")
        precision = CONFIGS[name][0].get("precision")
        rows[name] = (
            f"| {name} (batch {batch}, seq {seq}{f', dropout {dropout}' if dropout else ''}"
            f"{f', {precision}' if precision else ''}) | "
            f"{spread(speed['musicseq'])} | "
            + (spread(speed["keras"]) if speed["keras"] else "—")
            + " | "
            + (
                spread(speed["torch"])
                if speed["torch"]
                else ("not installed" if name in TORCH_PEERS else "—")
            )
            + f" | {ratio('keras')} | {ratio('torch')} | {cpu('musicseq')} | {cpu('torch')} | "
            + f"{statistics.median(r['peak_mb'] for r in got['musicseq']):,.0f} |"
        )
    lines += [rows[name] for name in CONFIGS if name in rows]
    earlier = [name for name in rows if name not in args.only]
    lines += [
        "",
        *(
            [
                f"Rows {', '.join(earlier)}: from earlier runs of this script (not run this "
                "time: their machine, date and PyTorch may differ from the line above)."
            ]
            if earlier
            else []
        ),
        f"tf.data training pipeline alone (batch 32 × 100, default corpus): {pipeline:,.0f} tokens/s.",
    ]
    write_section("bench_train", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
