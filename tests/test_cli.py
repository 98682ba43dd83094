import json
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
        "musicseq.json is missing",
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
        "no line starts with X:",
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
    done = run_cli(
        "train",
        "--data",
        data_dir / "three.abc",
        "--out",
        model,
        "--steps",
        "20",
        "--units",
        "32",
        "--seq-len",
        "32",
        "--batch-size",
        "8",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    assert "nats/char" in done.stdout
    recorded = json.loads((model / "musicseq.json").read_text())["command"]
    assert recorded.startswith("musicseq train --data ") and recorded.endswith(
        "--batch-size 8 --quiet"
    )
    out = tmp_path / "gen"
    done = run_cli(
        "generate",
        model,
        "--num",
        "2",
        "--seed",
        "3",
        "--max-len",
        "200",
        "--prime",
        "X:1\nT:Test\nM:6/8\nL:1/8\nK:G\nGAG GAB|ABA ABd|",
        "--render",
        "--out",
        out,
    )
    assert done.returncode == 0, done.stderr
    assert "tune  title" in done.stdout and "Test" in done.stdout
    assert sorted(p.name for p in out.glob("*.abc")) == ["tune_001.abc", "tune_002.abc"]
    assert "Traceback" not in done.stderr


def test_generate_controls_are_checked_before_the_model_is_loaded(capsys, tmp_path):
    missing = str(tmp_path / "no_model")
    out = str(tmp_path / "g")
    _one_line_error(capsys, 2, ["generate", missing, "--out", out, "--key", "H#"], "unknown key")
    _one_line_error(capsys, 2, ["generate", missing, "--out", out, "--meter", "7"], "bad meter")
    _one_line_error(capsys, 2, ["generate", missing, "--out", out, "--top-p", "1.5"], "top-p")
    _one_line_error(capsys, 2, ["generate", missing, "--out", out, "--top-k", "-2"], "top-k")
    _one_line_error(
        capsys,
        2,
        ["generate", missing, "--out", out, "--prime", "X:1", "--key", "G"],
        "cannot be combined",
    )


def test_generate_with_header_shortcuts_and_export(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "g"
    argv = [
        "generate",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--num",
        "2",
        "--max-len",
        "40",
        "--meter",
        "6/8",
        "--key",
        "G",
        "--title",
        "The Kesh",
        "--top-k",
        "5",
        "--top-p",
        "0.9",
    ]
    assert main(argv) == 0
    texts = [p.read_text() for p in sorted(out.iterdir())]
    assert [p.name for p in sorted(out.iterdir())] == ["tune_001.abc", "tune_002.abc"]
    assert all(t.startswith("X:1\nT:The Kesh\nM:6/8\nL:1/8\nK:G\n") for t in texts)
    assert main(["export", str(tiny_model_dir), "--out", str(tmp_path / "sm")]) == 0
    assert (tmp_path / "sm" / "saved_model.pb").is_file()


def test_an_internal_error_prints_its_traceback_and_exits_1(capsys, monkeypatch, tmp_path):
    from musicseq import cli

    def broken(args):
        raise KeyError("a bug")  # not a user's mistake

    monkeypatch.setitem(cli.COMMANDS, "data", broken)
    assert main(["data", "--out", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err and "internal error" in err
    assert "please report it" in err


def test_a_library_value_error_is_not_mistaken_for_a_user_error(capsys, monkeypatch, tmp_path):
    from musicseq import cli

    def broken(args):
        raise ValueError("internal invariant broken")

    monkeypatch.setitem(cli.COMMANDS, "data", broken)
    assert main(["data", "--out", str(tmp_path / "c")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_options_come_from_the_config_dataclasses():
    import dataclasses

    from musicseq.cli import build_parser
    from musicseq.config import ModelConfig, SampleConfig, TrainConfig

    parser = build_parser()
    train = parser.parse_args(["train", "--out", "m"])
    for cls in (ModelConfig, TrainConfig):
        for spec in dataclasses.fields(cls):
            if spec.metadata.get("cli", True):
                assert getattr(train, spec.name) == spec.default, spec.name
    generate = parser.parse_args(["generate", "m", "--out", "g"])
    assert generate.temperature == SampleConfig.temperature and generate.max_len == 1200
    helps = parser._subparsers._group_actions[0].choices["train"].format_help()
    assert "--layers" in helps and "(default 512)" in helps and "--recurrent-init" in helps
