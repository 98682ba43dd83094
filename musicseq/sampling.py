"""Generation: logits transforms and the compiled sampling loop.

One ``tf.function`` runs the whole generation: a ``tf.while_loop`` that feeds the prime,
then samples, carrying the recurrent state, for ``num`` streams at once. Every stream stops
at its own end-of-tune token. Sampling uses a stateless RNG keyed by ``(seed, step)``, so
the same seed gives the same tunes.
"""

from __future__ import annotations

from musicseq.config import SampleConfig
from musicseq.vocab import EOT, PAD, UNK, Vocab


def check_prime(prime: str, vocab: Vocab) -> None:
    """Raise ``ValueError`` naming the characters of ``prime`` the model has never seen."""
    unknown = vocab.unknown_chars(prime)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10])
        raise ValueError(f"prime contains characters outside the model's vocabulary: {shown}")


def apply_temperature(logits, temperature):
    """Divide logits by the temperature (float32)."""
    import tensorflow as tf

    return tf.cast(logits, tf.float32) / temperature


def mask_reserved(logits):
    """Forbid padding and unknown tokens: their logits become -inf (end-of-tune stays)."""
    import tensorflow as tf

    vocab_size = tf.shape(logits)[-1]
    banned = tf.reduce_any(tf.one_hot([PAD, UNK], vocab_size, on_value=True, off_value=False), 0)
    return tf.where(banned[None, :], tf.constant(float("-inf"), logits.dtype), logits)


class Sampler:
    """Compiled batched sampler for one model.

    ``step_fn`` is ``(initial_state, step)`` from :func:`musicseq.models.step_function`.
    """

    def __init__(self, initial_state, step):
        import tensorflow as tf

        self._initial_state = initial_state
        self._step = step
        self._loop = tf.function(self._generate, reduce_retracing=True)

    def _generate(self, prime, num, max_len, temperature, seed):
        import tensorflow as tf

        prime_len = tf.shape(prime)[0]
        total = prime_len - 1 + max_len  # steps: feed the prime, then sample max_len tokens
        states = self._initial_state(num)
        tokens = tf.fill([num], prime[0])
        done = tf.zeros([num], tf.bool)
        out = tf.TensorArray(tf.int32, size=0, dynamic_size=True)

        def cond(i, tokens, states, done, out):
            return (i < total) & ~tf.reduce_all(done)

        def body(i, tokens, states, done, out):
            logits, states = self._step(tokens, states)  # (num, vocab)
            logits = mask_reserved(apply_temperature(logits, temperature))
            sampled = tf.random.stateless_categorical(logits, 1, seed=tf.stack([seed, i]))[:, 0]
            sampled = tf.cast(sampled, tf.int32)
            in_prime = i + 1 < prime_len
            forced = tf.fill([num], prime[tf.minimum(i + 1, prime_len - 1)])
            next_tokens = tf.where(in_prime, forced, tf.where(done, PAD, sampled))
            done = done | (~in_prime & tf.equal(next_tokens, EOT))
            out = out.write(i, next_tokens)
            return i + 1, next_tokens, states, done, out

        _, _, _, _, out = tf.while_loop(
            cond, body, (tf.constant(0), tokens, states, done, out), maximum_iterations=total
        )
        generated = tf.transpose(out.stack())  # (num, steps)
        return generated[:, prime_len - 1 :]  # (num, <= max_len): sampled part only

    def __call__(self, prime_ids: list[int], num: int, max_len: int, temperature: float, seed: int):
        import tensorflow as tf

        result = self._loop(
            tf.constant(prime_ids, tf.int32),
            tf.constant(num, tf.int32),
            tf.constant(max_len, tf.int32),
            tf.constant(temperature, tf.float32),
            tf.constant(seed, tf.int32),
        )
        return result.numpy()


def generate(model, model_config, vocab: Vocab, config: SampleConfig) -> list[str]:
    """Generate ``config.num`` tunes; each is the prime followed by sampled text up to EOT."""
    config.validate()
    check_prime(config.prime, vocab)
    from musicseq.models import step_function

    sampler = Sampler(*step_function(model, model_config))
    prime_ids = [EOT] + vocab.encode(config.prime)  # every training tune follows an EOT
    ids = sampler(prime_ids, config.num, config.max_len, config.temperature, config.seed)
    return [config.prime + vocab.decode(row) for row in ids]
