import numpy as np
import pytest

from musicseq.config import SampleConfig
from musicseq.modeldir import load_model_dir
from musicseq.notation import make_header, parse_tune
from musicseq.sampling import (
    generate,
    generate_constrained,
    mask_reserved,
    top_k_filter,
    top_p_filter,
)


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model_dir(tiny_model_dir)


def test_same_seed_same_tunes_different_seed_different(loaded):
    config = SampleConfig(num=3, max_len=120, seed=5, prime="X:1\n")
    first = generate(*loaded, config)
    assert first == generate(*loaded, config)
    other = generate(*loaded, SampleConfig(num=3, max_len=120, seed=6, prime="X:1\n"))
    assert first != other
    assert len(first) == 3 and all(t.startswith("X:1\n") for t in first)
    assert all(len(t) <= len("X:1\n") + 120 for t in first)


def test_streams_stop_at_end_of_tune(loaded):
    tunes = generate(*loaded, SampleConfig(num=8, max_len=2000, seed=1, temperature=0.5))
    # a model trained on tunes separated by end-of-tune learns to stop well before 2000
    assert any(len(t) < 2000 for t in tunes)


def test_bad_arguments_rejected_before_model_work(loaded):
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        generate(*loaded, SampleConfig(prime="X:1\n\u00e9"))
    for bad in (
        dict(temperature=0.0),
        dict(top_p=0.0),
        dict(top_p=1.5),
        dict(top_k=-1),
        dict(max_len=0),
    ):
        with pytest.raises(ValueError):
            generate(*loaded, SampleConfig(**bad))


def test_top_k_keeps_k_largest():
    import tensorflow as tf

    logits = tf.constant([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = top_k_filter(logits, tf.constant(2)).numpy()[0]
    assert np.isfinite(out).tolist() == [False, True, False, True, False]
    assert np.isfinite(top_k_filter(logits, tf.constant(0)).numpy()).all()


def test_top_p_keeps_smallest_nucleus():
    import tensorflow as tf

    probs = np.array([[0.5, 0.3, 0.15, 0.05]])
    logits = tf.constant(np.log(probs), tf.float32)
    keep = lambda p: np.isfinite(top_p_filter(logits, tf.constant(p)).numpy()[0]).tolist()  # noqa: E731
    assert keep(0.5) == [True, False, False, False]
    assert keep(0.79) == [True, True, False, False]
    assert keep(0.81) == [True, True, True, False]
    assert keep(1.0) == [True, True, True, True]


def test_reserved_tokens_masked():
    import tensorflow as tf

    out = mask_reserved(tf.zeros([1, 6])).numpy()[0]
    assert np.isinf(out[:2]).all() and np.isfinite(out[2:]).all()  # pad, unk banned; eot allowed


def test_header_prime_is_valid_abc():
    header = make_header("6/8", "Dmix", "Test Jig")
    tune = parse_tune(header + "ABA|\n")
    assert tune.get("M") == "6/8" and tune.key == "Dmix" and tune.get("L") == "1/8"
    for meter, key in (("seven", "D"), ("6/8", "H#"), ("6/8", "Dxyz")):
        with pytest.raises(ValueError):
            make_header(meter, key)


def test_top_k_one_is_greedy_and_seed_independent(loaded):
    a = generate(*loaded, SampleConfig(num=2, max_len=60, top_k=1, seed=1))
    b = generate(*loaded, SampleConfig(num=2, max_len=60, top_k=1, seed=2))
    assert a == b and a[0] == a[1]


def test_repeat_candidates_follow_the_bars_back():
    from musicseq.sampling import repeat_candidates

    head = "X:1\nM:4/4\nL:1/8\nK:G\n"
    tune = head + "|:GABc dBAG|FGAB c2A2|GABc dBAG|FGAB c2A2|G(AB"
    assert repeat_candidates(tune) == {"c"}  # bars 2 and 4 back both go on with c
    assert repeat_candidates(head + "|:GABc dBAG|") == {"G"}  # the bar 1 back
    assert repeat_candidates(head + "|:GABc dBAG|e") == set()  # no earlier bar starts so
    assert repeat_candidates("X:1\nM:4/4\n") == set()  # still in the header


def test_form_plans_follow_the_corpus_and_the_forced_meter():
    from collections import Counter

    from musicseq.sampling import plan_forms

    plans = plan_forms(SampleConfig(num=400, seed=3))
    forms = Counter(p["form"] for p in plans)
    assert forms.most_common(1)[0][0] == "AABB" and all(p["bars"] in (8, 16) for p in plans)
    assert {p["fixed"]["M"] for p in plans} >= {"6/8", "2/4", "4/4"}
    assert all(p["fixed"]["M"] == "3/4" for p in plan_forms(SampleConfig(num=20), {"M": "3/4"}))
    fixed = plan_forms(SampleConfig(num=3, form="AB", bars=16, cadence="none"))
    assert fixed[0] == {"fixed": {}, "form": "AB", "bars": 16, "cadence": None}
    # A meter the prime writes is the tunes' meter (drawn otherwise, it contradicted the
    # prime: "constrained decoding cannot continue this prime"); one it begins, a meter so begun.
    head = "X:1\nT:Test\nM:3/4\nL:1/8\nK:Am\n|:A2 cB"
    assert {p["fixed"]["M"] for p in plan_forms(SampleConfig(num=40, prime=head))} == {"3/4"}
    begun = {p["fixed"]["M"] for p in plan_forms(SampleConfig(num=200, prime="X:1\nT:a\nM:6"))}
    assert begun == {"6/8", "6/4"}
    body = "X:1\nT:a\nM:2/4\nK:G\nAB|\nM:3/4\nABc|"  # a change of meter in the body
    assert {p["fixed"]["M"] for p in plan_forms(SampleConfig(num=10, prime=body))} == {"2/4"}
    common = plan_forms(SampleConfig(num=10, prime="X:1\nT:a\nM:C"))  # C or C|: not forced
    assert all("M" not in p["fixed"] for p in common)
    # Only forms the prime can begin: a part opened with a repeat is played twice.
    assert all(p["form"].startswith("AA") for p in plan_forms(SampleConfig(num=100, prime=head)))
    assert plan_forms(SampleConfig(num=50, seed=4)) == plan_forms(
        SampleConfig(num=50, seed=4, prime="X:1\n")
    )


def test_constrained_tunes_take_the_asked_form(tiny_model_dir):
    from musicseq.notation.form import analyze

    model, config, vocab = load_model_dir(tiny_model_dir)
    sample = SampleConfig(num=3, seed=4, max_len=1200, form="AABB", bars=8)
    for text in generate_constrained(model, config, vocab, sample, fixed={"M": "6/8", "K": "G"}):
        form = analyze(text)
        assert form.bars_per_section == (8, 8) and form.repeat_marks, text
        assert form.ends_on_tonic and form.tonic == "G", text


def test_constrain_with_a_key_the_vocabulary_cannot_spell_is_a_clear_error(tiny_model_dir):
    from musicseq.errors import UserError

    model, config, vocab = load_model_dir(tiny_model_dir)
    key = next(k for k in ("F#m", "Bbmix", "C#dor", "Ebm") if any(c not in vocab for c in k))
    with pytest.raises(UserError, match="cannot write K:"):
        generate_constrained(model, config, vocab, SampleConfig(num=1), fixed={"K": key})


def test_a_prime_outside_the_template_header_is_a_clear_error(tiny_model_dir):
    # The in-graph grammar writes the template header (X:, T:, M:, L:, K:); the prime used to
    # be checked against the corpus's headers when nothing was forced, so a prime without L:
    # passed the check and came back as tunes of nothing but the prime.
    from musicseq.errors import UserError

    model, config, vocab = load_model_dir(tiny_model_dir)
    sample = SampleConfig(num=1, prime="X:1\nT:Test\nM:6/8\nK:G\n", form="AB")
    with pytest.raises(UserError, match="'K' is not allowed .* header is X:1, T:, M:, L:, K:"):
        generate_constrained(model, config, vocab, sample)


def test_repeat_candidates_do_not_ask_for_a_third_identical_bar():
    from musicseq.sampling import repeat_candidates

    head = "X:1\nM:6/8\nL:1/8\nK:G\n"
    assert repeat_candidates(head + "|:f2d B2e|f2d B2e|f") == set()
    assert repeat_candidates(head + "|:GAB dBG|f2d B2e|f") == {"2"}


def test_the_repeat_bias_in_the_graph_follows_the_reference(tiny_model_dir):
    # RepeatBias (in the decoding loop) proposes exactly what repeat_candidates proposes,
    # at every character of corpus-like tunes and of tunes with endings, chords and '[2'.
    import tensorflow as tf

    from musicseq.sampling import RepeatBias, repeat_candidates
    from musicseq.vocab import Vocab

    texts = [
        "X:1\nT:a\nM:4/4\nK:D\n|:GABc dBAG|GABc dBAG|GA (3Bcd e2 ~d2|GABc d2 d2:|\n",
        "X:2\nT:b\nM:6/8\nK:G\nD|G2B dBG|G2B dBG|[1 A2c ecA:|[2 A2c ecA||\n|:g3 g3|g3 g3|g3 g3|]\n",
        "X:3\nT:c\nK:A\n[ce]2 [ce]2|[ce]2 [ce]2|1 ab:|2 ab|]ab ab|[|]ab ab|\n",
        "X:4\nT:d\nM:3/4\nL:1/8\nK:Em\nE>F G2 G>A|E>F G2 G>A|B2 B2 B2|B2 B2 B2|B2 c2 B2|\n",
    ]
    vocab = Vocab(sorted(set("".join(texts))))
    processor = RepeatBias(vocab, 1.0)
    state = processor.initial(len(texts))
    width = max(len(t) for t in texts)
    for position in range(width + 1):
        got = processor.candidates(state).numpy()
        for row, text in enumerate(texts):
            if position <= len(text):
                expected = {vocab.encode(c)[0] for c in repeat_candidates(text[:position])}
                assert set(np.flatnonzero(got[row])) == expected, (row, text[:position])
        if position < width:
            tokens = [vocab.encode(t[position])[0] if position < len(t) else 0 for t in texts]
            state = processor.advance(state, tf.constant(tokens, tf.int32), position)


def test_a_bad_number_choice_is_a_clear_error():
    # (int choices were joined as strings: a TypeError instead of the message)
    from musicseq.config import SampleConfig

    with pytest.raises(ValueError, match="bars must be one of 8, 16, got 4"):
        SampleConfig(bars=4).validate()


def test_the_grammar_under_xla_writes_the_same_tunes(tiny_model_dir, monkeypatch):
    # SampleConfig.grammar_xla compiles the grammar's step with XLA: at every step of the
    # tunes it wrote, the same mask and the same next state as the graph, so the same tunes
    # (the model's logits and the random draws do not depend on it). Compiled for one number
    # of streams, it keeps a row for each while ended tunes leave the model's batch: the
    # same tunes as when every stream is carried to the end.
    import tensorflow as tf

    import musicseq.sampling as sampling
    from musicseq.notation.form import analyze
    from musicseq.sampling import EOT, PAD, compiled_grammar, plan_forms

    model, config, vocab = load_model_dir(tiny_model_dir)
    fixed = {"M": "6/8", "K": "G"}
    sample = SampleConfig(num=3, seed=5, max_len=600, form="AABB", grammar_xla="on")
    kept = []
    keep_rows = sampling._keep_rows
    monkeypatch.setattr(sampling, "_keep_rows", lambda *a: kept.append(len(a[2])) or keep_rows(*a))
    tunes = generate_constrained(model, config, vocab, sample, fixed=fixed)
    assert all(analyze(text).bars_per_section == (8, 8) for text in tunes)
    assert kept and min(kept) < sample.num  # tunes did leave the model's batch
    run = sampling.Sampler.run
    monkeypatch.setattr(
        sampling.Sampler, "run", lambda self, *a, **k: run(self, *a, shrink=False, **k)
    )
    assert generate_constrained(model, config, vocab, sample, fixed=fixed) == tunes
    graph, xla = compiled_grammar(vocab.chars), compiled_grammar(vocab.chars, jit=True)
    assert xla.jit and 3 in xla.xla_streams
    rows = tf.constant(graph.plans(plan_forms(sample, fixed)))
    ids = [vocab.encode(text) + [EOT] for text in tunes]
    state = graph.initial(rows)
    for t in range(max(len(row) for row in ids) + 1):
        mask, step = graph.plain_allowed_and_next(state, rows)
        mask_x, step_x = xla.plain_allowed_and_next(state, rows)
        np.testing.assert_array_equal(mask_x.numpy(), mask.numpy(), err_msg=f"mask at {t}")
        tokens = tf.constant([row[t] if t < len(row) else PAD for row in ids], tf.int32)
        state, state_x = graph.take(state, tokens, step), xla.take(state, tokens, step_x)
        np.testing.assert_array_equal(state_x.numpy(), state.numpy(), err_msg=f"state at {t}")
    assert graph.graph.finished(state).numpy().tolist() == [1, 1, 1]


def test_grammar_xla_auto_takes_xla_only_where_it_is_compiled_already(monkeypatch):
    # One CLI call at the defaults is as fast or faster as a graph (200 and 1,000 tunes,
    # docs/benchmarks.md): "auto" takes XLA only for a number of streams this process has
    # compiled it for (a notebook's next call after one with "on").
    from types import SimpleNamespace

    import musicseq.sampling as sampling
    from musicseq.sampling import grammar_xla

    chars = ("a", "b")  # a vocabulary no grammar of this process was compiled for
    assert grammar_xla("on", chars, 4) and not grammar_xla("off", chars, 200)
    assert not grammar_xla("auto", chars, 4) and not grammar_xla("auto", chars, 1000)
    compiled = SimpleNamespace(xla_streams={1000})  # as generate records an XLA run
    monkeypatch.setitem(sampling._GRAMMARS, (chars, False, True), compiled)
    assert grammar_xla("auto", chars, 1000) and not grammar_xla("auto", chars, 200)
    assert not grammar_xla("off", chars, 1000)
    with pytest.raises(ValueError, match="grammar-xla"):
        SampleConfig(grammar_xla="yes").validate()


def test_a_call_writes_the_same_tunes_whatever_was_called_before(bfloat16_model_dir):
    # The loop is traced once for any number of streams and prime length: traced for the
    # first call's sizes, it was traced again for the next sizes, and the shipped bfloat16
    # Transformer then wrote other tunes for the same seed in a second call than in a first
    # (a notebook's tunes could not be made again by the command line).
    from musicseq.sampling import sampler_for, score_texts

    config = SampleConfig(num=3, max_len=60, seed=9)
    first = generate(*load_model_dir(bfloat16_model_dir), config)
    loaded = load_model_dir(bfloat16_model_dir)  # a new model object: a new sampler
    generate(*loaded, SampleConfig(num=5, max_len=40, seed=1, prime="X:1\nT:A\n"))
    assert generate(*loaded, config) == first
    sampler = sampler_for(*loaded)
    assert sampler._start_compiled.experimental_get_tracing_count() == 1
    assert sampler._loop_compiled.experimental_get_tracing_count() == 1
    score_texts(*loaded, ["X:1\nK:G\nAB|\n", "X:2\nK:D\nABcdef|\n" * 3], batch_size=1)
    assert sampler.score_ids.experimental_get_tracing_count() == 1
    # One stream starts from a trace of its own (a Transformer's cache in one block), for
    # any prime.
    one = generate(*loaded, SampleConfig(num=1, max_len=40, seed=2))
    assert generate(*loaded, SampleConfig(num=1, max_len=40, seed=2, prime="X:1\nT:A\n"))
    assert generate(*loaded, SampleConfig(num=1, max_len=40, seed=2)) == one
    assert sampler._start_compiled.experimental_get_tracing_count() == 2


def test_ended_streams_leave_the_batch_and_the_rest_draw_the_same(loaded, monkeypatch):
    # Sampler.run drops the streams that have ended between chunks; each remaining stream
    # must draw exactly what it draws when every stream is carried to the end (the
    # SavedModel's loop, run whole), free and constrained.
    import tensorflow as tf

    import musicseq.sampling as sampling

    model, config, vocab = loaded
    kept = []
    keep_rows = sampling._keep_rows
    monkeypatch.setattr(sampling, "_keep_rows", lambda *a: kept.append(len(a[2])) or keep_rows(*a))
    sampler = sampling.sampler_for(model, config, vocab)
    sample = SampleConfig(num=12, max_len=600, seed=3, temperature=0.7)
    params = sampling._params(sample)
    prime = [sampling.EOT] + vocab.encode(sample.prime)
    chunked = sampler.run(prime, sample.num, sample.max_len, params)
    whole = sampler.generate_ids(tf.constant(prime), sample.num, sample.max_len, params).numpy()
    assert kept and min(kept) < sample.num  # streams did leave the batch
    ended = {int(np.argmax(row == sampling.EOT)) // sampling.CHUNK for row in whole}
    assert len(ended) > 2  # in different chunks
    assert chunked.shape[1] <= whole.shape[1]
    np.testing.assert_array_equal(chunked, whole[:, : chunked.shape[1]])
    assert not whole[:, chunked.shape[1] :].any()  # PAD

    kept.clear()
    constrained = SampleConfig(num=6, seed=4, form="AB", max_len=800)
    tunes = generate_constrained(model, config, vocab, constrained)
    assert kept
    run = sampling.Sampler.run
    monkeypatch.setattr(
        sampling.Sampler, "run", lambda self, *a, **k: run(self, *a, shrink=False, **k)
    )
    kept.clear()
    assert generate_constrained(model, config, vocab, constrained) == tunes
    assert not kept
