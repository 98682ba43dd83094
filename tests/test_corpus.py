import json

import pytest

from musicseq import corpus
from musicseq.errors import UserError
from musicseq.notation import parse_tune


def test_default_corpus_files_exist():
    files = corpus.collection_files(corpus.DEFAULT_COLLECTIONS)
    assert len(files) > 1000 and all(f.suffix == ".abc" for f in files)


def test_build_is_deterministic_and_writes_manifest(tmp_path, data_dir):
    files = [data_dir / "irish.abc"]
    first = corpus.write_corpus(corpus.build_corpus(files), tmp_path / "a")
    second = corpus.write_corpus(corpus.build_corpus(files), tmp_path / "b")
    assert first["splits"] == second["splits"]
    total = sum(s["tunes"] for s in first["splits"].values())
    assert total == 803  # the lab corpus holds one tune twice, under two X: numbers
    assert first["splits"]["train"]["tunes"] > 600
    for name in corpus.SPLITS:
        assert (tmp_path / "a" / f"{name}.abc").read_bytes() == (
            tmp_path / "b" / f"{name}.abc"
        ).read_bytes()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert len(manifest["splits"]["test"]["sha256"]) == 64


def test_split_is_stable_when_tunes_are_added(data_dir):
    base = corpus.build_corpus([data_dir / "irish.abc"])
    more = corpus.build_corpus([data_dir / "irish.abc", data_dir / "three.abc"])
    for name in corpus.SPLITS:
        before = {t.content_text() for t in base.splits[name]}
        after = {t.content_text() for t in more.splits[name]}
        assert before <= after


def test_split_ignores_x_number():
    a = parse_tune("X:1\nT:A\nK:G\nABcd|\n")
    b = parse_tune("X:99\nT:A\nK:G\nABcd|\n")
    assert corpus.split_of(a) == corpus.split_of(b)


def test_duplicates_are_dropped(tmp_path):
    (tmp_path / "a.abc").write_text("X:1\nT:A\nK:G\nABcd|\n\nX:2\nT:A\nK:G\nABcd|\n")
    assert len(corpus.parse_files([tmp_path / "a.abc"]).tunes) == 1


def test_errors_do_not_abort_the_corpus(data_dir):
    built = corpus.build_corpus([data_dir / "tricky.abc", data_dir / "three.abc"])
    assert sum(len(v) for v in built.splits.values()) == 5
    assert len(built.errors) == 4


def test_failed_rebuild_keeps_previous_corpus(tmp_path, data_dir, monkeypatch):
    out = tmp_path / "corpus"
    corpus.write_corpus(corpus.build_corpus([data_dir / "three.abc"]), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_fsync = corpus.os.fsync
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(corpus.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        corpus.write_corpus(corpus.build_corpus([data_dir / "irish.abc"]), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp files either


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        corpus.find_abc_files(tmp_path / "nope")
    with pytest.raises(UserError, match="no .abc files"):
        corpus.find_abc_files(tmp_path)
    (tmp_path / "empty.abc").write_text("")
    with pytest.raises(UserError, match="no line starts with X:"):
        corpus.build_corpus([tmp_path / "empty.abc"])


def test_load_split_from_raw_abc(data_dir):
    texts = sum((corpus.load_split(data_dir / "irish.abc", s) for s in corpus.SPLITS), [])
    assert len(texts) == 803  # 804 minus one exact duplicate
