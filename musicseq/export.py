"""SavedModel export with serving signatures that generate and score ABC text on their own.

The vocabulary lives inside the graph (a lookup table for string → ids and a constant for
ids → string), so any TensorFlow program can call::

    m = tf.saved_model.load(path)
    m.signatures["generate"](prime=tf.constant("X:1\\n"), num_tunes=tf.constant(4), ...)["tunes"]
    m.signatures["score"](text=tf.constant(["X:1\\nK:G\\nABc|\\n"]))["nats_per_char"]

without musicseq installed. Generation is the same compiled loop as in process, with the
same stateless RNG, so the same arguments give the same tunes.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from musicseq.config import SampleConfig
from musicseq.vocab import EOT, PAD, RESERVED, UNK, Vocab

MAX_LEN = 100_000  # hard cap on generated characters per tune, also inside the graph
MAX_TUNES = 4096


def build_archive(model, model_config, vocab: Vocab):
    """A ``keras.export.ExportArchive`` with the ``generate`` and ``score`` endpoints."""
    import keras
    import tensorflow as tf

    from musicseq.sampling import sampler_for

    sampler = sampler_for(model, model_config)
    id_to_char = tf.constant([""] * len(RESERVED) + vocab.chars)  # reserved tokens print as ""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocab.chars, tf.string),
            tf.range(len(RESERVED), len(vocab), dtype=tf.int32),
        ),
        default_value=UNK,
    )

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.string, name="prime"),
            tf.TensorSpec([], tf.int32, name="num_tunes"),
            tf.TensorSpec([], tf.int32, name="max_len"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p"),
            tf.TensorSpec([], tf.int32, name="seed"),
        ]
    )
    def generate(prime, num_tunes, max_len, temperature, top_k, top_p, seed):
        checks = [
            tf.debugging.assert_positive(temperature, message="temperature must be > 0"),
            tf.debugging.assert_positive(num_tunes, message="num_tunes must be > 0"),
            tf.debugging.assert_less_equal(num_tunes, MAX_TUNES, message="num_tunes too large"),
            tf.debugging.assert_positive(max_len, message="max_len must be > 0"),
            tf.debugging.assert_positive(top_p, message="top_p must be in (0, 1]"),
            tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1]"),
        ]
        with tf.control_dependencies(checks):
            prime_ids = tf.concat([[EOT], table.lookup(tf.strings.bytes_split(prime))], axis=0)
        ids = sampler.generate_ids.python_function(
            prime_ids, num_tunes, tf.minimum(max_len, MAX_LEN), temperature, top_k, top_p, seed
        )  # (num_tunes, steps)
        ended = tf.cumsum(tf.cast(tf.equal(ids, EOT), tf.int32), axis=1) > 0  # at or after EOT
        text = tf.strings.reduce_join(tf.gather(id_to_char, tf.where(ended, PAD, ids)), axis=1)
        return {"tunes": prime + text}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def score(text):
        ids = table.lookup(tf.strings.bytes_split(text))  # ragged (batch, chars)
        edge = tf.RaggedTensor.from_tensor(tf.fill([tf.shape(text)[0], 1], EOT))
        ids = tf.concat([edge, ids, edge], axis=1)  # EOT tune EOT
        nats = sampler.score_ids.python_function(
            ids.to_tensor(PAD), tf.cast(ids.row_lengths(), tf.int32)
        )
        return {"nats_per_char": nats}

    archive = keras.export.ExportArchive()
    # Not archive.track(model): the endpoints already capture every variable they use, and
    # tracking the model as well wrote each weight twice (Keras variables and the tf.Variables
    # inside them), doubling the SavedModel.
    archive.track(table)
    archive.add_endpoint("generate", generate)
    archive.add_endpoint("score", score)
    return archive


def export_savedmodel(model, model_config, vocab: Vocab, out: str | os.PathLike) -> Path:
    """Write the SavedModel to ``out`` atomically (a temporary directory renamed into place)."""
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    try:
        build_archive(model, model_config, vocab).write_out(str(tmp), verbose=False)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def call_generate(savedmodel, config: SampleConfig) -> list[str]:
    """Call a loaded SavedModel's ``generate`` signature with a :class:`SampleConfig`."""
    import tensorflow as tf

    result = savedmodel.signatures["generate"](
        prime=tf.constant(config.prime),
        num_tunes=tf.constant(config.num),
        max_len=tf.constant(config.max_len),
        temperature=tf.constant(config.temperature),
        top_k=tf.constant(config.top_k),
        top_p=tf.constant(config.top_p),
        seed=tf.constant(config.seed),
    )
    return [t.decode("utf-8") for t in result["tunes"].numpy()]
