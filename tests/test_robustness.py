"""Hostile input: random and broken ABC, bad files and directories, crafted model files,
path traversal, full disks. Nothing may raise a traceback; bad tunes are reported."""

import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicseq import corpus
from musicseq.cli import main
from musicseq.errors import UserError
from musicseq.notation import ParseResult, decode_bytes, parse_tunebook
from musicseq.notation.checker import check_text

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ABC_ALPHABET = st.sampled_from(
    list("XTMLKQ:|[]()/<>{}!+\"'^_=,-~.0123456789ABCDEFGabcdefgzx \n%\\")
)


@FAST
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data):
    result = parse_tunebook(decode_bytes(data), "fuzz.abc")
    assert isinstance(result, ParseResult)
    for error in result.errors:
        assert str(error).startswith("fuzz.abc:")


@FAST
@given(st.text(ABC_ALPHABET, max_size=600))
def test_random_abc_like_text_never_raises(body):
    text = "X:1\nT:t\nM:6/8\nL:1/8\nK:G\n" + body
    parse_tunebook(text)
    check_text(text)


def test_every_truncation_of_real_tunes(data_dir):
    text = (data_dir / "three.abc").read_text()
    for cut in range(len(text)):
        result = parse_tunebook(text[:cut], "cut.abc")
        for tune in result.tunes:
            check_text(tune.text)


def test_good_tunes_survive_bad_neighbours(tmp_path, data_dir):
    good = (data_dir / "three.abc").read_text()
    junk = "X:99\nT:junk\nM:9/0\nK:G\nABC|\n\nX:100\n\x00\x01\x02binary\n\n"
    (tmp_path / "mixed.abc").write_bytes((junk + good).encode("latin-1") + b"\nX:101\n\xff\xfe\x00")
    built = corpus.build_corpus([tmp_path / "mixed.abc"])
    assert sum(len(v) for v in built.splits.values()) == 3
    assert all(":" in str(e) for e in built.errors) and len(built.errors) >= 2


def test_files_and_directories(tmp_path):
    (tmp_path / "empty.abc").write_bytes(b"")
    (tmp_path / "utf16.abc").write_bytes("X:1\nT:\u00c9ire\nM:2/4\nK:D\nAB|\n".encode("utf-16"))
    result = corpus.parse_files([tmp_path / "empty.abc", tmp_path / "utf16.abc"])
    assert [t.title for t in result.tunes] == ["Eire"]
    (tmp_path / "loop").mkdir()
    os.symlink(tmp_path / "loop", tmp_path / "loop" / "again")  # a symlink loop
    files = corpus.find_abc_files(tmp_path)
    assert sorted(f.name for f in files) == ["empty.abc", "utf16.abc"]
    (tmp_path / "dir.abc").mkdir()  # a directory named like a file
    assert corpus.read_tunebook(tmp_path / "dir.abc").errors
    with pytest.raises(UserError):
        corpus.find_abc_files(tmp_path / "loop")


def test_a_ten_megabyte_line(tmp_path):
    (tmp_path / "huge.abc").write_bytes(b"X:1\nM:4/4\nK:G\n" + b"ABcd" * 2_500_000)
    result = corpus.read_tunebook(tmp_path / "huge.abc")
    assert len(result.tunes) == 1


def _one_line(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_crafted_model_with_a_lambda_layer_is_refused(tmp_path, tiny_model_dir, capsys):
    import keras

    crafted = tmp_path / "crafted"
    shutil.copytree(tiny_model_dir, crafted)
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(
        len(json.loads((crafted / "vocab.json").read_text())["chars"]) + 3, 4, name="embedding"
    )(inputs)
    x = keras.layers.Lambda(lambda t: t * 2)(x)
    keras.Model(inputs, keras.layers.Dense(3)(x)).save(crafted / "model.keras")
    _one_line(capsys, ["generate", str(crafted), "--out", str(tmp_path / "g")], "cannot load")
    assert not (tmp_path / "g").exists() or not list((tmp_path / "g").iterdir())


def test_model_dir_validation(tmp_path, tiny_model_dir, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    config = json.loads((bad / "musicseq.json").read_text())
    config["model"]["units"] = "many"
    (bad / "musicseq.json").write_text(json.dumps(config))
    _one_line(capsys, ["generate", str(bad), "--out", str(tmp_path / "g")], "units must be int")
    config["model"]["units"] = 32
    config["model"]["evil"] = 1
    (bad / "musicseq.json").write_text(json.dumps(config))
    _one_line(
        capsys, ["generate", str(bad), "--out", str(tmp_path / "g")], "unknown ModelConfig fields"
    )
    (bad / "musicseq.json").write_text("{" * 2_000_000)
    _one_line(capsys, ["generate", str(bad), "--out", str(tmp_path / "g")], "larger than")


def test_titles_cannot_escape_the_output_directory(tmp_path, capsys):
    out = tmp_path / "out"
    tune = tmp_path / "..%2F..%2Fx.abc"
    (tmp_path / "evil.abc").write_text("X:1\nT:../../etc/x\nM:2/4\nL:1/8\nK:D\nAB cd|ef ga|]\n")
    assert main(["render", str(tmp_path / "evil.abc"), "--out", str(out), "--no-wav"]) == 0
    assert [p.name for p in out.iterdir()] == ["evil.mid"]
    tune.write_text("X:1\nT:t\nM:2/4\nL:1/8\nK:D\nAB cd|ef ga|]\n")
    assert main(["render", str(tune), "--out", str(out), "--no-wav"]) == 0
    assert all(p.parent == out for p in out.rglob("*"))


def test_full_disk_while_writing_leaves_nothing_half_written(
    tmp_path, tiny_model_dir, capsys, monkeypatch
):
    from musicseq import fileio

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    out = tmp_path / "g"
    _one_line(
        capsys,
        ["generate", str(tiny_model_dir), "--out", str(out), "--num", "2", "--max-len", "20"],
        "No space left on device",
    )
    assert list(out.iterdir()) == []  # no partial or temporary files


def test_hanging_renderer_is_killed_and_reported(tmp_path, monkeypatch, data_dir):
    from musicseq import render

    fake = tmp_path / "abc2midi"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(
        render.shutil, "which", lambda name: str(fake) if name == "abc2midi" else None
    )
    monkeypatch.setattr(render, "abc_to_midi", _with_timeout(render.abc_to_midi))
    result = render.render_file(data_dir / "three.abc", tmp_path / "out", wav=False)
    assert "timed out" in result.error


def _with_timeout(fn):
    return lambda abc, midi, timeout=30.0: fn(abc, midi, timeout=0.5)
