import shutil

import pytest

from musicseq.cli import main
from tests.conftest import run_cli


def _one_line_error(capsys, code, argv, match):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("musicseq: error:") and match in err, err


def test_user_errors_exit_2_with_one_line(capsys, tmp_path, tiny_model_dir):
    _one_line_error(
        capsys, 2, ["render", str(tmp_path / "none.abc"), "--out", str(tmp_path)], "no such file"
    )
    _one_line_error(
        capsys, 2, ["train", "--out", str(tmp_path / "m"), "--steps", "-3"], "positive integer"
    )
    _one_line_error(
        capsys,
        2,
        ["train", "--out", str(tmp_path / "m"), "--steps", "3", "--epochs", "2"],
        "not allowed with",
    )
    _one_line_error(
        capsys, 2, ["data", "--data", str(tmp_path), "--out", str(tmp_path / "c")], "no .abc files"
    )
    _one_line_error(
        capsys,
        2,
        ["generate", str(tmp_path), "--out", str(tmp_path / "g")],
        "config.json is missing",
    )
    _one_line_error(
        capsys,
        2,
        ["generate", str(tiny_model_dir), "--out", str(tmp_path / "g"), "--prime", "X:1\n\u00e9"],
        "vocabulary",
    )
    _one_line_error(
        capsys,
        2,
        ["generate", str(tiny_model_dir), "--out", str(tmp_path / "g"), "--temperature", "0"],
        "positive number",
    )
    _one_line_error(capsys, 2, ["frobnicate"], "invalid choice")


def test_model_dir_without_vocab(capsys, tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "vocab.json").unlink()
    _one_line_error(
        capsys, 2, ["generate", str(broken), "--out", str(tmp_path / "g")], "vocab.json is missing"
    )


def test_empty_corpus_file(capsys, tmp_path):
    (tmp_path / "empty.abc").write_text("% nothing here\n")
    _one_line_error(
        capsys,
        2,
        ["train", "--data", str(tmp_path / "empty.abc"), "--out", str(tmp_path / "m")],
        "no usable tunes",
    )


def test_data_command_writes_corpus(capsys, tmp_path, data_dir):
    assert main(["data", "--data", str(data_dir / "irish.abc"), "--out", str(tmp_path / "c")]) == 0
    assert "803" not in capsys.readouterr().err
    assert {p.name for p in (tmp_path / "c").iterdir()} == {
        "train.abc",
        "validation.abc",
        "test.abc",
        "manifest.json",
    }


@pytest.mark.slow
def test_end_to_end_in_a_subprocess(tmp_path, data_dir):
    model = tmp_path / "model"
    done = run_cli("train", "--data", data_dir / "three.abc", "--out", model, "--steps", "20",
                   "--units", "32", "--seq-len", "32", "--batch-size", "8", "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "nats/char" in done.stdout
    out = tmp_path / "gen"
    done = run_cli("generate", model, "--num", "2", "--seed", "3", "--max-len", "200",
                   "--prime", "X:1\nT:Test\nM:6/8\nL:1/8\nK:G\nGAG GAB|ABA ABd|", "--render", "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tune  title" in done.stdout and "Test" in done.stdout
    assert sorted(p.name for p in out.glob("*.abc")) == ["tune_001.abc", "tune_002.abc"]
    assert "Traceback" not in done.stderr
