"""Generation: logits transforms and the compiled generation and scoring loops.

Each transform is a small function of ``(logits, parameter)`` that returns logits; the loop
applies them in order (reserved-token mask, temperature, top-k, top-p) and samples. One
``tf.function`` runs a whole generation call: a ``tf.while_loop`` that first feeds the prime
and then samples, carrying the model's state (recurrent state, or the Transformer's
key/value cache), for ``num`` streams at once; each stream stops at its own end-of-tune
token. Sampling uses a stateless RNG keyed by ``(seed, step)``: the same seed and arguments
give the same tunes, in process and in the exported SavedModel.
"""

from __future__ import annotations

import re

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

    vocab_size = tf.shape(logits)[-1]
    k = tf.where(k <= 0, vocab_size, tf.minimum(k, vocab_size))
    kth = tf.gather(tf.sort(logits, axis=-1, direction="DESCENDING"), k - 1, axis=-1)  # (batch,)
    return tf.where(logits < kth[:, None], NEG_INF, logits)


def top_p_filter(logits, p):
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches ``p``."""
    import tensorflow as tf

    ordered = tf.sort(logits, axis=-1, direction="DESCENDING")
    probs = tf.nn.softmax(ordered, axis=-1)
    before = tf.cumsum(probs, axis=-1, exclusive=True)  # probability of the tokens ranked above
    kept = tf.where(before < p, ordered, tf.constant(float("inf")))  # the first is always kept
    threshold = tf.reduce_min(kept, axis=-1)  # smallest kept logit
    filtered = tf.where(logits < threshold[:, None], NEG_INF, logits)
    return tf.where(p >= 1.0, logits, filtered)


# --- compiled loops -------------------------------------------------------------------------


class Sampler:
    """Compiled batched generation and scoring for one model.

    ``initial_state`` and ``step`` come from :func:`musicseq.models.step_function`.
    """

    def __init__(self, initial_state, step):
        import tensorflow as tf

        self.initial_state = initial_state
        self.step = step
        self.generate_ids = tf.function(self._generate, reduce_retracing=True)
        self.score_ids = tf.function(self._score, reduce_retracing=True)

    def _generate(self, prime, num, max_len, temperature, top_k, top_p, seed):
        """``prime`` (P,) int32 starting with EOT -> (num, <= max_len) int32 sampled ids."""
        import tensorflow as tf

        prime_len = tf.shape(prime)[0]
        total = prime_len - 1 + max_len  # feed the prime, then sample max_len tokens
        state = self.initial_state(num)
        tokens = tf.fill([num], prime[0])
        done = tf.zeros([num], tf.bool)
        out = tf.TensorArray(tf.int32, size=0, dynamic_size=True)

        def cond(i, tokens, state, done, out):
            return (i < total) & ~tf.reduce_all(done)

        def body(i, tokens, state, done, out):
            logits, state = self.step(tokens, state)  # (num, vocab)
            logits = mask_reserved(apply_temperature(logits, temperature))
            logits = top_p_filter(top_k_filter(logits, top_k), top_p)
            sampled = tf.random.stateless_categorical(
                logits, 1, seed=tf.stack([seed, i]), dtype=tf.int32
            )[:, 0]
            in_prime = i + 1 < prime_len
            forced = tf.fill([num], prime[tf.minimum(i + 1, prime_len - 1)])
            next_tokens = tf.where(in_prime, forced, tf.where(done, PAD, sampled))
            done = done | (~in_prime & tf.equal(next_tokens, EOT))
            return i + 1, next_tokens, state, done, out.write(i, next_tokens)

        _, _, _, _, out = tf.while_loop(
            cond, body, (tf.constant(0), tokens, state, done, out), maximum_iterations=total
        )
        generated = tf.transpose(out.stack())  # (num, steps)
        return generated[:, prime_len - 1 :]  # the sampled part only

    def _score(self, ids, lengths):
        """Mean nats per predicted token of each row: ``ids`` (batch, T) padded, ``lengths`` (batch,)."""
        import tensorflow as tf

        batch, steps = tf.shape(ids)[0], tf.shape(ids)[1]
        state = self.initial_state(batch)
        total = tf.zeros([batch], tf.float32)

        def body(t, state, total):
            logits, state = self.step(ids[:, t], state)
            nats = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=ids[:, t + 1], logits=tf.cast(logits, tf.float32)
            )
            return t + 1, state, total + tf.where(t + 1 < lengths, nats, 0.0)

        _, _, total = tf.while_loop(
            lambda t, *_: t < steps - 1, body, (tf.constant(0), state, total)
        )
        return total / tf.cast(tf.maximum(lengths - 1, 1), tf.float32)

    def __call__(self, prime_ids, num, max_len, temperature=1.0, top_k=0, top_p=1.0, seed=0):
        import tensorflow as tf

        result = self.generate_ids(
            tf.constant(prime_ids, tf.int32),
            tf.constant(num, tf.int32),
            tf.constant(max_len, tf.int32),
            tf.constant(temperature, tf.float32),
            tf.constant(top_k, tf.int32),
            tf.constant(top_p, tf.float32),
            tf.constant(seed, tf.int32),
        )
        return result.numpy()


def sampler_for(model, model_config) -> Sampler:
    from musicseq.models import step_function

    return Sampler(*step_function(model, model_config))


def generate(
    model, model_config, vocab: Vocab, config: SampleConfig, sampler: Sampler | None = None
) -> list[str]:
    """Generate ``config.num`` tunes; each is the prime followed by sampled text up to EOT."""
    config.validate()
    check_prime(config.prime, vocab)
    sampler = sampler or sampler_for(model, model_config)
    prime_ids = [EOT] + vocab.encode(config.prime)  # every training tune follows an EOT
    ids = sampler(
        prime_ids,
        config.num,
        config.max_len,
        config.temperature,
        config.top_k,
        config.top_p,
        config.seed,
    )
    return [config.prime + vocab.decode(row) for row in ids]


def plan_forms(config: SampleConfig, fixed: dict[str, str] | None = None) -> list[dict]:
    """Per tune: the header values to force and the form the grammar writes.

    ``form="auto"`` draws a (meter, form) pair per tune from the corpus's forms
    (:func:`musicseq.notation.form.form_prior`) — the form given the meter when the meter is
    forced — among the forms a grammar can write (parts of 8 or 16 bars, each written once
    or repeated); the draw is seeded by ``config.seed``. Otherwise every tune gets
    ``config.form`` with ``config.bars`` bars per part (``free``: no form).
    """
    import json

    import numpy as np

    from musicseq.notation.form import GENERATABLE, PRIOR_FILE, meter_name

    fixed = {k: v for k, v in (fixed or {}).items() if v}
    cadence = None if config.cadence == "none" else config.cadence
    if config.form != "auto":
        form = None if config.form == "free" else config.form
        return [dict(fixed=fixed, form=form, bars=config.bars, cadence=cadence)] * config.num
    shipped = json.loads(PRIOR_FILE.read_text())
    prior, per_meter = shipped["forms"], shipped["tunes_per_meter"]
    choices = []  # (probability, meter, form, bars)
    for meter, forms in prior.items():
        if "M" in fixed and meter != meter_name(fixed["M"]):
            continue
        for key, p in forms.items():
            label, _, bars = key.partition("/")
            if label in GENERATABLE and bars in ("8", "16"):
                choices.append((p * per_meter.get(meter, 0), meter, label, int(bars)))
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


def generate_constrained(
    model, model_config, vocab: Vocab, config: SampleConfig, fixed: dict[str, str] | None = None
) -> list[str]:
    """Generate tunes that are valid by construction (see :mod:`musicseq.notation.grammar`).

    The header follows the template ``X:1 / T: / M: / L: / K:`` with values from allowed
    sets (or ``fixed``); in the body, a bar line can only come when the bar is full and a
    note only if it fits in the bar. The model's logits are masked to the characters the
    grammar allows at each step, then temperature, top-k and top-p apply as usual. One
    compiled model step per character for all streams; the grammar runs in Python.
    ``config.prime`` must itself follow the template (the default ``X:1\\n`` does).
    """
    import numpy as np
    import tensorflow as tf

    from musicseq.models import step_function
    from musicseq.notation.grammar import END, GrammarError, TuneGrammar

    config.validate()
    check_prime(config.prime, vocab)
    alphabet = set(vocab.chars)
    try:
        grammars = [
            TuneGrammar(
                fixed=plan["fixed"],
                alphabet=alphabet,
                form=plan["form"],
                bars_per_part=plan["bars"],
                cadence=plan["cadence"],
            )
            for plan in plan_forms(config, fixed)
        ]
    except GrammarError as exc:  # e.g. a forced key the vocabulary cannot spell
        raise UserError(str(exc)) from exc
    try:
        for ch in config.prime:
            for grammar in grammars:
                grammar.advance(ch)
    except GrammarError as exc:
        raise UserError(
            f"constrained decoding cannot continue this prime ({exc})"
        ) from exc
    char_ids = {c: vocab.encode(c)[0] for c in vocab.chars}
    initial_state, step = step_function(model, model_config)
    step_fn = tf.function(step, reduce_retracing=True, autograph=False)  # explicit tf.cond inside

    @tf.function(reduce_retracing=True)
    def pick(logits, allowed, bias, i):
        logits = apply_temperature(logits, config.temperature) + bias
        logits = tf.where(allowed, logits, NEG_INF)
        logits = top_p_filter(top_k_filter(logits, config.top_k), config.top_p)
        return tf.random.stateless_categorical(
            logits, 1, seed=tf.stack([config.seed, i]), dtype=tf.int32
        )[:, 0]

    num, size = config.num, len(vocab)
    state = initial_state(tf.constant(num))
    tokens = tf.fill([num], EOT)
    for ch in config.prime:  # the prime is fed, not sampled
        _, state = step_fn(tokens, state)
        tokens = tf.fill([num], char_ids[ch])
    reserve = min(200, config.max_len // 4)  # characters kept for finishing the last bar
    done = [False] * num
    for i in range(config.max_len):
        logits, state = step_fn(tokens, state)
        allowed = np.zeros((num, size), dtype=bool)
        bias = np.zeros((num, size), dtype=np.float32)
        for b, grammar in enumerate(grammars):
            if done[b]:
                allowed[b, EOT] = True
                continue
            if i >= config.max_len - reserve:
                grammar.close()
            options = grammar.plain_allowed()
            ids = [char_ids[c] for c in options if c in char_ids] + (
                [EOT] if END in options else []
            )
            if not ids:  # the vocabulary cannot continue this tune: end it cleanly
                done[b] = True
                allowed[b, EOT] = True
                continue
            allowed[b, ids] = True
            for ch in repeat_candidates(grammar.text) if config.repeat_bias else ():
                if ch in options and ch in char_ids:
                    bias[b, char_ids[ch]] = config.repeat_bias
        chosen = pick(logits, allowed, bias, tf.constant(i, tf.int32)).numpy()
        for b, grammar in enumerate(grammars):
            if not done[b]:
                if chosen[b] == EOT:
                    grammar.advance(END)
                    done[b] = True
                else:
                    grammar.advance(vocab.chars[chosen[b] - len(RESERVED)])
        if all(done):
            break
        tokens = tf.constant(chosen, tf.int32)
    return [g.text if g.finished else g.completion() for g in grammars]
