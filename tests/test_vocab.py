import pytest

from musicseq.vocab import EOT, UNK, Vocab


def test_round_trip_and_json(tmp_path):
    vocab = Vocab.from_texts(["X:1\nK:G\nABc|\n"])
    text = "K:G\nAB|"
    assert vocab.decode(vocab.encode(text)) == text
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == vocab


def test_unknown_characters_map_to_unk():
    vocab = Vocab.from_texts(["ABC"])
    assert vocab.encode("AzB") == [vocab.encode("A")[0], UNK, vocab.encode("B")[0]]
    assert vocab.unknown_chars("AzBy") == ["z", "y"]


def test_decode_stops_at_end_of_tune():
    vocab = Vocab.from_texts(["AB"])
    assert vocab.decode(vocab.encode("AB") + [EOT] + vocab.encode("A")) == "AB"


def test_bad_vocab_json(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text('{"chars": ["a", "a"]}')
    with pytest.raises(ValueError):
        Vocab.load(path)
    path.write_text("not json")
    with pytest.raises(ValueError):
        Vocab.load(path)


def test_abc_kind_beside_chars(tmp_path):
    texts = ["X:1\nM:6/8\nK:G\n|:GA2 B:|\n", "X:2\nM:6/8\nK:G\n|:GA2 c:|\n"]
    chars = Vocab.from_texts(texts)
    abc = Vocab.from_texts(texts, kind="abc", min_count=2)
    assert abc.tokens[: len(chars.tokens)] == chars.tokens and "M:6/8\n" in abc
    text = "M:6/8\n|:GA2 c:|"
    assert len(abc.encode(text)) < len(chars.encode(text)) == len(text)
    assert abc.decode(abc.encode(text)) == chars.decode(chars.encode(text)) == text
    assert chars.token_lengths() == [0, 1, 1] + [1] * len(chars.chars)
    abc.save(tmp_path / "abc.json")
    chars.save(tmp_path / "chars.json")
    assert Vocab.load(tmp_path / "abc.json") == abc != Vocab.load(tmp_path / "chars.json") == chars
    with pytest.raises(ValueError):
        Vocab(["ab"])  # a character vocabulary holds single characters only
    with pytest.raises(ValueError):
        Vocab(["a"], kind="words")
