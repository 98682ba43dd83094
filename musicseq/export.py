"""SavedModel export with serving signatures that generate and score ABC text on their own.

The vocabulary lives inside the graph (a lookup table for string → ids and a constant for
ids → string), so any TensorFlow program can call::

    m = tf.saved_model.load(path)
    m.signatures["generate"](prime=tf.constant("X:1\\n"), num_tunes=tf.constant(4), ...,
                             constrain=tf.constant(True), meter=tf.constant("6/8"),
                             key=tf.constant("G"), form=tf.constant("AABB"), ...)["tunes"]
    m.signatures["score"](text=tf.constant(["X:1\\nK:G\\nABc|\\n"]))["nats_per_char"]

without musicseq installed. Generation is the same compiled loop as in process, with the
same stateless RNG and the same logits processors, so the same arguments give the same tunes;
``constrain`` switches the in-graph grammar (:mod:`musicseq.grammar_graph`) on, with the form
controls ``meter``, ``key`` ("" for the model's choice), ``form`` ("AABB", "AB", ... or
"free"), ``bars`` (per part), ``cadence`` ("tonic" or "none") and ``repeat_bias``. Unlike
:func:`musicseq.sampling.generate`, the SavedModel does not draw forms (``form="auto"``) and
returns a constrained tune that ran out of room (``max_len``) as it stands.
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


def _form_parts(form, max_parts: int):
    """``"AABB"`` → ``[2, 2, 0, ...]`` (1 written once, 2 repeated), in the graph; "" or
    "free" → all zeros (no form)."""
    import tensorflow as tf

    chars = tf.strings.bytes_split(form)
    free = tf.equal(form, "") | tf.equal(form, "free")
    starts = tf.concat([[True], tf.not_equal(chars[1:], chars[:-1])], axis=0)
    runs = tf.math.segment_sum(
        tf.ones_like(starts, tf.int32), tf.cumsum(tf.cast(starts, tf.int32)) - 1
    )
    checks = [
        tf.debugging.Assert(
            free | tf.strings.regex_full_match(form, "[A-Za-z]+"),
            ["form must be letters such as AABB, or free:", form],
        ),
        tf.debugging.Assert(
            free | (tf.reduce_all(runs <= 2) & (tf.size(runs) <= max_parts)),
            [f"form: each part once or repeated (AA), at most {max_parts} parts:", form],
        ),
    ]
    with tf.control_dependencies(checks):
        parts = tf.where(runs == 2, 2, 1)[:max_parts]
    parts = tf.pad(parts, [[0, max_parts - tf.size(parts)]])
    return tf.where(free, tf.zeros_like(parts), parts)


def _word_table(words):
    """A lookup table: each of ``words`` → its index (-2 for anything else)."""
    import tensorflow as tf

    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(words) or [""], tf.string),
            tf.range(max(len(words), 1), dtype=tf.int32),
        ),
        default_value=-2,
    )


def _word_index(table, value, name: str):
    """Index of ``value`` in ``table`` in the graph; "" → -1 (the model's choice)."""
    import tensorflow as tf

    index = tf.where(tf.equal(value, ""), -1, table.lookup(value))
    check = tf.debugging.Assert(index > -2, [f"{name} not among the grammar's values:", value])
    with tf.control_dependencies([check]):
        return tf.identity(index)


def build_archive(model, model_config, vocab: Vocab, grammar: bool = True):
    """The SavedModel's ``generate`` and ``score`` endpoints, traced (:class:`_Archive`).

    ``grammar=False`` leaves the in-graph grammar out (``constrain=True`` is then refused):
    a smaller graph, traced in a fraction of the time."""
    import tensorflow as tf

    from musicseq.grammar_graph import MAX_PARTS
    from musicseq.notation.grammar import GrammarError
    from musicseq.sampling import sampler_for

    sampler = sampler_for(model, model_config, vocab)
    grammar = grammar and vocab.kind == "chars"  # the grammar writes characters
    try:
        # Full look-ahead: the prime is only known when the SavedModel is called.
        grammar = sampler.graph_grammar(full_lookahead=True) if grammar else None
    except GrammarError:  # a vocabulary that cannot write a tune: constrain is refused
        grammar = None
    tables = [_word_table(grammar.meter_words), _word_table(grammar.key_words)] if grammar else []
    id_to_text = tf.constant([""] * len(RESERVED) + vocab.tokens)  # reserved ids print as ""
    if vocab.kind == "chars":
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocab.chars, tf.string),
                tf.range(len(RESERVED), len(vocab), dtype=tf.int32),
            ),
            default_value=UNK,
        )

        def encode(text):  # a string, or a [batch] vector of them (ragged ids)
            return table.lookup(tf.strings.unicode_split(text, "UTF-8"))  # as vocab.encode
    else:
        from musicseq import tokenize_graph

        table = None
        tokenize_graph.encode(tf.constant(""), vocab)  # eagerly: checks the fingerprints

        def encode(text):
            return tokenize_graph.encode(text, vocab)

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.string, name="prime"),
            tf.TensorSpec([], tf.int32, name="num_tunes"),
            tf.TensorSpec([], tf.int32, name="max_len"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="top_p"),
            tf.TensorSpec([], tf.int32, name="seed"),
            tf.TensorSpec([], tf.bool, name="constrain"),
            tf.TensorSpec([], tf.string, name="meter"),
            tf.TensorSpec([], tf.string, name="key"),
            tf.TensorSpec([], tf.string, name="form"),
            tf.TensorSpec([], tf.int32, name="bars"),
            tf.TensorSpec([], tf.string, name="cadence"),
            tf.TensorSpec([], tf.float32, name="repeat_bias"),
        ],
        autograph=False,
    )
    def generate(
        prime, num_tunes, max_len, temperature, top_k, top_p, seed, *controls
    ):  # controls: constrain, meter, key, form, bars, cadence, repeat_bias
        checks = [
            tf.debugging.assert_positive(temperature, message="temperature must be > 0"),
            tf.debugging.assert_positive(num_tunes, message="num_tunes must be > 0"),
            tf.debugging.assert_less_equal(num_tunes, MAX_TUNES, message="num_tunes too large"),
            tf.debugging.assert_positive(max_len, message="max_len must be > 0"),
            tf.debugging.assert_positive(top_p, message="top_p must be in (0, 1]"),
            tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1]"),
        ]
        with tf.control_dependencies(checks):
            prime = tf.identity(prime)
        max_len = tf.minimum(max_len, MAX_LEN)
        params = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
        head = prime
        if vocab.kind == "chars":
            prime_ids = tf.concat([[EOT], encode(prime)], axis=0)
        else:  # token healing, as sampling.heal_prime: the last token is sampled again
            pieces = tokenize_graph.split(prime, vocab)
            tail = tf.concat([[""], pieces], axis=0)[-1]  # "" for an empty prime
            prime_ids = tf.concat([[EOT], tokenize_graph.lookup(pieces[:-1], vocab)], axis=0)
            width = tf.strings.length(tail, unit="UTF8_CHAR")
            starts = tf.strings.substr(id_to_text, 0, width, unit="UTF8_CHAR")
            params["heal"] = tf.equal(starts, tail) & (tf.range(len(vocab)) >= len(RESERVED))
            params["heal_at"] = tf.size(prime_ids) - 1
            keep = tf.strings.length(prime, unit="UTF8_CHAR") - width
            head = tf.strings.substr(prime, 0, keep, unit="UTF8_CHAR")
        constrain = controls[0]

        def free():
            return sampler.generate_ids.python_function(prime_ids, num_tunes, max_len, params)

        def constrained():
            if grammar is None:
                refuse = tf.debugging.Assert(
                    False, ["constrained decoding is not in this export (or the vocabulary)"]
                )
                with tf.control_dependencies([refuse]):
                    return tf.zeros([num_tunes, 0], tf.int32)
            return sampler.generate_ids.python_function(
                prime_ids, num_tunes, max_len, {**params, **_constraints(controls[1:])}
            )

        def _constraints(controls):
            meter, key, form, bars, cadence, repeat_bias = controls
            meter_index = _word_index(tables[0], meter, "meter")
            key_index = _word_index(tables[1], key, "key")
            checks = [
                tf.debugging.Assert(
                    tf.equal(cadence, "tonic") | tf.equal(cadence, "none"),
                    ["cadence must be tonic or none:", cadence],
                ),
                tf.debugging.assert_greater_equal(bars, 3, message="bars must be >= 3"),
            ]
            with tf.control_dependencies(checks):
                parts = _form_parts(form, MAX_PARTS)
            config = grammar.config_tensor(
                tf.fill([num_tunes], meter_index),
                tf.fill([num_tunes], key_index),
                tf.tile(parts[None], [num_tunes, 1]),
                tf.fill([num_tunes], bars),
                tf.fill([num_tunes], tf.cast(tf.equal(cadence, "tonic"), tf.int32)),
            )
            reserve = tf.minimum(200, max_len // 4)  # as sampling.close_reserve
            return {
                "grammar": config,
                "close_step": tf.shape(prime_ids)[0] - 1 + max_len - reserve,
                "repeat_bias": repeat_bias,
                "full_lookahead": True,
            }

        ids = tf.cond(constrain, constrained, free)  # (num_tunes, steps)
        ended = tf.cumsum(tf.cast(tf.equal(ids, EOT), tf.int32), axis=1) > 0  # at or after EOT
        text = tf.strings.reduce_join(tf.gather(id_to_text, tf.where(ended, PAD, ids)), axis=1)
        return {"tunes": head + text}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")], autograph=False)
    def score(text):
        ids = encode(text)  # ragged (batch, tokens)
        edge = tf.RaggedTensor.from_tensor(tf.fill([tf.shape(text)[0], 1], EOT))
        ids = tf.concat([edge, ids, edge], axis=1)  # EOT tune EOT
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        nats = sampler.score_ids.python_function(ids.to_tensor(PAD), lengths)
        # Per character whatever the tokens: the tune's characters and its end (as evaluate).
        chars = tf.strings.length(text, unit="UTF8_CHAR") + 1
        return {"nats_per_char": nats / tf.cast(chars, tf.float32)}

    return _Archive({"generate": generate, "score": score}, [t for t in [table, *tables] if t])


class _Archive:
    """The endpoints traced once each, saved as signatures.

    ``keras.export.ExportArchive`` traced ``generate`` twice — once outside the save and again
    inside it (a function's trace cache is keyed on being inside a save) — and the constrained
    loop's grammar makes that trace most of an export's time. Here each endpoint becomes one
    concrete function; the SavedModel tracks exactly the variables and lookup tables those
    capture (not the model as well, which wrote each weight twice)."""

    def __init__(self, endpoints: dict, resources: list):
        import tensorflow as tf

        self.signatures = {name: fn.get_concrete_function() for name, fn in endpoints.items()}
        self.signatures["serving_default"] = self.signatures["generate"]
        self.module = tf.Module()
        self.module.resources = list(resources)
        captured = {id(v): v for f in self.signatures.values() for v in f.variables}
        self.module.endpoint_variables = list(captured.values())

    def write_out(self, path: str) -> None:
        import tensorflow as tf

        tf.saved_model.save(self.module, path, signatures=self.signatures)


PRECISIONS = ("float32", "model")


def export_savedmodel(
    model,
    model_config,
    vocab: Vocab,
    out: str | os.PathLike,
    grammar: bool = True,
    precision: str = "float32",
) -> Path:
    """Write the SavedModel to ``out`` atomically (a temporary directory renamed into place).

    ``precision``: ``"float32"`` traces a mixed-precision model's weights into a float32 model
    (the SavedModel runs at full speed on any CPU; bfloat16 is emulated, and slower, on CPUs
    without AVX-512 BF16 or AMX), ``"model"`` traces the model in its own dtype policy."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "float32":
        from musicseq.modeldir import float32_copy

        model = float32_copy(model, model_config, vocab)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    try:
        build_archive(model, model_config, vocab, grammar).write_out(str(tmp))
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def call_generate(
    savedmodel, config: SampleConfig, constrain: bool = False, fixed: dict | None = None
) -> list[str]:
    """Call a loaded SavedModel's ``generate`` signature with a :class:`SampleConfig` (and for
    ``constrain``, its form controls and the ``M``/``K`` values of ``fixed``)."""
    import tensorflow as tf

    fixed = fixed or {}
    if constrain and config.form == "auto":
        raise ValueError("the SavedModel does not draw forms: give SampleConfig.form")
    result = savedmodel.signatures["generate"](
        prime=tf.constant(config.prime),
        num_tunes=tf.constant(config.num),
        max_len=tf.constant(config.max_len),
        temperature=tf.constant(config.temperature),
        top_k=tf.constant(config.top_k),
        top_p=tf.constant(config.top_p),
        seed=tf.constant(config.seed),
        constrain=tf.constant(constrain),
        meter=tf.constant(fixed.get("M", "")),
        key=tf.constant(fixed.get("K", "")),
        form=tf.constant(config.form),
        bars=tf.constant(config.bars),
        cadence=tf.constant(config.cadence),
        repeat_bias=tf.constant(config.repeat_bias, tf.float32),
    )
    return [t.decode("utf-8") for t in result["tunes"].numpy()]
