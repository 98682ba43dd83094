"""Generation speed: the lab's naive loop against musicseq's compiled sampler and SavedModel.

    python scripts/bench_generate.py            # writes its section of docs/benchmarks.md

Models have random weights (speed does not depend on them) with the end-of-tune logit
pushed to -1e9 so that no stream stops early; every figure counts characters actually
generated. All figures come from one run on one machine.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _bench import machine, write_section  # noqa: E402

from musicseq.config import ModelConfig, SampleConfig  # noqa: E402
from musicseq.export import call_generate, export_savedmodel  # noqa: E402
from musicseq.models import build_model  # noqa: E402
from musicseq.sampling import sampler_for  # noqa: E402
from musicseq.vocab import EOT, Vocab  # noqa: E402

VOCAB = Vocab([chr(c) for c in range(32, 127)] + ["\n"])  # 98 tokens, like the corpus


def no_stop(model) -> None:
    """Make end-of-tune unreachable so every stream runs to max_len."""
    dense = model.get_layer("logits")
    bias = dense.bias.numpy()
    bias[EOT] = -1e9
    dense.bias.assign(bias)


def timed(fn, repeats=3):
    fn()  # warm-up (tracing)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def naive_lab_loop(units: int, chars: int) -> float:
    """The lab's loop: a stateful batch-1 model, one eager call per character. chars/s."""
    keras.utils.set_random_seed(0)
    ids = keras.Input(batch_shape=(1, 1), dtype="int32")
    x = keras.layers.Embedding(len(VOCAB), 256)(ids)
    x = keras.layers.LSTM(units, return_sequences=True, stateful=True)(x)
    model = keras.Model(ids, keras.layers.Dense(len(VOCAB))(x))
    token = tf.constant([[5]])

    def run():
        nonlocal token
        for _ in range(chars):
            logits = model(token)[:, -1, :]
            token = tf.random.categorical(logits, 1, dtype=tf.int32)

    return chars / timed(run, repeats=1)


def main() -> None:
    rows = []
    lstm = ModelConfig(kind="lstm", vocab_size=len(VOCAB), units=1024, embedding_dim=256)
    keras.utils.set_random_seed(0)
    model = build_model(lstm)
    no_stop(model)
    sampler = sampler_for(model, lstm)
    prime = [EOT] + VOCAB.encode("X:1\n")

    naive = naive_lab_loop(1024, 300)
    rows.append(
        (
            "LSTM 1024, batch 1: naive loop (one eager model call per character, as the lab)",
            naive,
            1.0,
        )
    )
    single = 2000 / timed(lambda: sampler(prime, 1, 2000, 1.0, 0, 1.0, 1))
    rows.append(("LSTM 1024, batch 1: musicseq compiled sampler", single, single / naive))
    streams = 64 * 500 / timed(lambda: sampler(prime, 64, 500, 1.0, 0, 1.0, 1))
    rows.append(
        ("LSTM 1024, 64 streams: musicseq compiled sampler (aggregate)", streams, streams / naive)
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = export_savedmodel(model, lstm, VOCAB, Path(tmp) / "sm")
        loaded = tf.saved_model.load(str(path))
        config = SampleConfig(num=1, max_len=2000, seed=1)
        exported = 2000 / timed(lambda: call_generate(loaded, config))
    rows.append(("LSTM 1024, batch 1: exported SavedModel `generate`", exported, exported / naive))

    # Transformer: per-token time at two positions, from the difference of two lengths.
    tconf = ModelConfig(
        kind="transformer",
        vocab_size=len(VOCAB),
        units=256,
        num_layers=4,
        num_heads=4,
        context=1024,
    )
    keras.utils.set_random_seed(0)
    tmodel = build_model(tconf)
    no_stop(tmodel)
    tsampler = sampler_for(tmodel, tconf)

    def per_token(position, span=100):
        short = timed(lambda: tsampler(prime, 1, position - span // 2, 1.0, 0, 1.0, 1))
        long = timed(lambda: tsampler(prime, 1, position + span // 2, 1.0, 0, 1.0, 1))
        return (long - short) / span

    cached_100, cached_1000 = per_token(100), per_token(1000)

    full = tf.function(lambda ids: tmodel(ids, training=False)[:, -1, :], reduce_retracing=True)

    def uncached(position, span=20):
        ids = tf.constant(
            np.random.default_rng(0).integers(3, len(VOCAB), size=(1, position + span)), tf.int32
        )
        full(ids[:, :position])  # warm-up
        start = time.perf_counter()
        for p in range(position, position + span):
            full(ids[:, :p])
        return (time.perf_counter() - start) / span

    uncached_100, uncached_1000 = uncached(100), uncached(1000)

    lines = [
        "## Generation speed (`python scripts/bench_generate.py`)",
        "",
        f"Machine: {machine()}.",
        "",
        "| what | characters/s | × naive loop |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {speed:,.0f} | {ratio:.1f}× |" for name, speed, ratio in rows]
    lines += [
        "",
        "Transformer d256, 4 layers, 4 heads, context 1024, batch 1 — milliseconds per token:",
        "",
        "| position | with key/value cache | without cache (full re-run of the prefix) |",
        "|---:|---:|---:|",
        f"| ~100 | {cached_100 * 1e3:.2f} | {uncached_100 * 1e3:.2f} |",
        f"| ~1000 | {cached_1000 * 1e3:.2f} | {uncached_1000 * 1e3:.2f} |",
        f"| ratio 1000/100 | {cached_1000 / cached_100:.2f} | {uncached_1000 / uncached_100:.2f} |",
        "",
        "Targets: single stream ≥ 20× the naive loop "
        f"({'met' if single / naive >= 20 else 'missed'}: {single / naive:.1f}×); 64 streams ≥ 150× "
        f"({'met' if streams / naive >= 150 else 'missed'}: {streams / naive:.1f}×); Transformer per-token time "
        f"at 1000 ≤ 1.5× that at 100 ({'met' if cached_1000 / cached_100 <= 1.5 else 'missed'}: "
        f"{cached_1000 / cached_100:.2f}×); SavedModel within 10% of in-process "
        f"({'met' if exported >= 0.9 * single else 'missed'}: {exported / single:.2f}× in-process speed).",
        "",
        "Note: the cached step attends over the whole fixed-size cache with a mask, so its cost "
        "does not grow with the position (it is the cost of position `context` from the start).",
    ]
    write_section("bench_generate", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
