"""Generation and scoring: one compiled decoding loop with a list of logits processors, and
one scorer.

Decoding runs as a ``tf.while_loop`` inside one ``tf.function`` for ``num`` streams at once:
it feeds the prime, then samples, carrying the model's state (recurrent state, or the
Transformer's key/value cache) and each processor's state; each stream stops at its own
end-of-tune token. The logits pass through a list of small processors — temperature, the
repeat bias, the reserved-token mask or the grammar mask, top-k, top-p — in the manner of
``transformers.LogitsProcessorList`` or keras-hub's samplers. The grammar
(:mod:`musicseq.grammar_graph`) is one of them: with ``constrain`` its integer state per
stream rides in the loop and its mask is computed in the graph, so constrained decoding is
the same compiled loop, in process and in the exported SavedModel. Sampling uses a
stateless RNG keyed by ``(seed, step)``: the same seed and arguments give the same tunes.

In process the loop runs in chunks of :data:`CHUNK` steps so that a ``progress`` callback
can report tunes done, characters per second and time left between chunks, and the streams
that have ended leave the batch between chunks (each remaining stream draws what it would have
drawn in the whole batch); the SavedModel runs it whole.

:func:`score_texts` is the one scorer (held-out loss, the SavedModel's ``score``): each tune
as ``EOT tune EOT``, recurrent models in one pass, the Transformer in windows of its context
sliding by half of it, so that every scored character has at least ``context/2`` characters
of history.
"""

from __future__ import annotations

import re
import weakref

from musicseq.config import SampleConfig
from musicseq.errors import UserError
from musicseq.vocab import EOT, PAD, RESERVED, UNK, Vocab

NEG_INF = float("-inf")


def check_prime(prime: str, vocab: Vocab) -> None:
    """Raise :class:`UserError` naming the characters of ``prime`` the model has never seen."""
    unknown = vocab.unknown_chars(prime)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10])
        raise UserError(f"prime contains characters outside the model's vocabulary: {shown}")


# --- logits transforms: (batch, vocab) float32 -> (batch, vocab) -------------------------


def mask_reserved(logits):
    """Padding and unknown tokens can never be sampled (end-of-tune can)."""
    import tensorflow as tf

    banned = tf.reduce_any(
        tf.one_hot([PAD, UNK], tf.shape(logits)[-1], on_value=True, off_value=False), 0
    )
    return tf.where(banned[None, :], NEG_INF, logits)


def apply_temperature(logits, temperature):
    """``logits / temperature``; temperature must be > 0 (checked by the caller)."""
    import tensorflow as tf

    return tf.cast(logits, tf.float32) / temperature


def top_k_filter(logits, k):
    """Keep the ``k`` largest logits per row; ``k <= 0`` keeps all."""
    import tensorflow as tf

    def filtered():
        vocab_size = tf.shape(logits)[-1]
        kth = tf.gather(
            tf.sort(logits, axis=-1, direction="DESCENDING"), tf.minimum(k, vocab_size) - 1, axis=-1
        )  # (batch,)
        return tf.where(logits < kth[:, None], NEG_INF, logits)

    # Off (the default), the sort is skipped: with top-p's, 0.53 ms of a step at 64 streams
    # (0.07-0.10 without them; docs/benchmarks.md).
    return tf.cond(k > 0, filtered, lambda: logits)


def top_p_filter(logits, p):
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches ``p``."""
    import tensorflow as tf

    def filtered():
        ordered = tf.sort(logits, axis=-1, direction="DESCENDING")
        probs = tf.nn.softmax(ordered, axis=-1)
        before = tf.cumsum(probs, axis=-1, exclusive=True)  # probability ranked above
        kept = tf.where(before < p, ordered, tf.constant(float("inf")))  # the first is kept
        threshold = tf.reduce_min(kept, axis=-1)  # smallest kept logit
        return tf.where(logits < threshold[:, None], NEG_INF, logits)

    return tf.cond(p < 1.0, filtered, lambda: logits)


# --- logits processors ------------------------------------------------------------------


class LogitsProcessor:
    """One step of logits processing in the decoding loop.

    ``initial(num)`` gives the processor's state for ``num`` streams (nested tensors, or
    ``()``; every tensor of rank 1 or more has the stream on its first axis, so that ended
    streams can leave the batch: :func:`_keep_rows`), ``__call__(logits, state)`` returns
    the processed logits ``(num, vocab)``, and ``advance(state, tokens, step)`` the state
    after the streams took ``tokens`` (forced prime
    characters too) at loop step ``step``. ``prepare(state)``, called at the start of each
    loop step, may do the heavy part of advancing there instead: it depends only on the
    previous step's tokens, so it runs side by side with the model's step (the loop is a
    dataflow graph). Most processors keep no state.

    A processor whose ``whole_batch`` is True keeps a state row for every stream of the
    batch even after ended streams leave it (:meth:`Sampler.run`): its ``prepare`` and
    ``advance`` see all of them (the streams that are not carried take PAD, as ended ones
    do), and ``__call__`` the carried streams' rows. The grammar's step under XLA is one:
    XLA compiles it for one number of streams.
    """

    whole_batch = False

    def initial(self, num):
        return ()

    def prepare(self, state):
        return state

    def __call__(self, logits, state):
        raise NotImplementedError

    def advance(self, state, tokens, step):
        return state


class Temperature(LogitsProcessor):
    def __init__(self, temperature):
        self.temperature = temperature

    def __call__(self, logits, state):
        return apply_temperature(logits, self.temperature)


class MaskReserved(LogitsProcessor):
    def __call__(self, logits, state):
        return mask_reserved(logits)


class TopK(LogitsProcessor):
    def __init__(self, k):
        self.k = k

    def __call__(self, logits, state):
        return top_k_filter(logits, self.k)


class TopP(LogitsProcessor):
    def __init__(self, p):
        self.p = p

    def __call__(self, logits, state):
        return top_p_filter(logits, self.p)


class HealPrime(LogitsProcessor):
    """Token healing for an ABC-token model: the prime's last token was taken back, and the
    first sampled token must begin with its text (``allowed``: a ``(vocab,)`` bool mask).

    Without it a prime that stops inside a longer token (``…|:G`` where the training texts
    wrote ``G2``) feeds the model a split it never saw. The state counts loop steps; the
    mask applies at step ``at``, the first one that samples."""

    def __init__(self, allowed, at):
        self.allowed, self.at = allowed, at

    def initial(self, num):
        import tensorflow as tf

        return tf.constant(0)

    def __call__(self, logits, state):
        import tensorflow as tf

        healed = tf.where(self.allowed[None, :], logits, NEG_INF)
        return tf.where(tf.equal(state, self.at), healed, logits)

    def advance(self, state, tokens, step):
        return step + 1


def heal_prime(prime: str, vocab: Vocab) -> tuple[str, list[int], list[bool]]:
    """``(head, prime ids, allowed)`` for token healing (:class:`HealPrime`): ``head`` is the
    prime without its last token, ``prime ids`` are ``EOT`` and the head's tokens (greedy
    matching gives the head the same tokens it had in the prime), ``allowed`` marks the
    tokens that begin with the last token's text (all of them for an empty prime; never a
    reserved id)."""
    tokens = vocab.split(prime)
    tail = tokens[-1] if tokens else ""
    ids = [EOT] + vocab.encode(prime)[: len(tokens) - 1]
    allowed = [False] * len(RESERVED) + [t.startswith(tail) for t in vocab.tokens]
    return prime[: len(prime) - len(tail)], ids, allowed


class GrammarMask(LogitsProcessor):
    """Only what the grammar allows in the plain style (:meth:`GraphGrammar.plain_allowed`).

    The grammar's state per stream rides in the loop; from loop step ``close_step`` on the
    grammar is asked to close the tune (finish the bar, close a repeat, end), which keeps
    room to end before ``max_len``. A stream the grammar has nothing for may only end.
    """

    def __init__(self, grammar, config, close_step):
        self.grammar, self.config, self.close_step = grammar, config, close_step
        self.whole_batch = grammar.jit  # XLA: compiled for one number of streams

    # The state is (grammar state, plain mask, the grammar's step over every character):
    # ``prepare`` computes the last two (``plain_allowed_and_next``) side by side with the
    # model's step; ``advance`` finishes the step for the chosen token (``take``, a gather).

    def initial(self, num):
        state = self.grammar.initial(self.config)
        return (state, *self.grammar.plain_allowed_and_next(state, self.config))

    def prepare(self, state):
        import tensorflow as tf

        new = (state[0], *self.grammar.plain_allowed_and_next(state[0], self.config))
        for now, before in zip(tf.nest.flatten(new), tf.nest.flatten(state)):
            now.set_shape(before.shape)  # as many streams as before (a static count stays)
        return new

    def __call__(self, logits, state):
        import tensorflow as tf

        allowed = state[1]
        stuck = ~tf.reduce_any(allowed, axis=-1, keepdims=True)
        allowed = allowed | (stuck & tf.equal(tf.range(tf.shape(allowed)[1]), EOT)[None, :])
        return tf.where(allowed, logits, NEG_INF)

    def advance(self, state, tokens, step):
        import tensorflow as tf

        closing = tf.fill(tf.shape(tokens), step + 1 >= self.close_step)
        taken = self.grammar.close(self.grammar.take(state[0], tokens, state[2]), closing)
        taken.set_shape(state[0].shape)
        return (taken, state[1], state[2])


# Repeat bias: bars are compared by their music only, as :func:`repeat_candidates` splits them.
REPEAT_WINDOW = 96  # music characters of a bar compared (longer bars: their first 96)
REPEAT_RING = 2048  # music characters kept per stream (8 bars back fit many times over)
_R_MUSIC, _R_SEP, _R_DIGIT, _R_LBRACKET, _R_IGNORED = range(5)


def _repeat_classes(vocab: Vocab):
    """Per token id: its class for the bar split, and whether it is '\\n', 'K', ':'."""
    import numpy as np

    size = len(vocab)
    classes = np.full(size, _R_IGNORED, np.int32)  # reserved tokens change nothing
    newline, letter_k, colon = (np.zeros(size, bool) for _ in range(3))
    for ch in vocab.chars:
        i = vocab.encode(ch)[0]
        if ch in "|]:":
            classes[i] = _R_SEP
        elif ch.isdigit():
            classes[i] = _R_DIGIT
        elif ch == "[":
            classes[i] = _R_LBRACKET
        elif _MUSIC_ONLY.fullmatch(ch):
            classes[i] = _R_IGNORED
        else:
            classes[i] = _R_MUSIC
        newline[i], letter_k[i], colon[i] = ch == "\n", ch == "K", ch == ":"
    return classes, newline, letter_k, colon


class RepeatBias(LogitsProcessor):
    """:func:`repeat_candidates` in the graph: ``bias`` added to the characters that continue
    a bar 1, 2, 4 or 8 back (never asking for a third identical bar in a row).

    State per stream: where the header is (the body starts after the ``K:`` line), the music
    characters of the body in a ring buffer, the current bar (start, length) and the last 8
    finished bars; a ``[`` is kept as music until a digit shows it was an ending (``[2``).
    """

    def __init__(self, vocab: Vocab, bias):
        import tensorflow as tf

        classes, newline, letter_k, colon = _repeat_classes(vocab)
        self.classes = tf.constant(classes)
        self.newline, self.letter_k, self.colon = (
            tf.constant(t) for t in (newline, letter_k, colon)
        )
        self.size = len(vocab)
        self.bias = bias

    def initial(self, num):
        import tensorflow as tf

        zeros = tf.zeros([num], tf.int32)
        return {
            "header": zeros,  # 0 line, 1 after '\n', 2 after '\nK', 3 in the K: line, 4 body
            "run": zeros,  # in a separator: digits continue it ('|2', ':|2')
            "bracket": zeros,  # the last music character is a '[' that may start '[2'
            "ring": tf.zeros([num, REPEAT_RING], tf.int32),
            "written": zeros,  # music characters written (ring position = written % RING)
            "start": zeros,  # the current bar: its start in the ring and its length
            "length": zeros,
            "starts": tf.zeros([num, 8], tf.int32),  # finished bars, the most recent first
            "lengths": tf.zeros([num, 8], tf.int32),
            "bars": zeros,
        }

    def _music(self, state, offsets):
        """Music characters at ring positions ``offsets + [0, WINDOW)``: (num, ..., WINDOW)."""
        import tensorflow as tf

        index = (offsets[..., None] + tf.range(REPEAT_WINDOW)) % REPEAT_RING
        return tf.gather(state["ring"], index, batch_dims=1)

    @staticmethod
    def _same(a, a_len, b, b_len):
        import tensorflow as tf

        inside = tf.range(REPEAT_WINDOW) < tf.minimum(a_len, REPEAT_WINDOW)[..., None]
        return tf.equal(a_len, b_len) & tf.reduce_all(tf.equal(a, b) | ~inside, axis=-1)

    def candidates(self, state):
        """(num, vocab) bool: the characters that continue a bar 1, 2, 4 or 8 back."""
        import tensorflow as tf

        back = tf.constant([b - 1 for b in REPEAT_DISTANCES])
        current = self._music(state, state["start"])  # (num, W)
        sources = self._music(state, tf.gather(state["starts"], back, axis=1))  # (num, 4, W)
        source_len = tf.gather(state["lengths"], back, axis=1)  # (num, 4)
        length = state["length"][:, None]
        inside = tf.range(REPEAT_WINDOW) < tf.minimum(length, REPEAT_WINDOW)[..., None]
        prefix = tf.reduce_all(tf.equal(sources, current[:, None]) | ~inside, axis=-1)
        last, before = (
            self._music(state, state["starts"][:, 0]),
            self._music(state, state["starts"][:, 1]),
        )
        last_len, before_len = state["lengths"][:, 0], state["lengths"][:, 1]
        twice = (state["bars"] >= 2) & self._same(last, last_len, before, before_len)
        third = twice[:, None] & self._same(sources, source_len, last[:, None], last_len[:, None])
        ok = (
            (state["bars"][:, None] >= tf.constant(REPEAT_DISTANCES))
            & (source_len > length)
            & (length < REPEAT_WINDOW)
            & prefix
            & ~third
            & (state["header"] == 4)[:, None]
        )
        at = tf.broadcast_to(tf.minimum(length, REPEAT_WINDOW - 1), tf.shape(source_len))
        following = tf.gather(sources, at, axis=2, batch_dims=2)  # (num, 4)
        hits = tf.one_hot(tf.where(ok, following, -1), self.size, on_value=True, off_value=False)
        return tf.reduce_any(hits, axis=1)

    def __call__(self, logits, state):
        import tensorflow as tf

        return logits + tf.cast(self.candidates(state), logits.dtype) * self.bias

    def advance(self, state, tokens, step):
        import tensorflow as tf

        s = dict(state)
        header = s["header"]
        newline = tf.gather(self.newline, tokens)
        after_k = tf.where(tf.gather(self.colon, tokens), 3, tf.where(newline, 1, 0))
        after_nl = tf.where(tf.gather(self.letter_k, tokens), 2, tf.where(newline, 1, 0))
        s["header"] = tf.where(
            header == 4,
            4,
            tf.where(
                header == 3,
                tf.where(newline, 4, 3),
                tf.where(
                    header == 2,
                    after_k,
                    tf.where(header == 1, after_nl, tf.cast(newline, tf.int32)),
                ),
            ),
        )
        body = header == 4
        kind = tf.gather(self.classes, tokens)
        ending = body & (kind == _R_DIGIT) & (s["bracket"] == 1)  # '[2': the '[' was a bar mark
        separator = body & ((kind == _R_SEP) | ((kind == _R_DIGIT) & (s["run"] == 1)) | ending)
        append = body & ~separator & (kind != _R_IGNORED)
        # '[' then a digit: take the '[' back out of the bar.
        s["written"] = s["written"] - tf.cast(ending, tf.int32)
        s["length"] = s["length"] - tf.cast(ending, tf.int32)
        # A separator finishes the current bar (if it has music) and starts the next.
        push = separator & (s["length"] > 0)

        def shifted(key, new):
            return tf.where(
                push[:, None], tf.concat([new[:, None], s[key][:, :-1]], axis=1), s[key]
            )

        s["starts"], s["lengths"] = shifted("starts", s["start"]), shifted("lengths", s["length"])
        s["bars"] = s["bars"] + tf.cast(push, tf.int32)
        s["start"] = tf.where(separator, s["written"], s["start"])
        s["length"] = tf.where(separator, 0, s["length"])
        # Music characters go into the ring.
        slot = tf.one_hot(s["written"] % REPEAT_RING, REPEAT_RING, on_value=True, off_value=False)
        s["ring"] = tf.where(append[:, None] & slot, tokens[:, None], s["ring"])
        s["written"] = s["written"] + tf.cast(append, tf.int32)
        s["length"] = s["length"] + tf.cast(append, tf.int32)
        s["run"] = tf.cast(body & (separator & ~ending), tf.int32)
        s["bracket"] = tf.cast(append & (kind == _R_LBRACKET), tf.int32)
        return s


# --- the decoding loop -----------------------------------------------------------------------


class CompiledGrammar:
    """A :class:`musicseq.grammar_graph.GraphGrammar` whose heavy methods are traced once.

    ``plain_allowed_and_next`` builds a large graph; wrapped in a ``tf.function`` with an
    input signature (any number of streams) it is traced once per process and vocabulary,
    and every decoding loop that uses it calls the same traced function. With ``jit`` it
    and ``take`` are compiled by XLA (once per number of streams: see :func:`grammar_xla`).
    """

    def __init__(self, chars, full_lookahead: bool = False, jit: bool = False):
        import tensorflow as tf

        from musicseq.grammar_graph import CONFIG_SIZE, STATE_SIZE, GraphGrammar

        self.graph = GraphGrammar(chars, full_lookahead=full_lookahead)
        self.jit = jit
        self.xla_streams: set[int] = set()  # numbers of streams it has been run for (jit)
        state = tf.TensorSpec([None, STATE_SIZE], tf.int32)
        config = tf.TensorSpec([None, CONFIG_SIZE], tf.int32)
        compiled = dict(autograph=False, jit_compile=jit or None)
        self.plain_allowed_and_next = tf.function(
            self.graph.plain_allowed_and_next, input_signature=[state, config], **compiled
        )
        # Under XLA the gathers that finish the step for the chosen token are one kernel too.
        self.take = tf.function(self.graph.take, **compiled) if jit else self.graph.take
        self.initial, self.close, self.plans = (
            self.graph.initial,
            self.graph.close,
            self.graph.plans,
        )
        self.meter_words, self.key_words = self.graph.meter_words, self.graph.key_words

    def config_tensor(self, *args, **kwargs):
        return self.graph.config_tensor(*args, **kwargs)


_GRAMMARS: dict[tuple, CompiledGrammar] = {}


def compiled_grammar(chars, full_lookahead: bool = False, jit: bool = False) -> CompiledGrammar:
    """The compiled grammar for a vocabulary, built once per process.

    Without ``full_lookahead`` the look-ahead inside decorations, annotations and fields is
    left out of the graph (it halves the tracing time): sampling in the plain style never
    enters them, so only a prime that ends inside one needs it (see :func:`generate`)."""
    key = (tuple(chars), full_lookahead, jit)
    if key not in _GRAMMARS:
        _GRAMMARS[key] = CompiledGrammar(chars, full_lookahead, jit)
    return _GRAMMARS[key]


# The grammar's step compiled by XLA (SampleConfig.grammar_xla) runs 4-15x faster than as a
# graph: 1.40 ms against 7.13 at 64 streams, 3.32 against 14.85 at 200 (bench_grammar.py).
# But the first call with a number of streams compiles it for 10-30 s more than the graph's
# own optimisation takes, and in the decoding loop the graph's step shrinks as tunes end (the
# XLA grammar keeps a row per stream). One CLI call at the defaults (docs/benchmarks.md):
# 200 tunes 57 s as a graph, 65 s with XLA; 1,000 tunes 120 s against 123 s (the same tunes,
# and 4.5 GB against 3.7 GB at the peak); a longer max_len does not lengthen the loop, which
# stops at the longest planned tune. So "auto" takes XLA only where the compile is already
# paid: this process has compiled it for that number of streams (a notebook's next call
# after one with "on").


def grammar_xla(setting: str, chars, streams: int) -> bool:
    """Whether constrained decoding of ``streams`` tunes runs the grammar's step under XLA
    (``setting``: SampleConfig.grammar_xla). The look-ahead grammar, which only primes that
    end inside a decoration, annotation or field need, stays a graph."""
    if setting != "auto":
        return setting == "on"
    compiled = _GRAMMARS.get((tuple(chars), False, True))
    return compiled is not None and streams in compiled.xla_streams


CHUNK = 64  # loop steps per compiled call in process (progress is reported between calls)
SHRINK_AT = 0.25  # Sampler.run: ended streams leave the batch once they are this share of it
PER_STREAM_PARAMS = {"grammar"}  # decoding parameters with a row per stream


class Sampler:
    """Compiled batched generation and scoring for one model.

    ``Sampler(model, model_config)``; :meth:`generate_ids` is the whole decoding loop as one
    graph (what the SavedModel exports), :meth:`run` the same loop in chunks with progress,
    :meth:`score_ids` the scorer.
    """

    def __init__(self, model, model_config, vocab: Vocab | None = None):
        import tensorflow as tf

        from musicseq.models import step_function

        self.model, self.model_config, self.vocab = model, model_config, vocab
        self._grammars = {}
        self.initial_state, self.step = step_function(model, model_config)
        # No AutoGraph: the loops are written with tf.while_loop/tf.cond, and converting the
        # grammar's code as well made tracing several times slower.
        compiled = dict(reduce_retracing=True, autograph=False)
        self.generate_ids = tf.function(self._generate, **compiled)
        # The scorers are traced once for any batch of any length (reduce_retracing alone
        # traces the first batch's shape, then again for the second batch's).
        rows = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.int32)]
        self.score_ids = tf.function(self._score, input_signature=rows, **compiled)
        self.score_positions = tf.function(self._score_positions, input_signature=rows, **compiled)
        self._start_compiled = tf.function(self._start, **compiled)
        self._loop_compiled = tf.function(self._loop, **compiled)

    def graph_grammar(self, full_lookahead: bool = False, jit: bool = False):
        """The in-graph grammar for this model's vocabulary (built once; see
        :func:`compiled_grammar` for ``full_lookahead`` and ``jit``)."""
        key = (full_lookahead, jit)
        if key not in self._grammars:
            if self.vocab is None:
                raise ValueError("constrained decoding needs the Sampler's vocabulary")
            self._grammars[key] = compiled_grammar(self.vocab.chars, full_lookahead, jit)
        return self._grammars[key]

    # Parameters are a dict of tensors: temperature, top_k, top_p, seed, and for constrained
    # decoding grammar (the per-stream configuration rows), close_step and repeat_bias, and
    # full_lookahead (a Python True, so a loop of its own) when the prime needs it.
    def processors(self, params) -> list[LogitsProcessor]:
        """The logits processors for ``params``, in the order they apply."""
        chain: list[LogitsProcessor] = [Temperature(params["temperature"])]
        if "grammar" in params:
            if "repeat_bias" in params:
                chain.append(RepeatBias(self.vocab, params["repeat_bias"]))
            grammar = self.graph_grammar(
                params.get("full_lookahead", False), params.get("grammar_xla", False)
            )
            chain.append(GrammarMask(grammar, params["grammar"], params["close_step"]))
        else:
            chain.append(MaskReserved())
        if "heal" in params:
            chain.append(HealPrime(params["heal"], params["heal_at"]))
        chain += [TopK(params["top_k"]), TopP(params["top_p"])]
        return chain

    def _start(self, prime, num, params):
        import tensorflow as tf

        chain = self.processors(params)
        return (
            tf.constant(0),
            tf.fill([num], prime[0]),
            self.initial_state(num),
            tf.zeros([num], tf.bool),
            [p.initial(num) for p in chain],
        )

    def _loop(self, carry, prime, stop, params, rows):
        """Run the loop from ``carry`` until step ``stop`` or every stream has ended; returns
        the new carry and the tokens chosen, ``(num, steps run)``.

        ``rows`` is ``(index, num)``: the carry holds the streams ``index`` of ``num`` (all
        of them, or those :meth:`run` kept after others ended). Each step draws for all
        ``num`` rows, the missing ones' logits zero, and keeps the carried rows' draws: a
        stream draws what it would in the whole batch (a stateless draw depends on the
        batch's shape, not on the other rows' logits), and the chunk comes back whole, PAD
        where a stream is not carried."""
        import tensorflow as tf

        chain = self.processors(params)
        prime_len = tf.shape(prime)[0]
        first = carry[0]
        index, num = rows
        where = index[:, None]
        out = tf.TensorArray(tf.int32, size=0, dynamic_size=True)

        def cond(i, tokens, state, done, memory, out):
            return (i < stop) & ~tf.reduce_all(done)

        def carried(processor, kept):
            # A whole-batch processor's state has a row per stream of the batch: the carried ones.
            return _rows(kept, index) if processor.whole_batch else kept

        def body(i, tokens, state, done, memory, out):
            memory = [p.prepare(kept) for p, kept in zip(chain, memory)]
            logits, state = self.step(tokens, state)  # (num, vocab)
            logits = tf.cast(logits, tf.float32)
            for processor, kept in zip(chain, memory):
                logits = processor(logits, carried(processor, kept))
            every = tf.scatter_nd(where, logits, tf.stack([num, tf.shape(logits)[1]]))
            sampled = tf.random.stateless_categorical(
                every, 1, seed=tf.stack([params["seed"], i]), dtype=tf.int32
            )[:, 0]
            sampled = tf.gather(sampled, index)
            sampled.set_shape(tokens.shape)  # one stream: a static (1,) in the carry
            in_prime = i + 1 < prime_len
            forced = tf.fill(tf.shape(tokens), prime[tf.minimum(i + 1, prime_len - 1)])
            chosen = tf.where(in_prime, forced, tf.where(done, PAD, sampled))
            done = done | (~in_prime & tf.equal(chosen, EOT))
            written = tf.tensor_scatter_nd_update(tf.fill([num], PAD), where, chosen)
            memory = [
                p.advance(kept, written if p.whole_batch else chosen, i)
                for p, kept in zip(chain, memory)
            ]
            return i + 1, chosen, state, done, memory, out.write(i - first, written)

        *carry, out = tf.while_loop(cond, body, (*carry, out))
        return tuple(carry), tf.transpose(out.stack())

    def _generate(self, prime, num, max_len, params):
        """``prime`` (P,) int32 starting with EOT -> (num, <= max_len) int32 sampled ids."""
        import tensorflow as tf

        total = tf.shape(prime)[0] - 1 + max_len  # feed the prime, then sample max_len
        rows = (tf.range(num), tf.convert_to_tensor(num, tf.int32))
        carry, generated = self._loop(self._start(prime, num, params), prime, total, params, rows)
        if "grammar" in params:
            # In process, generate() replays the prime through the reference grammar first;
            # here (the SavedModel) a prime the grammar rejects would come back as the tunes.
            chain = self.processors(params)
            at = [isinstance(p, GrammarMask) for p in chain].index(True)
            rejected = tf.equal(chain[at].grammar.graph.finished(carry[4][at][0]), 2)
            check = tf.debugging.Assert(
                ~tf.reduce_any(rejected),
                [
                    "constrained decoding cannot continue this prime (a constrained tune's "
                    "header is X:1, T:, M:, L:, K:, one line each, and its body follows the form)"
                ],
            )
            with tf.control_dependencies([check]):
                generated = tf.identity(generated)
        return generated[:, tf.shape(prime)[0] - 1 :]  # the sampled part only

    def run(self, prime_ids, num, max_len, params, progress=None, shrink=True):
        """The loop in chunks of :data:`CHUNK` steps; ``progress(step, total, tunes_done, num,
        characters)`` is called after each (characters sampled so far, prime excluded), and
        ``progress.stage(text)``, where it has one, before the loop is traced.
        Returns the sampled ids ``(num, <= max_len)`` as numpy.

        Between chunks the streams that have ended leave the batch once they are a quarter
        of it (:func:`_keep_rows`): a step costs in proportion to the streams it carries, and
        a batch of tunes runs until its longest one ends. Every stream draws what it would
        in the whole batch (:meth:`_loop`). A ``whole_batch`` processor (the grammar under
        XLA, compiled for one number of streams) keeps every stream's row; ``shrink=False``
        keeps every stream."""
        import numpy as np
        import tensorflow as tf

        prime = tf.constant(prime_ids, tf.int32)
        # One stream is traced on its own (the Transformer then keeps its cache in one block:
        # models.transformer.cache_blocks); any other number shares one trace.
        num_t = 1 if num == 1 else tf.constant(num, tf.int32)
        stage = getattr(progress, "stage", None)
        if stage is not None:  # what the wait before the first chunk is (Progress.stage)
            stage("building the decoding graph (once per process), then the first steps")
        self._trace_for_any_size(num_t, params)
        total = len(prime_ids) - 1 + max_len
        carry = self._start_compiled(prime, num_t, params)
        index = np.arange(num, dtype=np.int32)
        shrink = shrink and num > 1
        whole = [p.whole_batch for p in self.processors(params)]
        pieces, step, chars = [], 0, 0
        while step < total:
            stop = min(step + CHUNK, total)
            rows = (tf.constant(index), tf.constant(num, tf.int32))
            carry, chunk = self._loop_compiled(carry, prime, tf.constant(stop), params, rows)
            chunk = chunk.numpy()
            sampled = chunk[:, max(0, len(prime_ids) - 1 - step) :]
            chars += int(np.count_nonzero((sampled != PAD) & (sampled != EOT)))
            pieces.append(chunk)
            step = int(carry[0])
            done = carry[3].numpy()
            if progress is not None:
                progress(step, total, num - len(index) + int(done.sum()), num, chars)
            if done.all():
                break
            if shrink and done.any() and done.sum() >= SHRINK_AT * len(done):
                keep = np.flatnonzero(~done).astype(np.int32)
                carry, params = _keep_rows(carry, params, tf.constant(keep), whole)
                index = index[keep]
        ids = np.concatenate(pieces, axis=1) if pieces else np.zeros((num, 0), np.int32)
        return ids[:, len(prime_ids) - 1 :]

    def _trace_for_any_size(self, num, params):
        """Trace the loop's two functions for any prime length and number of streams (a
        Python ``num`` of 1: for one stream) before their first call. Traced for the first
        call's sizes, they were traced again for the next call with other sizes: ~17 s more
        for the shipped default's second constrained call (the quickstart notebook's jigs).
        A cache hit after the first time."""
        import tensorflow as tf

        any_num = not isinstance(num, int)

        def spec(name, value):
            if not isinstance(value, tf.Tensor):
                return value  # a Python setting (full_lookahead, grammar_xla): its own trace
            per_stream = any_num and name in PER_STREAM_PARAMS
            return tf.TensorSpec(
                [None, *value.shape[1:]] if per_stream else value.shape, value.dtype
            )

        prime = tf.TensorSpec([None], tf.int32)
        scalar = tf.TensorSpec([], tf.int32)
        params = {name: spec(name, value) for name, value in params.items()}
        start = self._start_compiled.get_concrete_function(
            prime, scalar if any_num else num, params
        )
        carry = tf.nest.map_structure(
            lambda t: tf.TensorSpec(t.shape, t.dtype), start.structured_outputs
        )
        rows = (tf.TensorSpec([None], tf.int32), scalar)
        self._loop_compiled.get_concrete_function(carry, prime, scalar, params, rows)

    def _score(self, ids, lengths):
        """Total nats of each row: ``ids`` (batch, T) ``EOT tune EOT`` padded, ``lengths``
        (batch,) their lengths; every character after the first is scored once."""
        import tensorflow as tf

        return tf.reduce_sum(self._score_positions(ids, lengths), axis=1)

    def _score_positions(self, ids, lengths):
        """Nats of each prediction, (batch, T - 1): column t scores ``ids[:, t + 1]`` from what
        precedes it (a Transformer: from at least half a context back, in windows of its
        context sliding by half); 0 past each row's length."""
        import tensorflow as tf

        n = tf.shape(ids)[1] - 1  # predictions per row
        scored = tf.range(n)[None, :] < (lengths - 1)[:, None]

        inputs = ids
        if self.model_config.metrical:
            from musicseq.models import meter_clock

            inputs, _ = meter_clock(self.model).pack_sequences(ids)

        def nats(start, end):
            logits = tf.cast(self.model(inputs[:, start:end], training=False), tf.float32)
            targets = ids[:, start + 1 : end + 1]
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)

        if self.model_config.kind != "transformer":
            return tf.where(scored, nats(0, n), 0.0)
        context = self.model_config.context
        stride = context // 2

        def window(k, total):
            # Window k reads inputs [k * stride, k * stride + context) and scores what the
            # windows before it did not: all of window 0, the last `stride` of the others.
            start = k * stride
            end = tf.minimum(start + context, n)
            got = nats(start, end)
            position = start + tf.range(end - start)
            new = position >= tf.where(k == 0, 0, start + context - stride)
            keep = new[None, :] & tf.gather(scored, position, axis=1)
            placed = tf.pad(tf.where(keep, got, 0.0), [[0, 0], [start, n - end]])
            return k + 1, total + placed

        def more(k, total):
            return tf.where(k == 0, 0, k * stride + context - stride) < n

        _, total = tf.while_loop(
            more, window, (tf.constant(0), tf.zeros(tf.shape(scored), tf.float32))
        )
        return total


_SAMPLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _keep_rows(carry, params, keep, whole):
    """The loop's carry and parameters for the streams ``keep`` only: every per-stream tensor
    (the model's state, the processors' states, the tokens and flags: all with the stream on
    their first axis) is gathered; scalars (the step, the Transformer's position) stay, and
    so do the states of the processors flagged in ``whole`` (``whole_batch``: every stream's
    row), and the per-stream parameters when one is (the grammar's rows, under XLA)."""
    step, tokens, state, done, memory = carry
    memory = [m if w else _rows(m, keep) for m, w in zip(memory, whole)]
    rows = not any(whole)
    kept = {k: _rows(v, keep) if rows and k in PER_STREAM_PARAMS else v for k, v in params.items()}
    return (step, *_rows((tokens, state, done), keep), memory), kept


def _rows(tree, index):
    """The rows ``index`` of every tensor in ``tree`` that has rows (rank >= 1; scalars stay)."""
    import tensorflow as tf

    return tf.nest.map_structure(lambda t: tf.gather(t, index) if t.shape.rank else t, tree)


def sampler_for(model, model_config, vocab: Vocab | None = None) -> Sampler:
    """The :class:`Sampler` of a model, made once per model (its loops are traced once)."""
    key = (model_config, (vocab.kind, tuple(vocab.tokens)) if vocab is not None else None)
    per_model = _SAMPLERS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = Sampler(model, model_config, vocab)
    return per_model[key]


def score_texts(
    model,
    model_config,
    vocab: Vocab,
    texts: list[str],
    batch_size: int = 16,
    per_token: bool = False,
):
    """Total nats of each tune (``EOT`` + text + ``EOT``, scoring text and the final ``EOT``):
    the one scorer (held-out loss, model cards, the SavedModel's ``score``). With
    ``per_token``, each tune's nats token by token instead (an array per tune: its tokens,
    then the final ``EOT``; their sum is the total)."""
    import numpy as np
    import tensorflow as tf

    sampler = sampler_for(model, model_config, vocab)
    from musicseq.data import length_batches

    rows = [np.asarray([EOT, *vocab.encode(t), EOT], np.int32) for t in texts]
    scorer = sampler.score_positions if per_token else sampler.score_ids
    out: list = [None] * len(texts)
    for batch, ids in length_batches(rows, batch_size):
        lengths = np.asarray([len(rows[i]) for i in batch], np.int32)
        got = scorer(tf.constant(ids), tf.constant(lengths)).numpy()
        for row, i in enumerate(batch):
            out[i] = got[row, : len(rows[i]) - 1].astype(np.float64) if per_token else got[row]
    return out if per_token else np.asarray(out, np.float64)


def plan_forms(config: SampleConfig, fixed: dict[str, str] | None = None) -> list[dict]:
    """Per tune: the header values to force and the form the grammar writes.

    ``form="auto"`` draws a (meter, form) pair per tune from the corpus's forms
    (:func:`musicseq.notation.form.form_prior`) — the form given the meter when the meter is
    forced — among the forms a grammar can write (parts of 8 or 16 bars, each written once
    or repeated); the draw is seeded by ``config.seed``. A meter the prime writes counts as
    forced (``M:3/4\n``), and a prime that ends inside its ``M:`` field draws among the
    meters it begins (``M:6`` → 6/8, 6/4). Otherwise every tune gets ``config.form`` with
    ``config.bars`` bars per part (``free``: no form).
    """
    import json

    import numpy as np

    from musicseq.notation.form import GENERATABLE, PRIOR_FILE, meter_name

    fixed = {k: v for k, v in (fixed or {}).items() if v}
    cadence = None if config.cadence == "none" else config.cadence
    if config.form != "auto":
        form = None if config.form == "free" else config.form
        return [dict(fixed=fixed, form=form, bars=config.bars, cadence=cadence)] * config.num
    begun = None  # the start of a meter the prime leaves unfinished
    if "M" not in fixed:
        value, complete = prime_field(config.prime, "M")
        if complete:
            fixed["M"] = value
        else:
            begun = value
    shipped = json.loads(PRIOR_FILE.read_text())
    prior, per_meter = shipped["forms"], shipped["tunes_per_meter"]
    choices = []  # (probability, meter, form, bars)
    for meter, forms in prior.items():
        if "M" in fixed and meter != meter_name(fixed["M"]):
            continue
        if begun is not None and not meter.startswith(begun):
            continue
        for key, p in forms.items():
            label, _, bars = key.partition("/")
            if label in GENERATABLE and bars in ("8", "16"):
                choices.append((p * per_meter.get(meter, 0), meter, label, int(bars)))
    # Only forms the prime can begin (a prime that opens a repeat, |:, rules out AB).
    possible = [c for c in choices if _begins(config.prime, fixed, *c[1:], cadence)]
    choices = possible or choices  # none: generate() names where the prime fails
    if not choices:  # a meter the corpus never uses: its commonest form
        choices = [(1.0, fixed.get("M"), "AABB", config.bars)]
    weights = np.asarray([c[0] for c in choices])
    rng = np.random.default_rng([config.seed & 0xFFFFFFFF, 0x466F726D])  # "Form"
    picks = rng.choice(len(choices), size=config.num, p=weights / weights.sum())
    plans = []
    for index in picks:
        _, meter, label, bars = choices[index]
        forced = dict(fixed) if "M" in fixed or meter is None else {**fixed, "M": meter}
        plans.append(dict(fixed=forced, form=label, bars=bars, cadence=cadence))
    return plans


def _begins(prime: str, fixed: dict, meter, form, bars, cadence) -> bool:
    """Whether the reference grammar of this plan accepts ``prime`` (~0.1 ms)."""
    from musicseq.notation.grammar import GrammarError, TuneGrammar

    forced = dict(fixed) if "M" in fixed or meter is None else {**fixed, "M": meter}
    try:
        grammar = TuneGrammar(
            fixed=forced, form=form, bars_per_part=bars, cadence=cadence, header="template"
        )
        for ch in prime:
            grammar.advance(ch)
    except GrammarError:
        return False
    return True


_HEADER_FIELD = re.compile(r"^([A-Za-z]):([^\n]*)(\n?)", re.MULTILINE)


def prime_field(prime: str, name: str) -> tuple[str | None, bool]:
    """The value of header field ``name`` in ``prime`` (before its ``K:`` line ends), and
    whether its line is complete: ``("3/4", True)`` for ``M:3/4\n``, ``("6", False)`` for
    a prime ending ``M:6``, ``(None, False)`` when the prime has no such field."""
    for match in _HEADER_FIELD.finditer(prime):
        field, value, newline = match.groups()
        if field == name:
            return value.strip(), bool(newline)
        if field == "K" and newline:
            break  # the body: a mid-tune field changes the tune, not its header
    return None, False


_BAR_SPLIT = re.compile(r"[|\]]+:*\d*|:+[|\]]*\d*|\[\d")
_MUSIC_ONLY = re.compile(r"[\s()~.]")
REPEAT_DISTANCES = (1, 2, 4, 8)  # bars back whose continuation is favoured


def repeat_candidates(text: str) -> set[str]:
    """The characters that would continue repeating an earlier bar of the body.

    The bar being written is compared, by its notes and rests only (no spaces, slurs or
    decorations), with the bars 1, 2, 4 and 8 back as written: when it is so far a prefix of
    one of them, that bar's next character is a candidate. Folk tunes are built from
    returning bars and phrases (about 27% of the corpus's bars repeat an earlier bar, 15%
    the bar 4 back); models repeat far less (the shipped Transformer about 11%), so
    constrained decoding adds ``SampleConfig.repeat_bias`` to these characters' logits.
    The model still chooses; 1.5 brought the shipped Transformer's figures within 0.05 of
    the corpus's (docs and model card).
    """
    body = text.find("\nK:")
    start = text.find("\n", body + 1) if body >= 0 else -1
    if start < 0:
        return set()
    # Bars by their music only: spaces, slurs and decorations do not make bars differ.
    bars = [_MUSIC_ONLY.sub("", b) for b in _BAR_SPLIT.split(text[start + 1 :])]
    current = bars[-1]
    done = [b for b in bars[:-1] if b]
    found = set()
    for back in REPEAT_DISTANCES:
        if len(done) >= back:
            source = done[-back]
            if len(done) >= 2 and done[-1] == done[-2] == source:
                continue  # a bar just written twice in a row: no third
            if source.startswith(current) and len(source) > len(current):
                found.add(source[len(current)])
    return found


def _params(config: SampleConfig) -> dict:
    import tensorflow as tf

    return {
        "temperature": tf.constant(config.temperature, tf.float32),
        "top_k": tf.constant(config.top_k, tf.int32),
        "top_p": tf.constant(config.top_p, tf.float32),
        "seed": tf.constant(config.seed, tf.int32),
    }


def close_reserve(max_len: int) -> int:
    """Characters kept at the end of constrained decoding for finishing the tune."""
    return min(200, max_len // 4)


def generate(
    model,
    model_config,
    vocab: Vocab,
    config: SampleConfig,
    sampler: Sampler | None = None,
    *,
    constrain: bool = False,
    fixed: dict[str, str] | None = None,
    progress=None,
) -> list[str]:
    """Generate ``config.num`` tunes; each is the prime followed by sampled text up to EOT.

    With ``constrain`` every tune is valid by construction (:mod:`musicseq.grammar_graph`, the
    in-graph twin of :mod:`musicseq.notation.grammar`): the header follows the template
    ``X:1 / T: / M: / L: / K:`` with values from allowed sets (or ``fixed``), the body the
    form :func:`plan_forms` draws, bars are exact, and ``config.repeat_bias`` favours
    returning bars. ``config.prime`` must then itself follow the template (the default
    ``X:1\\n`` does). ``progress`` (e.g. :class:`musicseq.progress.Progress`) is called
    between chunks of the loop (:meth:`Sampler.run`).
    """
    import tensorflow as tf

    config.validate()
    check_prime(config.prime, vocab)
    sampler = sampler or sampler_for(model, model_config, vocab)
    prime_ids = [EOT] + vocab.encode(config.prime)  # every training tune follows an EOT
    params = _params(config)
    if constrain and vocab.kind != "chars":
        raise UserError(
            f"constrained decoding writes characters; this model reads {vocab.kind!r} tokens "
            "(train it with --tokens chars, or sample without --constrain)"
        )
    head = config.prime
    if vocab.kind != "chars":  # token healing: the prime's last token is sampled again
        head, prime_ids, allowed = heal_prime(config.prime, vocab)
        params["heal"] = tf.constant(allowed)
        params["heal_at"] = tf.constant(len(prime_ids) - 1)
    grammars = []
    if constrain:
        from musicseq.grammar_graph import needs_full_lookahead
        from musicseq.notation.grammar import GrammarError, TuneGrammar

        plans = plan_forms(config, fixed)
        try:
            for plan in plans:
                grammar = TuneGrammar(
                    fixed=plan["fixed"],
                    alphabet=set(vocab.chars),
                    form=plan["form"],
                    bars_per_part=plan["bars"],
                    cadence=plan["cadence"],
                    header="template",  # as the in-graph grammar writes headers
                )
                grammars.append(grammar)
            rows = sampler.graph_grammar().plans(plans)
        except GrammarError as exc:  # e.g. a forced key the vocabulary cannot spell
            raise UserError(str(exc)) from exc
        try:
            for grammar in grammars:
                for ch in config.prime:
                    grammar.advance(ch)
        except GrammarError as exc:
            hint = ""
            if not re.search(r"(^|\n)K:[^\n]*\n", grammar.text):  # failed in the header
                hint = "; a constrained tune's header is X:1, T:, M:, L:, K:, one line each"
            raise UserError(
                f"constrained decoding cannot continue this prime ({exc}){hint}"
            ) from exc
        params["grammar"] = tf.constant(rows)
        if any(needs_full_lookahead(grammar.state) for grammar in grammars):
            params["full_lookahead"] = True
        elif grammar_xla(config.grammar_xla, vocab.chars, config.num):
            params["grammar_xla"] = True
            # Built here, outside the loop's trace (its tables are constants of this graph).
            sampler.graph_grammar(jit=True).xla_streams.add(config.num)
        params["close_step"] = tf.constant(
            len(prime_ids) - 1 + config.max_len - close_reserve(config.max_len), tf.int32
        )
        if config.repeat_bias:
            params["repeat_bias"] = tf.constant(config.repeat_bias, tf.float32)
    ids = sampler.run(prime_ids, config.num, config.max_len, params, progress)
    texts = [head + vocab.decode(row) for row in ids]
    if not constrain:
        return texts
    out = []
    for row, text, grammar in zip(ids, texts, grammars):
        if EOT in row:
            out.append(text)
            continue
        # Out of room: the reference grammar replays the tune (closing where the loop's
        # grammar closed) and completes it.
        close_at = config.max_len - close_reserve(config.max_len)
        for index, ch in enumerate(text[len(config.prime) :]):
            if index >= close_at:
                grammar.close()
            grammar.advance(ch)
        out.append(grammar.completion())
    return out


def generate_constrained(
    model, model_config, vocab: Vocab, config: SampleConfig, fixed=None, progress=None
) -> list[str]:
    """:func:`generate` with ``constrain=True``."""
    return generate(
        model, model_config, vocab, config, constrain=True, fixed=fixed, progress=progress
    )
