import json
import shutil

import keras
import numpy as np
import pytest

from musicseq.config import ModelConfig, SampleConfig
from musicseq.evaluate import (
    CopyIndex,
    evaluate_model,
    held_out_loss,
    pitch_letters,
    total_variation,
)
from musicseq.modeldir import load_model_dir
from musicseq.models import build_model
from musicseq.notation.checker import check_text
from musicseq.sampling import generate_constrained
from musicseq.vocab import Vocab

FULL_VOCAB = Vocab([chr(c) for c in range(32, 127)] + ["\n"])


def test_constrained_decoding_from_an_untrained_model_passes_the_checker(tmp_path):
    from musicseq.render import abc_to_midi, midi_info

    keras.utils.set_random_seed(0)
    config = ModelConfig(kind="gru", vocab_size=len(FULL_VOCAB), units=16, embedding_dim=8)
    model = build_model(config)
    tunes = generate_constrained(
        model, config, FULL_VOCAB, SampleConfig(num=6, max_len=500, seed=3)
    )
    for index, text in enumerate(tunes):
        report = check_text(text)
        assert report.ok, (text, report.to_dict())
        path = tmp_path / f"t{index}.abc"
        path.write_text(text)
        abc_to_midi(path, tmp_path / f"t{index}.mid")
        assert midi_info(tmp_path / f"t{index}.mid").notes > 0


def test_constrained_decoding_honours_fixed_header_values():
    keras.utils.set_random_seed(1)
    config = ModelConfig(kind="lstm", vocab_size=len(FULL_VOCAB), units=8, embedding_dim=4)
    model = build_model(config)
    fixed = {"T": "Test Reel", "M": "2/4", "K": "Ador"}
    tunes = generate_constrained(
        model, config, FULL_VOCAB, SampleConfig(num=2, max_len=300, seed=0), fixed=fixed
    )
    for text in tunes:
        assert text.startswith("X:1\nT:Test Reel\nM:2/4\nL:1/16\nK:Ador\n")
        assert check_text(text).ok


def test_held_out_loss_equals_the_mean_cross_entropy_over_whole_tunes(tiny_model_dir):
    model, config, vocab = load_model_dir(tiny_model_dir)
    texts = ["X:1\nT:a\nM:6/8\nK:G\nGAG GAB|\n", "X:2\nK:D\nDEF|\n"]
    result = held_out_loss(model, config, vocab, texts)
    total, count = 0.0, 0
    for text in texts:
        ids = np.array([[2, *vocab.encode(text), 2]], dtype=np.int32)
        logits = model(ids[:, :-1]).numpy()[0]
        logp = (
            logits
            - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
            - logits.max(-1, keepdims=True)
        )
        total -= logp[np.arange(len(ids[0]) - 1), ids[0, 1:]].sum()
        count += len(text) + 1
    assert abs(result["nats_per_char"] - total / count) < 1e-4


def test_copy_rate_detects_a_copied_tune(data_dir):
    from musicseq.notation import parse_tunebook

    tunes = [t.text for t in parse_tunebook((data_dir / "irish.abc").read_text()).tunes[:50]]
    index = CopyIndex(tunes[:40])
    assert index.copies(tunes[3])
    assert not any(
        index.copies(t)
        for t in tunes[40:]
        if pitch_letters(t) not in {pitch_letters(u) for u in tunes[:40]}
    )
    assert pitch_letters('X:1\nK:G\n"Am"A2 !trill!B {g}c [K:D] d|\n') == "ABcd"


def test_total_variation():
    assert total_variation({"a": 1.0}, {"a": 1.0}) == 0.0
    assert total_variation({"a": 1.0}, {"b": 1.0}) == 1.0


def test_evaluate_writes_every_report_field(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "eval"
    report = evaluate_model(
        tiny_model_dir,
        out,
        data=data_dir / "irish.abc",
        num=4,
        max_len=300,
        constrain=True,
        log=lambda _m: None,
    )
    saved = json.loads((out / "report.json").read_text())
    assert saved["held_out"]["nats_per_char"] == report["held_out"]["nats_per_char"] > 0
    for name in ("unconstrained", "constrained"):
        for field in (
            "midi_with_notes_pct",
            "valid_headers_pct",
            "mid_section_bars_exact_pct",
            "tunes_all_bars_exact_pct",
            "mean_bars",
            "copy_rate_pct",
            "meters",
            "keys",
            "meter_distance_tv",
            "key_distance_tv",
            "generation_seconds",
        ):
            assert field in saved[name], (name, field)
    assert saved["constrained"]["valid_headers_pct"] == 100.0
    # The tiny model has no sampling settings of its own: SampleConfig's defaults, recorded.
    assert saved["unconstrained"]["sampling"] == {
        "temperature": 1.0,
        "top_k": 0,
        "top_p": 1.0,
        "seed": 0,
    }
    assert saved["constrained"]["sampling"]["repeat_bias"] == 1.5
    assert "Sampling (constrained): temperature 1, top_k 0" in (out / "report.md").read_text()
    assert {"report.md", "loss.png", "distributions.png"} <= {p.name for p in out.iterdir()}
    assert "bits/char" in (out / "report.md").read_text()


def test_a_file_given_is_the_test_set_all_of_it_and_a_corpus_its_test_split(
    tiny_model_dir, data_dir, tmp_path
):
    from musicseq import corpus
    from musicseq.notation import parse_tunebook

    tunes = parse_tunebook((data_dir / "irish.abc").read_text()).tunes[:10]
    mine = tmp_path / "my_test.abc"
    mine.write_text("\n".join(t.text for t in tunes))
    quick = {"num": 1, "max_len": 50, "log": lambda _m: None}
    report = evaluate_model(tiny_model_dir, tmp_path / "mine", data=mine, **quick)
    assert report["test_set"] == f"all 10 tunes of {mine}"
    assert report["held_out"]["tunes"] == 10
    # copying is measured against what the model was trained on, not against the test set
    assert report["training_reference"] == f"the training split of {data_dir / 'three.abc'}"
    markdown = (tmp_path / "mine" / "report.md").read_text()
    assert f"Held-out loss on all 10 tunes of {mine}" in markdown

    built = tmp_path / "corpus"
    manifest, _, _ = corpus.build_and_write(built, data_dir / "irish.abc")
    report = evaluate_model(tiny_model_dir, tmp_path / "split", data=built, **quick)
    assert report["test_set"] == f"the test split of {built}"
    assert report["held_out"]["tunes"] == manifest["splits"]["test"]["tunes"]
    assert report["training_reference"] == f"the training split of {built}"


def test_the_default_corpus_is_built_where_it_is_missing(
    tiny_model_dir, data_dir, tmp_path, monkeypatch
):
    # A model trained on the default corpus (as the shipped ones) evaluates in a fresh
    # checkout, whose data/abc holds only its README: the corpus is built there first, as
    # `musicseq train` does. A test set the user names is never built.
    from musicseq import corpus
    from musicseq.errors import UserError

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    meta = json.loads((model_dir / "musicseq.json").read_text())
    (model_dir / "musicseq.json").write_text(json.dumps({**meta, "data": "data/abc"}))
    work = tmp_path / "checkout"
    (work / "data" / "abc").mkdir(parents=True)
    (work / "data" / "abc" / "README.md").write_text("built by musicseq data\n")
    monkeypatch.chdir(work)
    built = []

    def ensure_default(path):  # the default corpus's build, from the fixture tunes
        built.append(str(path))
        corpus.build_and_write(path, data_dir / "irish.abc")
        return True

    monkeypatch.setattr(corpus, "ensure_default", ensure_default)
    logged = []
    report = evaluate_model(model_dir, tmp_path / "eval", num=1, max_len=50, log=logged.append)
    assert built == ["data/abc"] and (work / "data" / "abc" / "manifest.json").is_file()
    assert "notice: no corpus at data/abc; building the default corpus there" in logged
    assert report["test_set"] == "the test split of data/abc"
    with pytest.raises(UserError, match="evaluation data not found: elsewhere"):
        evaluate_model(model_dir, tmp_path / "eval2", data="elsewhere", num=1, log=logged.append)
    assert built == ["data/abc"]
