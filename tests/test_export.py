import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from musicseq.config import MODEL_KINDS, ModelConfig, SampleConfig, TrainConfig
from musicseq.errors import UserError
from musicseq.export import call_generate, export_savedmodel
from musicseq.modeldir import load_model_dir
from musicseq.notation.checker import check_text
from musicseq.sampling import generate
from musicseq.train import train

NO_MUSICSEQ = textwrap.dedent(
    """
    import sys
    sys.modules["musicseq"] = None  # make sure nothing of musicseq can be imported
    try:
        import musicseq  # noqa
        raise SystemExit("musicseq was importable")
    except ImportError:
        pass
    import tensorflow as tf
    m = tf.saved_model.load(sys.argv[1])
    out = m.signatures["generate"](prime=tf.constant("X:1\\n"), num_tunes=tf.constant(3),
        max_len=tf.constant(80), temperature=tf.constant(0.9), top_k=tf.constant(0),
        top_p=tf.constant(0.95), seed=tf.constant(11), constrain=tf.constant(False),
        meter=tf.constant(""), key=tf.constant(""), form=tf.constant("free"),
        bars=tf.constant(8), cadence=tf.constant("none"),
        repeat_bias=tf.constant(0.0))["tunes"].numpy()
    scores = m.signatures["score"](text=tf.constant(["X:1\\nK:G\\nABc|\\n", "X:2\\n"]))["nats_per_char"].numpy()
    print(repr([t.decode() for t in out]))
    print(repr(scores.tolist()))
    """
)


@pytest.fixture(scope="module")
def kind_models(tmp_path_factory, data_dir):
    dirs = {}
    for kind in MODEL_KINDS:
        out = tmp_path_factory.mktemp(kind)
        train(
            data_dir / "three.abc",
            out,
            ModelConfig(
                kind=kind, units=16, embedding_dim=8, num_heads=2, context=32, vocab_size=1
            ),
            TrainConfig(seq_len=32, batch_size=4, steps=3, seed=0),
            log=lambda _m: None,
            verbose=0,
        )
        dirs[kind] = out
    return dirs


@pytest.mark.slow
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_savedmodel_generates_like_in_process_and_without_musicseq(kind, kind_models, tmp_path):
    model, config, vocab = load_model_dir(kind_models[kind])
    path = export_savedmodel(model, config, vocab, tmp_path / "savedmodel", grammar=False)
    sample = SampleConfig(num=3, max_len=80, temperature=0.9, top_p=0.95, seed=11)
    expected = generate(model, config, vocab, sample)
    import tensorflow as tf

    assert call_generate(tf.saved_model.load(str(path)), sample) == expected
    done = subprocess.run(
        [sys.executable, "-c", NO_MUSICSEQ, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert eval(lines[-2]) == expected  # noqa: S307 - our own subprocess's repr output
    scores = eval(lines[-1])  # noqa: S307
    assert len(scores) == 2 and all(0 < s < 10 for s in scores)


def test_savedmodel_constrains_like_in_process(kind_models, tmp_path):
    # The grammar rides in the exported loop: the same constrained tunes as in process.
    import tensorflow as tf

    model, config, vocab = load_model_dir(kind_models["transformer"])
    path = export_savedmodel(model, config, vocab, tmp_path / "savedmodel")
    # The full look-ahead (a second grammar step over every character, taken only for primes
    # that end inside a field or decoration) is a function never inlined: inlined, it doubled
    # the optimisation of the first constrained call (docs/benchmarks.md).
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    library = proto.meta_graphs[0].graph_def.library.function
    kept_apart = [f for f in library if f.attr["_noinline"].b]
    assert [f.signature.name.split("_")[3] for f in kept_apart] == ["look"]
    assert len(kept_apart[0].node_def) > 5_000
    saved = tf.saved_model.load(str(path))
    sample = SampleConfig(num=3, max_len=300, seed=4, form="AB", bars=8, repeat_bias=1.5)
    fixed = {"M": "4/4", "K": "G"}
    expected = generate(model, config, vocab, sample, constrain=True, fixed=fixed)
    got = call_generate(saved, sample, constrain=True, fixed=fixed)
    for mine, theirs in zip(got, expected):
        assert mine == theirs or theirs.startswith(mine)  # in process completes cut tunes
        assert "M:4/4\n" in mine and "K:G\n" in mine
    # A prime that ends inside a field (K: mid-tune: a phase the plain style never enters) needs the
    # look-ahead of the full grammar: in process it is traced for such primes only.
    # (The first line end of a generated tune where a key field may start; the prime is
    # replayed by the reference grammar before anything is sampled, so refusals are cheap.)
    text, expected = expected[0], None
    for end in (i for i, ch in enumerate(text) if ch == "\n" and i > text.index("K:G")):
        prime = text[: end + 1] + "K:"
        sample = SampleConfig(num=2, max_len=300, seed=5, prime=prime, form="AB", bars=8)
        try:
            expected = generate(model, config, vocab, sample, constrain=True, fixed=fixed)
            break
        except UserError:
            continue
    assert expected is not None, text
    got = call_generate(saved, sample, constrain=True, fixed=fixed)
    for mine, theirs in zip(got, expected):
        assert theirs.startswith(prime) and check_text(theirs).ok, theirs
        assert mine == theirs or theirs.startswith(mine)
    with pytest.raises(tf.errors.InvalidArgumentError, match="meter not among"):
        call_generate(saved, sample, constrain=True, fixed={"M": "5/7"})
    # A prime the grammar rejects (no L: line) is an error, not tunes of nothing but the prime.
    unheaded = SampleConfig(num=2, max_len=50, prime="X:1\nT:a\nM:4/4\nK:G\n", form="AB")
    with pytest.raises(tf.errors.InvalidArgumentError, match="cannot continue this prime"):
        call_generate(saved, unheaded, constrain=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="form"):
        call_generate(saved, SampleConfig(form="AAAB"), constrain=True)


def test_score_matches_held_out_loss(kind_models, tmp_path):
    import tensorflow as tf

    from musicseq.evaluate import held_out_loss

    model, config, vocab = load_model_dir(kind_models["lstm"])
    path = export_savedmodel(model, config, vocab, tmp_path / "sm", grammar=False)
    # a character outside ASCII (and outside the vocabulary) is one character, as in Python
    texts = ["X:1\nT:a\nK:G\nABcd|dcBA|\n", "X:2\nK:D\nDEF|\n", "X:3\nT:Café\nK:G\nAB|\n"]
    scores = (
        tf.saved_model.load(str(path))
        .signatures["score"](text=tf.constant(texts))["nats_per_char"]
        .numpy()
    )
    for text, score in zip(texts, scores):
        assert abs(held_out_loss(model, config, vocab, [text])["nats_per_char"] - score) < 1e-4


def test_saved_model_cli_lists_signatures(kind_models, tmp_path):
    import shutil

    model, config, vocab = load_model_dir(kind_models["gru"])
    path = export_savedmodel(model, config, vocab, tmp_path / "sm", grammar=False)
    cli = shutil.which("saved_model_cli") or str(
        __import__("pathlib").Path(sys.executable).parent / "saved_model_cli"
    )
    done = subprocess.run(
        [cli, "show", "--dir", str(path), "--all"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-1000:]
    assert "signature_def['generate']" in done.stdout and "signature_def['score']" in done.stdout
    assert "signature_def['serving_default']" in done.stdout  # = generate, for TF Serving
    # Each endpoint traced once (Keras's ExportArchive traced and stored every one twice).
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    names = [f.signature.name for f in proto.meta_graphs[0].graph_def.library.function]
    for endpoint in ("generate", "score"):
        traces = [n for n in names if re.fullmatch(rf"__inference_{endpoint}_\d+", n)]
        assert len(traces) == 1, traces


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_savedmodel_stores_each_weight_once(kind, kind_models, tmp_path):
    import tensorflow as tf

    model, config, vocab = load_model_dir(kind_models[kind])
    path = export_savedmodel(model, config, vocab, tmp_path / "sm", grammar=False)
    stored = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    shapes = stored.get_variable_to_shape_map()
    values = sum(int(np.prod(shape)) for name, shape in shapes.items() if "VARIABLE_VALUE" in name)
    weights = sum(int(np.prod(w.shape)) for w in model.weights)
    assert weights <= values <= weights + 16  # + the dropout layers' seed counters


def _dtypes_computed(savedmodel_dir) -> set[str]:
    """The dtypes the operations of a SavedModel's graph and functions work in (their ``T``,
    ``DstT`` and ``dtype`` attributes)."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import dtypes

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((savedmodel_dir / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return {
        dtypes.as_dtype(node.attr[name].type).name
        for node in nodes
        for name in ("T", "DstT", "dtype")
        if node.attr[name].type
    }


def test_a_mixed_precision_model_exports_in_float32_unless_asked(tmp_path, bfloat16_model_dir):
    # The shipped default trains under mixed bfloat16: its SavedModel computes in float32
    # (full speed on any serving CPU), with the same answers; --precision model keeps bfloat16.
    import keras
    import tensorflow as tf

    from musicseq.evaluate import held_out_loss

    out = bfloat16_model_dir
    model = keras.models.load_model(out / "model.keras", safe_mode=True)
    assert "mixed_bfloat16" in {layer.dtype_policy.name for layer in model.layers}
    _, config, vocab = load_model_dir(out)
    exported = {
        precision: export_savedmodel(
            model, config, vocab, tmp_path / precision, grammar=False, precision=precision
        )
        for precision in ("float32", "model")
    }
    assert "bfloat16" not in _dtypes_computed(exported["float32"])
    assert "bfloat16" in _dtypes_computed(exported["model"])
    tune = "X:1\nT:a\nM:4/4\nK:G\nABcd|dcBA|GABc|d4|]\n"
    expected = held_out_loss(model, config, vocab, [tune])["nats_per_char"]
    for path in exported.values():
        score = tf.saved_model.load(str(path)).signatures["score"](text=tf.constant([tune]))
        assert abs(float(score["nats_per_char"][0]) - expected) < 0.02
    with pytest.raises(ValueError, match="precision"):
        export_savedmodel(model, config, vocab, tmp_path / "x", grammar=False, precision="fp8")
