"""The TensorFlow grammar (musicseq.grammar_graph) against the Python reference.

Random walks through :class:`TuneGrammar` (seeded; choices among ``plain_allowed()``, some
among ``allowed()``, some with ``close()`` part-way) and the corpus's test tunes are replayed
as a batch of streams through :class:`GraphGrammar`; at every position its masks must equal
the reference's sets.
"""

import json
import random
from functools import cache
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from musicseq.grammar_graph import (  # noqa: E402
    CONFIG_SIZE,
    EOT,
    MAX_PARTS,
    PAD,
    GraphGrammar,
)
from musicseq.notation.grammar import END, GrammarError, TuneGrammar  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHARS = json.loads((ROOT / "saved_models/folk-transformer/vocab.json").read_text())["chars"]
IDS = {c: i + 3 for i, c in enumerate(CHARS)}

PLANS = [
    {"fixed": {"M": "6/8", "K": "D"}, "form": "AABB", "bars": 8, "cadence": "tonic"},
    {"fixed": {"M": "4/4", "K": "Ador"}, "form": "AB", "bars": 8, "cadence": None},
    {
        "fixed": {"M": "3/4", "K": "G", "T": "The Hi (Dee) Reel"},
        "form": "AABBCC",
        "bars": 8,
        "cadence": "tonic",
    },
    {"fixed": {"M": "2/4"}, "form": "AAB", "bars": 16, "cadence": "tonic"},
    {"fixed": {"M": "9/8", "L": "1/16", "K": "Em"}, "form": None, "bars": 8, "cadence": "tonic"},
    {"fixed": {"K": "Bb"}, "form": None, "bars": 8, "cadence": None},
    {"fixed": {"M": "2/2", "K": "F#m"}, "form": "ABC", "bars": 4, "cadence": None},
    {"fixed": {"M": "5/4", "K": "C"}, "form": "AABB", "bars": 8, "cadence": "tonic"},
]


@cache
def grammar(header="template", full_lookahead=True):
    return GraphGrammar(CHARS, header=header, full_lookahead=full_lookahead)


@cache
def compiled(header="template", full_lookahead=True):
    """allowed, plain_allowed_and_next, advance and close as graphs traced once (any N)."""
    from musicseq.grammar_graph import CONFIG_SIZE, STATE_SIZE

    g = grammar(header, full_lookahead)
    state = tf.TensorSpec([None, STATE_SIZE], tf.int32)
    config = tf.TensorSpec([None, CONFIG_SIZE], tf.int32)
    row = tf.TensorSpec([None], tf.int32)
    return (
        tf.function(g.allowed, input_signature=[state, config]),
        tf.function(g.plain_allowed_and_next, input_signature=[state, config]),
        tf.function(g.advance, input_signature=[state, config, row]),
        tf.function(g.close, input_signature=[state, tf.TensorSpec([None], tf.bool)]),
    )


def reference(plan, header="template"):
    return TuneGrammar(
        fixed=plan["fixed"],
        alphabet=CHARS,
        form=plan["form"],
        bars_per_part=plan["bars"],
        cadence=plan["cadence"],
        header=header,
    )


def walk(plan, seed, among="plain", close_at=None, steps=400, prefer=""):
    """A seeded random walk: [(allowed, plain_allowed, close called here, char), ...]; a
    character of ``prefer`` is taken half the time it is offered."""
    g = reference(plan)
    rng = random.Random(seed)
    out = []
    for step in range(steps):
        if step == close_at:
            g.close()
        allowed, plain = g.allowed(), g.plain_allowed()
        options = sorted(plain if among == "plain" else allowed)
        preferred = [c for c in options if c in prefer]
        ch = rng.choice(preferred if preferred and rng.random() < 0.5 else options)
        out.append((allowed, plain, step == close_at, ch))
        g.advance(ch)
        if ch == END:
            break
    return out


def mask(chars):
    m = np.zeros(len(CHARS) + 3, bool)
    for c in chars:
        m[EOT if c == END else IDS[c]] = True
    return m


def shown(row):
    return sorted("<eot>" if i == EOT else CHARS[i - 3] for i in np.nonzero(row)[0])


def replay(walks, plans, check_plain=True, header="template", full_lookahead=True):
    """Replay the walks as one batch; assert the masks at every position, and that the
    next states the plain mask computes for every token are ``advance``'s.
    ``full_lookahead=False`` (the grammar in-process decoding traces unless a prime ends
    inside a field or decoration) where the plain masks are not checked: it leaves out a
    second grammar step (~13 s of tracing)."""
    allowed_fn, plain_next_fn, advance_fn, close_fn = compiled(header, full_lookahead)
    g = grammar(header, full_lookahead)
    take_fn = tf.function(g.take)
    config = tf.constant(g.plans(plans))
    state = g.initial(config)
    for t in range(max(len(w) for w in walks)):
        close_mask = np.array([t < len(w) and w[t][2] for w in walks])
        if close_mask.any():
            state = close_fn(state, tf.constant(close_mask))
        got_allowed = allowed_fn(state, config).numpy()
        got_plain, step = plain_next_fn(state, config)
        before = state
        tokens = np.full(len(walks), PAD, np.int32)
        for b, w in enumerate(walks):
            if t >= len(w):
                continue
            allowed, plain, _, ch = w[t]
            text = "".join(x[3] for x in w[:t] if x[3] != END)
            assert shown(got_allowed[b]) == shown(mask(allowed)), (b, t, text[-60:])
            if check_plain:
                assert shown(got_plain.numpy()[b]) == shown(mask(plain)), (b, t, text[-60:])
            tokens[b] = EOT if ch == END else IDS[ch]
        state = advance_fn(state, config, tf.constant(tokens))
        np.testing.assert_array_equal(take_fn(before, tf.constant(tokens), step).numpy(), state)
    return state


def test_plain_walks_match_the_reference():
    """Generation: the template header, the plain style, forms, cadences, close(); the last
    8 walks open '(' whenever they may: '((' only as a slurred tuplet ('((3')."""
    walks, plans = [], []
    for i in range(24):
        plan = PLANS[i % len(PLANS)]
        close_at = 100 + 23 * i if i % 3 == 2 and i < 16 else None
        walks.append(walk(plan, 100 + i, "plain", close_at, steps=300, prefer="(" * (i >= 16)))
        plans.append(plan)
    state = replay(walks, plans)
    finished = grammar().finished(state).numpy()
    for b, w in enumerate(walks):  # walks that reached END are finished (1), none rejected
        assert finished[b] == (1 if w[-1][3] == END else 0)
    bodies = ["".join(x[3] for x in w if x[3] != END).partition("\nK:")[2] for w in walks[16:]]
    assert sum(b.count("((") for b in bodies) >= 3  # the walks did write slurred tuplets
    for b in bodies:  # (a walk may stop right after '((')
        assert all(b[i + 2].isdigit() for i in range(len(b) - 2) if b[i : i + 2] == "((")


def test_allowed_walks_match_the_reference():
    """Walks among allowed(): annotations, !decorations!, fields, grace notes, chords..."""
    walks, plans = [], []
    for i in range(6):
        plan = PLANS[(3 * i + 1) % len(PLANS)]
        walks.append(walk(plan, 200 + i, "allowed", 120 if i == 4 else None, steps=200))
        plans.append(plan)
    replay(walks, plans)


# Written by hand, with an AABB plan: a B part keeping A's pickup (accepted), a B part
# without it, a broken pair of unlike notes, of dotted ones, a chained one, a length after a
# chord and two grace groups in a row (each rejected: abc2midi or abcm2ps would complain of
# them or read them otherwise).
HEAD = "X:1\nT:P\nM:6/8\nL:1/8\nK:D\n"
A_PART = "|:A|" + "d>cd dcd|" * 7 + "f3 d2:|\n"
BY_HAND = [
    HEAD + A_PART + A_PART,
    HEAD + A_PART + "|:" + "d2d dcd|" * 7 + "f3 d3:|\n",
    HEAD + "|:A|d<c2 d/ d2|",
    HEAD + "|:A|d>c>d d>c>d z/|",
    HEAD + "|:A|[df]2d dcd|",
    HEAD + "|:A|d3/2>c3/2 dcd|",
    HEAD + "|:A|{g}{a}dcd dcd|",
]


def test_corpus_tunes_match_the_reference(corpus_dir):
    """header="corpus": the allowed mask along corpus tunes (and a few written by hand, in a
    form), and rejection at the same place."""
    free = {"fixed": {}, "form": None, "bars": 8, "cadence": None}
    aabb = {"fixed": {}, "form": "AABB", "bars": 8, "cadence": None}
    walks, rejected_at, plans = [], [], []
    from musicseq.corpus import load_split

    texts = [(free, text) for text in load_split(corpus_dir, "test")[:24]]
    for plan, text in [*texts, *((aabb, text) for text in BY_HAND)]:
        g = reference(plan, header="corpus")
        w, where = [], None
        for i, ch in enumerate([*text, END]):
            allowed = g.allowed()
            w.append((allowed, None, False, ch))
            try:
                g.advance(ch)
            except GrammarError:
                where = i
                break
        walks.append(w)
        rejected_at.append(where)
        plans.append(plan)
    assert any(r is None for r in rejected_at)
    assert rejected_at[-len(BY_HAND)] is None  # the rest stop inside their text, not at its end
    rest = rejected_at[1 - len(BY_HAND) :]
    assert all(r is not None and r < len(x) for r, x in zip(rest, BY_HAND[1:]))
    state = replay(walks, plans, False, "corpus", full_lookahead=False)
    finished = grammar("corpus", False).finished(state).numpy()
    for b, where in enumerate(rejected_at):
        assert finished[b] == (1 if where is None else 2), b


def test_rejection_and_end_of_tune():
    """A rejected token marks the stream (2); EOT only where the tune may end; PAD after."""
    g = grammar()
    config = tf.constant(g.plans([PLANS[0]] * 3))
    state = g.initial(config)
    for ch in "X:1\nT:":
        state = g.advance(state, config, tf.constant([IDS[ch]] * 3))
    state = g.advance(state, config, tf.constant([IDS["A"], EOT, IDS["\n"]]))
    assert g.finished(state).numpy().tolist() == [0, 2, 2]  # EOT too early, empty title
    allowed = g.allowed(state, config).numpy()
    assert shown(allowed[1]) == ["<eot>"]
    state = g.advance(state, config, tf.constant([IDS["b"], PAD, PAD]))
    assert g.finished(state).numpy().tolist() == [0, 2, 2]


def test_plans_encoding_and_errors():
    g = grammar()
    rows = g.plans(PLANS)
    assert rows.shape == (len(PLANS), CONFIG_SIZE) and rows.dtype == np.int32
    with pytest.raises(GrammarError):
        g.plans([{"fixed": {}, "form": "AAAB", "bars": 8, "cadence": None}])
    with pytest.raises(GrammarError):
        g.plans([{"fixed": {"M": "7/4"}, "form": None, "bars": 8, "cadence": None}])
    with pytest.raises(GrammarError):
        g.plans([{"fixed": {}, "form": "ABCDEFGHI", "bars": 8, "cadence": None}])
    with pytest.raises(GrammarError):
        g.plans([{"fixed": {}, "form": "AB", "bars": 2, "cadence": None}])
    # config_tensor builds the same rows from tensors
    plan = PLANS[0]
    row = g.plans([plan])
    parts = np.zeros((1, MAX_PARTS), np.int32)
    parts[0, :2] = 2
    built = g.config_tensor(
        meter=[g.meter_words.index("6/8")],
        key=[g.key_words.index("D")],
        parts=parts,
        bars=[8],
        cadence=[1],
    ).numpy()
    np.testing.assert_array_equal(built, row)
