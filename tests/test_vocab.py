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
