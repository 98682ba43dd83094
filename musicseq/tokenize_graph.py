"""A vocabulary's tokenizer inside a TensorFlow graph: text → ids with nothing but TF ops.

The twin of :meth:`musicseq.vocab.Vocab.encode` (equal ids on every tune of the corpus,
tested), for SavedModels that must read text without musicseq. The segmentation is
:meth:`musicseq.notation.tokens.Tokenizer.pattern`, one alternation ordered longest first
and ending in "any character": RE2 takes the first alternative that matches at the leftmost
position, which is the Python tokenizer's greedy longest match. A separator is inserted
before every match (``tf.strings.regex_replace``) and the text split on it; tokens become ids
by a sorted table of 64-bit fingerprints (``searchsorted``, then an exact string compare), so
the graph holds only constants: no lookup-table resource to track when exporting.

The separator is a private-use character that no token contains; one already in the text is
first replaced by a second such character, so it stays one unknown character (``UNK``), as
in Python.
"""

from __future__ import annotations

from musicseq.vocab import RESERVED, UNK, Vocab

_BUCKETS = 2**62  # fingerprints modulo this: collisions among a few thousand tokens are checked


def _free_chars(vocab: Vocab, count: int = 2) -> list[str]:
    """``count`` private-use characters that appear in no token of ``vocab``."""
    taken = set("".join(vocab.tokens))
    free = [chr(c) for c in range(0xE000, 0xF900) if chr(c) not in taken]
    if len(free) < count:
        raise ValueError("the vocabulary uses every private-use character; no separator left")
    return free[:count]


def split(text, vocab: Vocab):
    """Token strings of ``text``: a scalar string gives a 1-D string tensor, a ``[batch]``
    vector a ``RaggedTensor`` ``[batch, None]``. Characters for a ``"chars"`` vocabulary."""
    import tensorflow as tf

    sep, stand_in = _free_chars(vocab)
    text = tf.strings.regex_replace(tf.convert_to_tensor(text, tf.string), sep, stand_in)
    marked = tf.strings.regex_replace(text, vocab.tokenizer.pattern(), sep + r"\0")
    pieces = tf.strings.split(marked, sep=sep)  # first piece: the empty string before sep
    return pieces[1:] if pieces.shape.rank == 1 else pieces[:, 1:]


def lookup(tokens, vocab: Vocab):
    """Ids (int32) of token strings (a tensor or ``RaggedTensor``); unknown tokens ``UNK``."""
    import tensorflow as tf

    if isinstance(tokens, tf.RaggedTensor):
        return tokens.with_flat_values(lookup(tokens.flat_values, vocab))
    if not vocab.tokens:
        return tf.fill(tf.shape(tokens), UNK)
    keys = tf.constant(vocab.tokens, tf.string)
    hashes = tf.strings.to_hash_bucket_fast(keys, _BUCKETS)
    if tf.executing_eagerly():
        unique = len(set(hashes.numpy().tolist()))
        if unique != len(vocab.tokens):
            raise ValueError("two vocabulary tokens share a fingerprint")  # never seen
    order = tf.argsort(hashes)
    sorted_hashes = tf.gather(hashes, order)
    sorted_keys = tf.gather(keys, order)
    sorted_ids = tf.cast(order, tf.int32) + len(RESERVED)
    found = tf.strings.to_hash_bucket_fast(tokens, _BUCKETS)
    at = tf.minimum(tf.searchsorted(sorted_hashes, found), len(vocab.tokens) - 1)
    hit = tf.equal(tf.gather(sorted_hashes, at), found) & tf.equal(
        tf.gather(sorted_keys, at), tokens
    )
    return tf.where(hit, tf.gather(sorted_ids, at), UNK)


def encode(text, vocab: Vocab):
    """``vocab.encode`` in the graph: a scalar string → int32 ids ``[n]``; a ``[batch]``
    vector → a ``RaggedTensor`` ``[batch, None]``. Usable inside ``tf.function``."""
    return lookup(split(text, vocab), vocab)
