"""The musical tokenizer: lossless, greedy longest match, its vocabulary and its graph twin;
models that read its tokens."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from musicseq.corpus import load_split
from musicseq.notation.tokens import TOKEN_CLASSES, Tokenizer, atom_class, atoms, measure
from musicseq.vocab import EOT, UNK, Vocab

ROOT = Path(__file__).parent.parent
SPLITS = ("train", "validation", "test")
ODD_TEXTS = [
    "",
    "\n",
    "X:1\nT:Ünïcödé — 漢字 🎻\nK:G\n|:GABc d2e2:|\n",
    "\r\n\t\x00\x7f\ufffd\ue000\ue001",  # controls and the graph twin's separator characters
    "||||::::]]][[[((((3333////",
    "^^c''2 __B,,,/4 =e'3/2 z// x3 |] [1 :|2 !trill! \"Am\" \\\n",
]


@pytest.fixture(scope="module")
def splits(corpus_dir):
    return {name: load_split(corpus_dir, name) for name in SPLITS}


@pytest.fixture(scope="module")
def abc_vocab(splits):
    return Vocab.from_texts(splits["train"], "abc", min_count=5)


def test_greedy_longest_match():
    tok = Tokenizer(["^c", "^c'", "^c'2", "|:", ":|", "::", "d2 ", "M:6/8\n"])
    assert tok.tokenize("^c'2^c'^cc") == ["^c'2", "^c'", "^c", "c"]
    assert tok.tokenize(":|:") == [":|", ":"]  # leftmost first, then the longest there
    assert tok.tokenize("|::|") == ["|:", ":|"]
    assert tok.tokenize("M:6/8\nd2 d2") == ["M:6/8\n", "d2 ", "d", "2"]
    assert tok.tokenize("") == []
    for text in ["^c'2^c'^cc", ":|:", "M:6/8\nd2 d2", *ODD_TEXTS]:
        assert re.findall(tok.pattern(), text) == tok.tokenize(text)  # the graph's definition


def test_atoms_are_musical_symbols():
    text = "M:6/8\nK:G\n|:^c'2 =B,, _e z2 (3:2:3 d>c !trill! [1 G3/2 [M:3/4] :|2\n"
    found = list(atoms(text))
    for expected in ["M:6/8\n", "K:G\n", "|:", "^c'2 ", "=B,, ", "_e ", "z2 ", "(3:2:3"]:
        assert expected in found
    for expected in ["!trill!", "[1 ", "G3/2 ", "[M:3/4]", ":|2\n"]:
        assert expected in found
    assert atom_class("^c'2 ") == "note"
    assert atom_class(":|2\n") == "bar"
    assert atom_class("L:1/8\n") == "field_line"
    assert atom_class("GBd ") == "beam" and atom_class("GBd") == "beam"
    assert "GBd " in atoms("GBd e", beams=True) and "GBd " not in atoms("GBd e")
    assert atom_class("T") is None
    assert {name for name, _ in TOKEN_CLASSES} >= {"note", "bar", "tuplet", "rest", "length"}


def test_inventory_from_texts():
    texts = ["|:GA2 B:|\n", "|:GA2 c:|\n", "T:x\n"]
    tok = Tokenizer.from_texts(texts, min_count=2)
    assert set(tok.tokens) == {"|:", "A2 ", ":|\n"}
    assert all(len(t) > 1 for t in tok.tokens)
    assert Tokenizer.from_texts(texts, min_count=1).tokens[0] in {"T:", "|:"}
    assert len(Tokenizer.from_texts(texts, min_count=1, max_tokens=2)) == 2
    with pytest.raises(ValueError):
        Tokenizer.from_texts(texts, min_count=0)
    with pytest.raises(ValueError):
        Tokenizer(["a"])  # single characters are always tokens, not inventory


def test_tokenizer_json_round_trip(splits):
    tok = Tokenizer.from_texts(splits["train"][:300])
    again = Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again == tok and again.tokenize(splits["test"][0]) == tok.tokenize(splits["test"][0])
    with pytest.raises(ValueError):
        Tokenizer.from_dict({"tokens": "ab"})


def test_lossless_on_corpus_fixtures_and_odd_text(splits, data_dir, abc_vocab):
    tok = abc_vocab.tokenizer
    texts = [t for name in SPLITS for t in splits[name]]
    texts += [p.read_text(encoding="utf-8") for p in sorted(data_dir.glob("*.abc"))]
    texts += ODD_TEXTS
    for text in texts:
        assert tok.detokenize(tok.tokenize(text)) == text
    for text in splits["test"] + ODD_TEXTS[:3]:
        ids = abc_vocab.encode(text)
        assert abc_vocab.decode(ids) == "".join(t if t in abc_vocab else "?" for t in text)
        assert sum(abc_vocab.token_lengths()[i] for i in ids) == len(text)


def test_abc_vocab_shortens_the_corpus(splits, abc_vocab):
    figures = measure(abc_vocab.tokenizer, splits["test"])
    assert figures["chars_per_token"] > 1.4  # 1.52 measured
    assert figures["multi_char_share"] > 0.5
    chars = Vocab.from_texts(splits["train"])
    assert abc_vocab.tokens[: len(chars.tokens)] == chars.tokens  # same ids for characters
    assert abc_vocab.kind == "abc" and len(abc_vocab) == 3 + len(abc_vocab.tokens)
    assert abc_vocab.encode("\u2603") == [UNK]
    assert abc_vocab.unknown_chars("K:G\n\u2603") == ["\u2603"]


def test_abc_vocab_json_round_trip(tmp_path, abc_vocab):
    abc_vocab.save(tmp_path / "vocab.json")
    data = json.loads((tmp_path / "vocab.json").read_text())
    assert data["format"] == 2 and data["kind"] == "abc"
    again = Vocab.load(tmp_path / "vocab.json")
    assert again == abc_vocab and again != Vocab(abc_vocab.tokens[:10])
    text = "X:1\nM:6/8\nK:D\n|:d2e fed|\n"
    assert again.encode(text) == abc_vocab.encode(text)
    with pytest.raises(ValueError, match="tokens"):
        _ = again.chars  # the grammar's character view exists only for character vocabularies
    with pytest.raises(ValueError):
        Vocab.from_dict({"format": 3, "chars": ["a"]})


@pytest.mark.parametrize("name", ["folk-gru", "folk-transformer"])
def test_format_1_vocab_loads_and_encodes_as_before(tmp_path, name, splits):
    path = ROOT / "saved_models" / name / "vocab.json"
    vocab = Vocab.load(path)  # the shipped models are part of the repository
    chars = json.loads(path.read_text())["chars"]
    assert vocab.kind == "chars" and vocab.chars == chars
    old_ids = {c: i + 3 for i, c in enumerate(chars)}  # the format-1 encoding, written out
    for text in splits["test"][:50] + ODD_TEXTS:
        assert vocab.encode(text) == [old_ids.get(c, UNK) for c in text]
    vocab.save(tmp_path / "vocab.json")
    assert (tmp_path / "vocab.json").read_bytes() == path.read_bytes()  # written unchanged


def test_graph_twin_equals_python(splits, abc_vocab):
    tf = pytest.importorskip("tensorflow")
    from musicseq.tokenize_graph import encode, split

    texts = splits["test"] + ODD_TEXTS
    for vocab in (abc_vocab, Vocab.from_texts(splits["train"])):
        ids = encode(tf.constant(texts), vocab)
        assert ids.to_list() == [vocab.encode(t) for t in texts]
    assert encode(tf.constant(texts[0]), abc_vocab).numpy().tolist() == abc_vocab.encode(texts[0])
    assert encode(tf.constant(""), abc_vocab).shape == (0,)
    pieces = split(tf.constant(ODD_TEXTS[2]), abc_vocab).numpy().tolist()
    assert [p.decode() for p in pieces] == abc_vocab.split(ODD_TEXTS[2])


def test_graph_twin_in_a_saved_model(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from musicseq.tokenize_graph import encode

    vocab = Vocab.from_texts(["|:GA2 B:|\n", "|:GA2 c:|\n"], "abc", min_count=2)
    module = tf.Module()
    module.encode = tf.function(
        lambda text: encode(text, vocab).to_tensor(EOT),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    tf.saved_model.save(module, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))  # nothing of musicseq is needed here
    got = loaded.encode(tf.constant(["|:GA2 c:|", "G"])).numpy().tolist()
    first, second = vocab.encode("|:GA2 c:|"), vocab.encode("G")
    assert got == [first, second + [EOT] * (len(first) - len(second))]


# --- models that read ABC tokens (musicseq train --tokens abc) -----------------------------


@pytest.fixture(scope="module")
def abc_model(tmp_path_factory, data_dir):
    from musicseq.config import ModelConfig, TrainConfig
    from musicseq.modeldir import ModelDir
    from musicseq.train import train

    out = tmp_path_factory.mktemp("abc_model")
    lines = []
    train(
        data_dir / "irish.abc",
        out,
        ModelConfig(kind="transformer", units=16, embedding_dim=8, num_heads=2, context=32),
        TrainConfig(seq_len=32, batch_size=4, steps=6, seed=0, learning_rate=0.02, tokens="abc"),
        log=lines.append,
        verbose=0,
    )
    return ModelDir.load(out), lines


def test_an_abc_model_trains_on_musical_tokens(abc_model, data_dir):
    from musicseq.corpus import load_split

    loaded, lines = abc_model
    vocab = loaded.vocab
    assert vocab.kind == "abc" and loaded.model.output_shape[-1] == len(vocab)
    saved = json.loads((loaded.path / "vocab.json").read_text())
    assert saved["format"] == 2 and saved["kind"] == "abc"
    assert sum(len(t) > 1 for t in vocab.tokens) > 100  # notes with lengths, bar lines, fields
    assert json.loads((loaded.path / "musicseq.json").read_text())["train"]["tokens"] == "abc"
    train_texts = load_split(data_dir / "irish.abc", "train")
    stream = sum(len(vocab.encode(t)) + 1 for t in train_texts) + 1
    assert any(f"/ {stream:,} tokens;" in line for line in lines), lines  # ids, not characters
    assert any("nats/token" in line for line in lines)


def test_an_abc_model_samples_scores_per_character_and_exports(abc_model, tmp_path):
    import tensorflow as tf

    from musicseq.config import SampleConfig
    from musicseq.export import call_generate, export_savedmodel
    from musicseq.sampling import generate, score_texts

    loaded, _ = abc_model
    model, config, vocab = loaded.model, loaded.config, loaded.vocab
    sample = SampleConfig(num=3, max_len=40, temperature=1.0, seed=5)
    tunes = generate(model, config, vocab, sample)
    assert all(t.startswith(sample.prime) for t in tunes)
    # max_len counts tokens: the tunes that ran out of room are longer in characters
    assert max(len(t) for t in tunes) > len(sample.prime) + 40
    texts = ["X:1\nT:Jig\nM:6/8\nL:1/8\nK:G\n|:GAB c2d|e2d B2A:|\n", "X:2\nK:D\nd2 f2|]\n"]
    nats = score_texts(model, config, vocab, texts)
    path = export_savedmodel(model, config, vocab, tmp_path / "savedmodel")
    exported = tf.saved_model.load(str(path))
    assert call_generate(exported, sample) == tunes  # the tokenizer lives in the graph
    # A prime that stops inside a longer token is healed the same way in both
    healed = dataclasses.replace(sample, prime=PRIME_INSIDE_A_TOKEN)
    tunes = generate(model, config, vocab, healed)
    assert all(t.startswith(healed.prime) for t in tunes)
    assert call_generate(exported, healed) == tunes
    per_char = exported.signatures["score"](text=tf.constant(texts))["nats_per_char"].numpy()
    expected = [n / (len(t) + 1) for n, t in zip(nats, texts)]  # characters + end of tune
    assert np.allclose(per_char, expected, rtol=1e-4), (per_char, expected)
    # constrained decoding writes characters: refused, in process and in the export
    from musicseq.errors import UserError

    with pytest.raises(UserError, match="constrained decoding writes characters"):
        generate(model, config, vocab, SampleConfig(num=1, max_len=40), constrain=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="constrained decoding is not"):
        call_generate(exported, dataclasses.replace(sample, form="AABB"), constrain=True)


def test_constrained_evaluation_of_an_abc_model_is_one_line(abc_model, tmp_path):
    from tests.conftest import run_cli

    done = run_cli("evaluate", abc_model[0].path, "--constrain", "--out", tmp_path / "e")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "without --constrain" in done.stderr


PRIME_INSIDE_A_TOKEN = "X:1\nT:Jig\nM:6/8\nL:1/8\nK:G\n|:G"


def test_token_healing_takes_back_the_primes_last_token(abc_model):
    from musicseq.sampling import heal_prime

    vocab = abc_model[0].vocab
    prime = PRIME_INSIDE_A_TOKEN
    assert vocab.split(prime)[-1] == "G" and any(len(t) > 1 and t[0] == "G" for t in vocab.tokens)
    head, ids, allowed = heal_prime(prime, vocab)
    assert head == prime[:-1] and ids == [EOT, *vocab.encode(head)]
    texts = [vocab.decode([i]) for i, ok in enumerate(allowed) if ok]
    assert "G" in texts and ("G2" in texts or "G2 " in texts)
    assert all(t.startswith("G") for t in texts) and not any(allowed[:3])
    assert heal_prime("", vocab) == ("", [EOT], [False] * 3 + [True] * (len(vocab) - 3))


def test_metrical_inputs_need_characters(data_dir, tmp_path):
    from musicseq.config import ModelConfig, TrainConfig
    from musicseq.errors import UserError
    from musicseq.train import train

    with pytest.raises(UserError, match="--metrical needs --tokens chars"):
        train(
            data_dir / "three.abc",
            tmp_path,
            ModelConfig(kind="gru", units=8, metrical=True),
            TrainConfig(steps=1, tokens="abc"),
            log=lambda _m: None,
        )
    with pytest.raises(ValueError, match="tokens"):
        TrainConfig(tokens="bpe").validate()
