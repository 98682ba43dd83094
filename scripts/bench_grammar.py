"""Milliseconds per decoding step of the TensorFlow grammar (the plain mask and the next state).

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python scripts/bench_grammar.py [--steps 200] [--runs 5]

For N = 8, 64 and 200 streams (``--streams``; forms AABB / AB / free, forced meters and keys,
a tonic cadence), a compiled ``tf.while_loop`` takes ``--steps`` steps: the plain mask, a uniform
draw among the allowed tokens, the next state (``plain_allowed_and_next`` and ``take``, as
the decoding loop; against ``plain_allowed`` then ``advance``, a second step for the token).
Prints the median over ``--runs`` of ms per step, as a graph and (with ``--xla``)
jit-compiled.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import tensorflow as tf

from musicseq.grammar_graph import GraphGrammar

ROOT = Path(__file__).resolve().parent.parent
PLANS = [
    {"fixed": {"M": "6/8", "K": "D"}, "form": "AABB", "bars": 8, "cadence": "tonic"},
    {"fixed": {"M": "4/4", "K": "Ador"}, "form": "AB", "bars": 8, "cadence": None},
    {"fixed": {"M": "3/4", "K": "G"}, "form": None, "bars": 8, "cadence": "tonic"},
    {"fixed": {"M": "2/4", "K": "Em"}, "form": "AABBCC", "bars": 16, "cadence": "tonic"},
]


def loop(grammar: GraphGrammar, masked: str, steps: int, jit: bool):
    def run(state, config, seed):
        def body(i, state):
            if masked == "plain":  # as the decoding loop: the next states come with the mask
                mask, step = grammar.plain_allowed_and_next(state, config)
            else:  # "plain+advance": the mask, then a second step for the token
                mask = grammar.plain_allowed(state, config)
            logits = tf.where(mask, 0.0, float("-inf"))
            tokens = tf.random.stateless_categorical(
                logits, 1, seed=tf.stack([seed, i]), dtype=tf.int32
            )[:, 0]
            if masked == "plain":
                return i + 1, grammar.take(state, tokens, step)
            return i + 1, grammar.advance(state, config, tokens)

        _, state = tf.while_loop(lambda i, s: i < steps, body, (tf.constant(0), state))
        return state

    return tf.function(run, jit_compile=jit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--streams", type=int, nargs="+", default=[8, 64, 200])
    parser.add_argument(
        "--xla", action="store_true", help="also time the loop compiled by XLA (~60 s to compile)"
    )
    args = parser.parse_args()
    chars = json.loads((ROOT / "saved_models/folk-transformer/vocab.json").read_text())["chars"]
    # The decoding loop's grammar: no look-ahead inside !..!, "..", fields (see GraphGrammar).
    grammar = GraphGrammar(chars, full_lookahead=False)
    runs = [("plain", False), ("plain+advance", False)] + [("plain", True)] * args.xla
    for masked, jit in runs:
        for n in args.streams:
            config = tf.constant(grammar.plans([PLANS[i % len(PLANS)] for i in range(n)]))
            fn = loop(grammar, masked, args.steps, jit)
            state = grammar.initial(config)
            start = time.perf_counter()
            fn(state, config, tf.constant(0)).numpy()  # compile
            print(f"N={n}: compiled in {time.perf_counter() - start:.0f} s", flush=True)
            times = []
            for run in range(args.runs):
                start = time.perf_counter()
                fn(state, config, tf.constant(run + 1)).numpy()
                times.append((time.perf_counter() - start) * 1000 / args.steps)
            label = {
                "plain": "plain_allowed_and_next + take",
                "plain+advance": "plain_allowed + advance",
            }[masked]
            print(
                f"{label:28s} jit={jit!s:5s} N={n:3d}: {statistics.median(times):.2f} ms/step"
                f" (runs: {', '.join(f'{t:.2f}' for t in times)})",
                flush=True,
            )


if __name__ == "__main__":
    main()
