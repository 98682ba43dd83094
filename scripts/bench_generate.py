"""Generation speed, every comparison measured in one run, in interleaved rounds.

    python scripts/bench_generate.py            # writes its section of docs/benchmarks.md
    python scripts/bench_generate.py --quick    # fewer rounds, nothing written
    python scripts/bench_generate.py --only-free --rounds 5   # section 3 alone, spliced in
    python scripts/bench_generate.py --only-shrink --rounds 2 # section 5 alone, spliced in

1. The lab's naive loop against musicseq's compiled loop and SavedModel (LSTM 1024).
2. The Transformer's cached step, per position: a fixed number of steps timed from a cache
   already filled to that position (not the difference of two noisy totals), median and
   spread of the rounds, this tree against the baseline commit (attention over the whole
   cache) run from a git worktree of it.
3. Free sampling at 64 streams, ~300 characters a tune: a Transformer of the shipped
   default's shape, this tree against the baseline, interleaved rounds; and the shipped
   default itself in this tree.
4. Constrained against free decoding, per loop step, at 64 and 200 streams (the grammar in
   the compiled loop).
5. Ended streams leaving the batch (``Sampler.run``'s ``shrink``): the shipped default's
   free tunes as ``musicseq evaluate`` draws them (200, to their own ends), with and without,
   interleaved rounds; the tunes must be the same.

Models in 1 and 2 have random weights (speed does not depend on them); every model has its
end-of-tune logit pushed to -1e9 where a fixed length is timed, so no stream stops early.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

BASELINE = "003582e"  # the last commit whose cached step attended over the whole cache
SHIPPED = ROOT / "saved_models" / "folk-transformer"
POSITIONS = (0, 64, 128, 256, 448)
STEPS_TIMED = 32


def no_stop(model) -> None:
    """Make end-of-tune unreachable so every stream runs to max_len."""
    from musicseq.vocab import EOT

    dense = model.get_layer("logits")
    bias = dense.bias.numpy()
    bias[EOT] = -1e9
    dense.bias.assign(bias)


def spread(values, unit="", digits=2) -> str:
    """``median (min–max)``."""
    return (
        f"{statistics.median(values):,.{digits}f}{unit} "
        f"({min(values):,.{digits}f}–{max(values):,.{digits}f})"
    )


# --- measurements run in a child process (this tree or the baseline's) -----------------------


def measure_positions(streams: int) -> dict:
    """ms per cached step at each of POSITIONS, from a cache filled to that position."""
    import keras
    import tensorflow as tf

    from musicseq.models import build_model, step_function

    config = transformer_config()
    keras.utils.set_random_seed(0)
    model = build_model(config)
    initial_state, step = step_function(model, config)
    step = tf.function(step)
    tokens = tf.fill([streams], 5)
    # As the sampler passes it: one stream as the Python int 1, more as a tensor.
    state = initial_state(streams if streams == 1 else tf.constant(streams))
    out, position = {}, 0
    logits, state = step(tokens, state)  # trace
    position = 1
    for target in POSITIONS:
        while position < target:
            logits, state = step(tokens, state)
            position += 1
        timed_state = state
        logits.numpy()
        start = time.perf_counter()
        for _ in range(STEPS_TIMED):
            logits, timed_state = step(tokens, timed_state)
        logits.numpy()
        out[target] = (time.perf_counter() - start) / STEPS_TIMED * 1e3
    return out


CHARS = [chr(c) for c in range(32, 127)] + ["\n"]  # a vocabulary the size of the corpus's


def transformer_config():
    """The shipped default's shape, as the baseline knows it (characters only)."""
    from musicseq.config import ModelConfig

    vocab_size = len(CHARS) + 3  # and the reserved ids
    return ModelConfig(
        kind="transformer", vocab_size=vocab_size, units=256, num_layers=4, num_heads=8, context=512
    )


def measure_free(streams: int, length: int, shipped: bool = False) -> float:
    """chars/s of free sampling (no early stop): a Transformer of the shipped default's shape
    with random weights, which both trees can build (the baseline cannot load today's shipped
    default: its metrical and tonal inputs came later), or with ``shipped`` the shipped default
    itself (this tree only)."""
    import keras

    from musicseq.models import build_model
    from musicseq.sampling import sampler_for
    from musicseq.vocab import EOT

    if shipped:
        from musicseq.modeldir import ModelDir

        loaded = ModelDir.load(SHIPPED)
        model, config, prime = loaded.model, loaded.config, loaded.vocab.encode("X:1\n")
    else:
        from musicseq.vocab import Vocab

        vocab = Vocab(CHARS)
        config = transformer_config()
        keras.utils.set_random_seed(0)
        model, prime = build_model(config), vocab.encode("X:1\n")
    no_stop(model)
    try:
        sampler = sampler_for(model, config, loaded.vocab if shipped else None)
    except TypeError:  # the baseline's sampler takes no vocabulary
        sampler = sampler_for(model, config)
    run = _runner(sampler, [EOT] + prime, streams, length)
    run(0)  # trace
    best = float("inf")
    for seed in (1, 2):  # the faster of two calls: a round's figure is not one stall
        start = time.perf_counter()
        run(seed)
        best = min(best, time.perf_counter() - start)
    return streams * length / best


def _runner(sampler, prime, streams, length):
    """One free generation call, in whichever API the tree has."""
    if hasattr(sampler, "run"):  # this tree: one loop with logits processors
        import tensorflow as tf

        def run(seed):
            params = {
                "temperature": tf.constant(1.0),
                "top_k": tf.constant(0),
                "top_p": tf.constant(1.0),
                "seed": tf.constant(seed),
            }
            return sampler.run(prime, streams, length, params)

        return run
    return lambda seed: sampler(prime, streams, length, 1.0, 0, 1.0, seed)  # baseline


def child(args) -> None:
    if args.child == "positions":
        result = measure_positions(args.streams)
    else:
        result = measure_free(args.streams, args.length, args.child == "shipped")
    print("RESULT " + json.dumps(result))


def in_tree(tree: Path, what: str, streams: int, length: int = 300):
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            what,
            "--streams",
            str(streams),
            "--length",
            str(length),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
        timeout=1800,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{what} in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


# --- in this process -------------------------------------------------------------------------


def lab_rows(rounds: int) -> list[tuple[str, list[float]]]:
    import keras
    import tensorflow as tf

    from musicseq.config import ModelConfig, SampleConfig
    from musicseq.export import call_generate, export_savedmodel
    from musicseq.models import build_model
    from musicseq.sampling import sampler_for
    from musicseq.vocab import EOT, Vocab

    vocab = Vocab(CHARS)
    lstm = ModelConfig(kind="lstm", vocab_size=len(vocab), units=1024, embedding_dim=256)
    keras.utils.set_random_seed(0)
    model = build_model(lstm)
    no_stop(model)
    sampler = sampler_for(model, lstm, vocab)
    prime = [EOT] + vocab.encode("X:1\n")

    ids = keras.Input(batch_shape=(1, 1), dtype="int32")
    x = keras.layers.Embedding(len(vocab), 256)(ids)
    x = keras.layers.LSTM(1024, return_sequences=True, stateful=True)(x)
    lab = keras.Model(ids, keras.layers.Dense(len(vocab))(x))

    def naive(chars=300):
        token = tf.constant([[5]])
        start = time.perf_counter()
        for _ in range(chars):
            logits = lab(token)[:, -1, :]
            token = tf.random.categorical(logits, 1, dtype=tf.int32)
        return chars / (time.perf_counter() - start)

    single, streams = _runner(sampler, prime, 1, 2000), _runner(sampler, prime, 64, 500)
    single(0), streams(0), naive(5)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = tf.saved_model.load(str(export_savedmodel(model, lstm, vocab, Path(tmp) / "sm")))
        config = SampleConfig(num=1, max_len=2000, seed=1)
        call_generate(loaded, config)
        rows = {k: [] for k in ("naive", "single", "streams", "saved")}
        for r in range(rounds):
            rows["naive"].append(naive())
            start = time.perf_counter()
            single(r)
            rows["single"].append(2000 / (time.perf_counter() - start))
            start = time.perf_counter()
            streams(r)
            rows["streams"].append(64 * 500 / (time.perf_counter() - start))
            start = time.perf_counter()
            call_generate(loaded, config)
            rows["saved"].append(2000 / (time.perf_counter() - start))
    return [
        (
            "LSTM 1024, batch 1: naive loop (one eager model call per character, as the lab)",
            rows["naive"],
        ),
        ("LSTM 1024, batch 1: musicseq compiled loop", rows["single"]),
        ("LSTM 1024, 64 streams: musicseq compiled loop (aggregate)", rows["streams"]),
        ("LSTM 1024, batch 1: exported SavedModel `generate`", rows["saved"]),
    ]


def timed_generate(loaded, sampler, config, **how) -> tuple[list[str], float, tuple]:
    """``generate``'s tunes, its wall seconds and its last progress report ``(step, total,
    tunes done, num, characters)``."""
    from musicseq.sampling import generate

    seen = []
    start = time.perf_counter()
    tunes = generate(
        loaded.model,
        loaded.config,
        loaded.vocab,
        config,
        sampler,
        progress=lambda *a: seen.append(a),
        **how,
    )
    return tunes, time.perf_counter() - start, seen[-1]


def constrained_rows(rounds: int) -> list[dict]:
    """Per loop step and per character sampled, free against constrained decoding of the
    shipped default, the grammar's step as a graph (``grammar_xla="off"``) and compiled by XLA
    (``"on"``)."""
    from musicseq.config import SampleConfig
    from musicseq.modeldir import ModelDir
    from musicseq.sampling import sampler_for

    loaded = ModelDir.load(SHIPPED)
    sampler = sampler_for(loaded.model, loaded.config, loaded.vocab)
    rows = []
    for streams in (64, 200):
        fixed = {"M": "6/8", "K": "D"}
        runs = {
            "free": dict(constrain=False),
            "graph": dict(constrain=True, fixed=fixed),
            "xla": dict(constrain=True, fixed=fixed),
        }
        times = {name: [] for name in runs}
        steps = {name: [] for name in runs}
        chars = {name: [] for name in runs}
        first = {}
        for r in range(rounds + 1):  # round 0 traces (and compiles)
            for name, how in runs.items():
                xla = "on" if name == "xla" else "off"
                config = SampleConfig(
                    num=streams, max_len=400, seed=r, form="AABB", bars=8, grammar_xla=xla
                )
                _, seconds, last = timed_generate(loaded, sampler, config, **how)
                if r:
                    times[name].append(seconds)
                    steps[name].append(last[0])
                    chars[name].append(last[4])
                else:
                    first[name] = seconds
                print(f"{streams} streams, {name}, round {r}: {seconds:.1f} s", flush=True)
        per_step = {n: [t / s * 1e3 for t, s in zip(times[n], steps[n])] for n in runs}
        row = dict(streams=streams, first=first)
        for name in runs:
            row[name] = per_step[name]
        per_char = {n: [t / c * 1e3 for t, c in zip(times[n], chars[n])] for n in runs}
        for name in ("graph", "xla"):
            row[f"{name}_ratio"] = [c / f for c, f in zip(per_step[name], per_step["free"])]
            row[f"{name}_char_ratio"] = [c / f for c, f in zip(per_char[name], per_char["free"])]
        row["free_char"] = per_char["free"]
        row["chars_per_tune"] = {n: statistics.median(chars[n]) / streams for n in runs}
        rows.append(row)
    return rows


def constrained_lines(constrained: list[dict], rounds: int) -> list[str]:
    from _bench import machine

    lines = [
        "### Constrained against free decoding (shipped default, AABB 8+8 in 6/8, max 400 characters)",
        "",
        f"Machine: {machine()}. Median of {rounds} interleaved rounds (min–max), after a round "
        "that traces and compiles (its wall time: first call). Milliseconds per loop step "
        "(the loop's wall time over its steps: the batch steps until its longest tune ends; "
        "tunes that have ended leave the model's batch between chunks of 64 steps, while the "
        "grammar under XLA, compiled for one number of streams, keeps a row for every tune) "
        "and the ratios per character sampled (wall time over the characters the "
        "tunes hold); the grammar's step as a graph (`--grammar-xla off`) and compiled by XLA "
        "(`--grammar-xla on`). Free tunes at temperature 1 end on their own; constrained ones "
        "run to their planned length.",
        "",
        "| streams | free ms/step | constrained, graph | constrained, XLA | graph ÷ free per step | XLA ÷ free per step | free µs/character | graph ÷ free per character | XLA ÷ free per character | characters a tune: free / constrained | first call: free / graph / XLA (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in constrained:
        first = " / ".join(f"{row['first'][n]:.0f}" for n in ("free", "graph", "xla"))
        per_tune = row["chars_per_tune"]
        lines.append(
            f"| {row['streams']} | {spread(row['free'])} | {spread(row['graph'])} | "
            f"{spread(row['xla'])} | {spread(row['graph_ratio'])}× | {spread(row['xla_ratio'])}× "
            f"| {spread([1e3 * x for x in row['free_char']], digits=0)} "
            f"| {spread(row['graph_char_ratio'])}× | {spread(row['xla_char_ratio'])}× "
            f"| {per_tune['free']:.0f} / {per_tune['graph']:.0f} | {first} |"
        )
    worst = {
        n: max(statistics.median(r[f"{n}_char_ratio"]) for r in constrained)
        for n in ("graph", "xla")
    }
    lines += [
        "",
        f"Target: constrained ≤ 1.25× free per character — grammar under XLA "
        f"{'met' if worst['xla'] <= 1.25 else 'missed'} (worst median {worst['xla']:.2f}×), "
        f"as a graph {'met' if worst['graph'] <= 1.25 else 'missed'} ({worst['graph']:.2f}×).",
    ]
    return lines


def shrink_rows(rounds: int, num: int = 200) -> dict:
    """Seconds and loop steps of ``num`` free tunes of the shipped default (its own settings,
    as ``musicseq evaluate`` draws them), ended streams leaving the batch or not."""
    from musicseq.config import SampleConfig
    from musicseq.modeldir import ModelDir
    from musicseq.sampling import Sampler, sampler_for

    loaded = ModelDir.load(SHIPPED)
    sampler = sampler_for(loaded.model, loaded.config, loaded.vocab)
    settings = loaded.sampling_defaults(constrain=False)
    run = Sampler.run
    out = {"on": [], "off": [], "steps": [], "chars": [], "parted": []}
    try:
        for r in range(rounds + 1):  # round 0 traces
            tunes = {}
            for how in ("off", "on") if r % 2 else ("on", "off"):
                Sampler.run = lambda self, *a, how=how, **k: run(self, *a, shrink=how == "on", **k)
                config = SampleConfig(num=num, seed=r + 1, **settings)
                tunes[how], seconds, last = timed_generate(loaded, sampler, config)
                print(f"round {r}, shrink {how}: {seconds:.1f} s", flush=True)
                if r:
                    out[how].append(seconds)
                    if how == "on":
                        out["steps"].append(last[0])
                        out["chars"].append(last[4])
            for a, b in zip(tunes["on"], tunes["off"]):
                if a != b:  # where they part (bfloat16 rounds by batch size: see the text)
                    out["parted"].append(next(i for i, (x, y) in enumerate(zip(a, b)) if x != y))
    finally:
        Sampler.run = run
    out["settings"] = settings
    return out


def shrink_lines(shrink: dict, rounds: int, num: int = 200) -> list[str]:
    from _bench import machine

    ratio = [off / on for on, off in zip(shrink["on"], shrink["off"])]
    chars_on = [c / s for c, s in zip(shrink["chars"], shrink["on"])]
    chars_off = [c / s for c, s in zip(shrink["chars"], shrink["off"])]
    return [
        f"### Ended streams leave the batch ({num} free tunes of the shipped default)",
        "",
        f"Machine: {machine()}. {num} tunes with the model's own free settings "
        f"({shrink['settings'] or 'none'}), each round its own seed, to their own ends "
        "(`Sampler.run`, as `musicseq generate` and `evaluate` run it), with the streams that "
        "have ended dropped from the batch between chunks of 64 steps once they are a quarter "
        f"of it, and without. Median of {rounds} interleaved rounds (min–max), after a round "
        f"that traces; loop steps {spread(shrink['steps'], digits=0)}. Tunes that differ "
        f"between the two ways, over all {rounds + 1} rounds: {len(shrink['parted'])} of "
        f"{num * (rounds + 1)}"
        + (
            f", parting at character {', '.join(map(str, sorted(shrink['parted'])))}"
            if shrink["parted"]
            else ""
        )
        + " (each stream draws what it would in the whole batch; the shipped default computes "
        "in bfloat16 on this CPU, whose kernels can round differently for another batch size).",
        "",
        "| | seconds | characters/s |",
        "|---|---:|---:|",
        f"| every stream to the end | {spread(shrink['off'], digits=1)} | "
        f"{spread(chars_off, digits=0)} |",
        f"| ended streams leave | {spread(shrink['on'], digits=1)} | "
        f"{spread(chars_on, digits=0)} |",
        f"| speed-up | {spread(ratio)}× | |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, print only")
    parser.add_argument("--child", choices=("positions", "free", "shipped"), help=argparse.SUPPRESS)
    parser.add_argument("--streams", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, default=300, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; 2 with --quick)")
    parser.add_argument(
        "--only-free",
        action="store_true",
        help="re-measure section 3 only (free sampling against the baseline) and splice it in",
    )
    parser.add_argument(
        "--only-shrink",
        action="store_true",
        help="re-measure section 5 only and replace (or add) that part of the written section",
    )
    parser.add_argument(
        "--only-constrained",
        action="store_true",
        help="re-measure section 4 only and replace that part of the written section",
    )
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from _bench import machine, write_section

    rounds = args.rounds or (2 if args.quick else 3)

    def only_free():
        with baseline_tree() as baseline:
            free, shipped = free_rows(baseline, rounds)
        return free_lines(free, shipped, rounds, f"Machine: {machine()}. ")

    only = {  # one section measured again and spliced in: (option, heading, its lines)
        "### Constrained against free decoding": (
            args.only_constrained,
            lambda: constrained_lines(constrained_rows(rounds), rounds),
        ),
        "### Ended streams leave the batch": (
            args.only_shrink,
            lambda: shrink_lines(shrink_rows(rounds), rounds),
        ),
        "### Free sampling, 64 streams": (args.only_free, only_free),
    }
    for heading, (chosen, measure) in only.items():
        if chosen:
            lines = measure()
            print("\n".join(lines))
            if not args.quick:
                splice(heading, "\n".join(lines))
            return
    with baseline_tree() as baseline:
        trees = {"baseline": baseline, "now": ROOT}
        positions = {name: {p: [] for p in POSITIONS} for name in trees}
        batch1 = {name: {p: [] for p in POSITIONS} for name in trees}
        for _ in range(rounds):  # interleaved: baseline, now, baseline, now, ...
            for name, tree in trees.items():
                for p, ms in in_tree(tree, "positions", 64).items():
                    positions[name][int(p)].append(ms)
                for p, ms in in_tree(tree, "positions", 1).items():
                    batch1[name][int(p)].append(ms)
        free, shipped = free_rows(baseline, rounds)
    lab = lab_rows(rounds)
    constrained = constrained_rows(rounds)
    shrink = shrink_rows(rounds)

    naive = statistics.median(lab[0][1])
    lines = [
        "## Generation speed (`python scripts/bench_generate.py`)",
        "",
        f"Machine: {machine()}. Every figure: median of {rounds} interleaved rounds, (min–max).",
        "",
        "| what | characters/s | × naive loop |",
        "|---|---:|---:|",
    ]
    for name, values in lab:
        lines.append(
            f"| {name} | {spread(values, digits=0)} | {statistics.median(values) / naive:.1f}× |"
        )
    lines += [
        "",
        "### Transformer cached step by position (d256, 4 layers, 8 heads, context 512: the shipped default's shape)",
        "",
        f"Milliseconds per step: {STEPS_TIMED} steps timed from a cache filled to the position. "
        f"Baseline = commit {BASELINE} (attention over all 512 slots from the first character, "
        "cache written with a `where` over the whole cache); now = attention over the filled "
        "blocks of 64, one block written per step.",
        "",
        "| position | baseline, 64 streams | now, 64 streams | speed-up | baseline, batch 1 | now, batch 1 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for p in POSITIONS:
        b, n = positions["baseline"][p], positions["now"][p]
        lines.append(
            f"| {p} | {spread(b)} | {spread(n)} | {statistics.median(b) / statistics.median(n):.2f}× "
            f"| {spread(batch1['baseline'][p])} | {spread(batch1['now'][p])} |"
        )
    lines += ["", *free_lines(free, shipped, rounds), ""]
    lines += constrained_lines(constrained, rounds)
    lines += ["", *shrink_lines(shrink, rounds)]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        write_section("bench_generate", text)


@contextlib.contextmanager
def baseline_tree():
    """A git worktree of the baseline commit, removed afterwards."""
    baseline = Path(tempfile.mkdtemp(prefix="musicseq-baseline-"))
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(baseline), BASELINE],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        yield baseline
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, capture_output=True
        )


def free_rows(baseline: Path, rounds: int) -> tuple[dict, list]:
    """Characters/s of free sampling (section 3) per round: the baseline and this tree
    interleaved, and this tree's shipped default (its metrical and tonal inputs are not in
    the baseline)."""
    free, shipped = {"baseline": [], "now": []}, []
    trees = [("baseline", baseline), ("now", ROOT)]
    for round_ in range(rounds):  # ABBA: a machine that drifts within a round favours neither
        for name, tree in trees if round_ % 2 == 0 else trees[::-1]:
            free[name].append(in_tree(tree, "free", 64, 300))
            print(name, free[name][-1], flush=True)
        shipped.append(in_tree(ROOT, "shipped", 64, 300))
    return free, shipped


def free_lines(free: dict, shipped: list, rounds: int, machine_line: str = "") -> list[str]:
    speedup = statistics.median(free["now"]) / statistics.median(free["baseline"])
    met = "met" if speedup >= 3 else "missed"
    return [
        "### Free sampling, 64 streams × 300 characters",
        "",
        f"{machine_line}A Transformer of the shipped default's shape with random weights in "
        "both trees (the baseline cannot load today's shipped default, whose metrical and "
        "tonal inputs came later); the shipped default itself in this tree. Each round: the "
        "faster of two timed calls after one that traces, the two trees in alternating order "
        f"(ABBA); median of {rounds} rounds (min–max).",
        "",
        "| tree | characters/s |",
        "|---|---:|",
        f"| baseline ({BASELINE}) | {spread(free['baseline'], digits=0)} |",
        f"| now | {spread(free['now'], digits=0)} |",
        f"| now, the shipped default (metrical and tonal inputs) | {spread(shipped, digits=0)} |",
        "",
        f"Speed-up (ratio of medians): {speedup:.2f}× (target ≥ 3×: {met}).",
    ]


def splice(heading: str, text: str) -> None:
    """Replace the subsection of docs/benchmarks.md's bench_generate section that starts with
    ``heading`` (up to the next ``###`` heading or the section's end) by ``text``."""
    from _bench import write_section

    path = ROOT / "docs" / "benchmarks.md"
    doc = path.read_text()
    start = doc.index("<!-- bench_generate:start -->") + len("<!-- bench_generate:start -->")
    section = doc[start : doc.index("<!-- bench_generate:end -->")].strip("\n")
    if heading not in section:  # a new subsection goes last
        section += "\n\n" + heading
    begin = section.index(heading)
    after = section.find("\n### ", begin + len(heading))
    tail = "" if after < 0 else "\n\n" + section[after + 1 :]
    write_section("bench_generate", section[:begin] + text.rstrip("\n") + tail)


if __name__ == "__main__":
    main()
