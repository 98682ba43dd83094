import json
import shutil

import pytest

from musicseq import __version__
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
    # No progress line for a short run; none with --quiet either.
    assert "tunes done" not in done.stderr
    quiet = run_cli("generate", model, "--num", "1", "--max-len", "50", "--quiet", "--out", "-")
    assert quiet.returncode == 0 and "tunes done" not in quiet.stderr


def test_progress_line_says_tunes_done_rate_and_time_left():
    import io

    from musicseq.progress import Progress

    now = [0.0]
    stream = io.StringIO()
    progress = Progress("generating", stream=stream, every=0.0, after=0.0, clock=lambda: now[0])
    progress.stage("building the decoding graph")  # not a terminal: no line
    now[0] = 30.0  # the first chunk: building the graph and 64 steps
    progress(64, 400, 1, 4, 1234)
    now[0] = 32.0  # 64 more steps in 2 s
    progress(128, 400, 2, 4, 1834)
    now[0] = 36.0
    progress(256, 400, 4, 4, 2000)
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0] == (
        "generating: 1/4 tunes done, 1,234 characters, 30 s elapsed (first steps), "
        "rate and time left from the next report"
    )
    # Rate and time left from the chunks after the first: 600 characters in 2 s, and 272
    # steps left at 2 s per 64 steps, 8.5 s (over the whole 32 s: 57 characters/s, 68 s left).
    assert lines[1] == (
        "generating: 2/4 tunes done, 1,834 characters, 300 characters/s, 32 s elapsed, "
        "at most 8 s left"
    )
    assert lines[-1].startswith("generating: 4/4 tunes done, 2,000 characters, ")
    assert "0 s left" in lines[-1] and "36 s elapsed" in lines[-1]

    # On a terminal the stage is shown in place, and wiped if the run ends too soon to report.
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    short = Progress(stream=terminal)
    short.stage("building the decoding graph")
    short(64, 400, 4, 4, 10)
    short.finish()
    assert terminal.getvalue() == "\rgenerating: building the decoding graph\x1b[K\r\x1b[K"
    quiet = io.StringIO()
    short = Progress(stream=quiet)  # a run shorter than 2 s prints nothing
    short(64, 400, 0, 4, 10)
    short.finish()
    assert quiet.getvalue() == ""


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
    for number, text in enumerate(texts, start=1):  # numbered, with provenance comments
        plain = "".join(line for line in text.splitlines(True) if not line.startswith("%"))
        assert plain.startswith(f"X:{number}\nT:The Kesh\nM:6/8\nL:1/8\nK:G\n"), text
        made = f"% musicseq {__version__}, model {tiny_model_dir.name}, tune {number} of 2\n"
        assert made in text
        assert "% seed 0, temperature 1, top-k 5, top-p 0.9, max-len 40\n" in text
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


def _subcommands():
    from musicseq.cli import build_parser

    return build_parser()._subparsers._group_actions[0].choices


def test_every_option_has_help_with_its_default_and_every_command_ends_with_examples():
    import argparse

    commands = _subcommands()
    names = {"data", "train", "generate", "evaluate", "inspect", "export", "render", "models"}
    assert names <= set(commands)
    for name, parser in commands.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            where = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, where
            flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
            if not flag and not action.required and action.default not in (None, False):
                assert "default" in action.help, where
        text = parser.format_help()
        examples = text.split("examples:\n", 1)[1].strip().splitlines()
        assert examples and all(
            line.lstrip().startswith(("musicseq ", "MUSICSEQ_MODELS=", "saved_model_cli ", "--"))
            for line in examples
        ), (name, examples)
        assert any(f"musicseq {name}" in line for line in examples), name


def test_generate_prints_numbered_tunes_to_stdout_and_warns_of_idle_options(
    capsys, tmp_path, tiny_model_dir
):
    argv = ["generate", str(tiny_model_dir), "--out", "-", "--num", "2", "--max-len", "60"]
    argv += ["--meter", "6/8", "--tempo", "100", "--form", "AB", "--repeat-bias", "3"]
    argv += ["--no-wav", "--mono"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    from musicseq.notation import parse_tunebook

    tunes = parse_tunebook(out).tunes
    assert [t.get("X") for t in tunes] == ["1", "2"]
    assert out.count("Q:3/8=100\nK:D\n") == 2 and out.count("% musicseq ") == 2
    assert "wrote" not in out
    warnings = [line for line in err.splitlines() if line.startswith("musicseq: warning:")]
    assert warnings == [
        "musicseq: warning: --form/--repeat-bias have no effect without --constrain",
        "musicseq: warning: --no-wav has no effect without --render",
        "musicseq: warning: --mono has no effect without --render",
    ]
    _one_line_error(
        capsys,
        2,
        ["generate", str(tiny_model_dir), "--out", "-", "--render"],
        "give --out a directory, not -",
    )
    _one_line_error(
        capsys,
        2,
        ["generate", str(tiny_model_dir), "--out", str(tmp_path / "g"), "--tempo", "2"],
        "tempo must be",
    )


def test_a_model_name_that_matches_nothing_lists_the_known_ones(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_error(
        capsys,
        2,
        ["generate", "folk-tranformer", "--out", "tunes"],
        "no model named 'folk-tranformer'",
    )
    assert not (tmp_path / "tunes").exists()  # nothing written for a wrong name


def test_models_lists_the_shipped_models(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}
    assert rows["folk-transformer"][1] == "transformer" and rows["folk-gru"][1] == "gru"
    assert rows["folk-gru"][2].replace(",", "").isdigit() and "(test)" in rows["folk-gru"]
    assert "searched in this order: ./models, " in out


def test_render_writes_the_audio_format_asked_for(capsys, tmp_path, data_dir):
    import soundfile

    out = tmp_path / "audio"
    argv = ["render", str(data_dir / "three.abc"), "--out", str(out)]
    assert main([*argv, "--audio", "flac", "--mono", "--sample-rate", "22050"]) == 0
    files = sorted(out.glob("*.flac"))
    assert len(files) == 3 and not list(out.glob("*.wav"))
    info = soundfile.info(str(files[0]))
    assert (info.samplerate, info.channels) == (22050, 1)
    assert "three-001.flac" in capsys.readouterr().out
    assert main([*argv, "--no-wav", "--audio", "ogg"]) == 0
    assert capsys.readouterr().err.strip() == (
        "musicseq: warning: --audio has no effect with --no-wav (no audio is written)"
    )
    _one_line_error(capsys, 2, [*argv, "--sample-rate", "1000"], "sample rate must be")


def test_train_init_from_fine_tunes_and_warns_of_ignored_model_options(
    capsys, tmp_path, data_dir, tiny_model_dir
):
    out = tmp_path / "tuned"
    argv = ["train", "--data", str(data_dir / "three.abc"), "--init-from", str(tiny_model_dir)]
    argv += ["--units", "64", "--steps", "2", "--batch-size", "4", "--seq-len", "32"]
    assert main([*argv, "--out", str(out), "--quiet", "--no-tensorboard"]) == 0
    captured = capsys.readouterr()
    assert "musicseq: warning: --units has no effect with --init-from" in captured.err
    assert "fine-tuning" in captured.out
    assert (out / "vocab.json").read_text() == (tiny_model_dir / "vocab.json").read_text()
    tuned = json.loads((out / "musicseq.json").read_text())["model"]
    assert tuned == json.loads((tiny_model_dir / "musicseq.json").read_text())["model"]


@pytest.mark.slow
def test_a_shipped_model_by_name_from_another_directory(tmp_path):
    done = run_cli(
        "generate", "folk-gru", "--num", "1", "--max-len", "50", "--out", "X", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "X" / "tune_001.abc").read_text()
    assert text.startswith("X:1\n% musicseq ") and "model folk-gru, tune 1 of 1" in text
    done = run_cli("models", cwd=tmp_path)
    assert done.returncode == 0 and "folk-gru" in done.stdout and "folk-transformer" in done.stdout
