import warnings
from pathlib import Path

import pytest

from musicseq import __version__, api, render
from musicseq.errors import MusicseqWarning, UserError
from musicseq.notation import parse_tunebook


def test_tune_html_has_audio_when_it_renders(data_dir):
    tunes = api.load_tunes(data_dir / "three.abc")
    assert [t.title for t in tunes] == ["The Kesh", "Drowsy Maggie", "Si Bheag Si Mhor"]
    page = tunes[2]._repr_html_()
    assert "<audio controls" in page and "data:audio/wav;base64," in page
    assert "Si Bheag Si Mhor" in page and "K:D" in page
    table = tunes._repr_html_()
    assert table.count("<tr>") == 4 and "Drowsy Maggie" in table


def test_tune_html_degrades_to_text_when_it_cannot_render(monkeypatch):
    tune = api.Tune("X:1\nT:Broken\nM:4/4\nK:G\n")  # no music: nothing to render
    page = tune._repr_html_()
    assert "<audio" not in page and "could not be rendered" in page and "T:Broken" in page


def test_tune_files_and_piano_roll(tmp_path, data_dir):
    tune = api.load_tunes(data_dir / "three.abc")[0]
    midi = tune.to_midi(tmp_path / "kesh.mid")
    assert render.midi_info(midi).notes > 40
    wav = tune.to_wav(tmp_path / "kesh.wav", sample_rate=16000, mono=True)
    audio, rate = render.read_wav(wav)
    assert rate == 16000 and audio.shape[1] == 1
    figure = tune.piano_roll()
    assert figure.axes and figure.axes[0].get_title() == "The Kesh"


def test_generate_returns_a_tune_set(tiny_model_dir, tmp_path):
    loaded = api.load_model(tiny_model_dir)
    tunes = api.generate(loaded, num=2, max_len=150, seed=2, constrain=True)
    assert isinstance(tunes, api.TuneSet) and len(tunes) == 2
    assert all(t.check().headers_ok for t in tunes)
    results = tunes.render_all(tmp_path / "out", wav=False)
    assert all(r.midi is not None for r in results), [r.error for r in results]


def test_tunes_know_their_form(data_dir):
    tunes = api.load_tunes(data_dir / "three.abc")
    forms = [t.form() for t in tunes]
    assert all(f.valid for f in forms)
    assert "form (bars per part)" in tunes._repr_html_()
    summary = tunes.form_summary()
    assert summary["tunes"] == 3 and 0 <= summary["ends_on_tonic"] <= 1
    rows = tunes.form_summary(reference=[t.text for t in tunes])
    assert all(abs(distance) < 1e-9 for _, _, _, distance in rows if distance is not None)


def test_generated_tunes_are_numbered_and_say_how_they_were_made(tiny_model_dir):
    loaded = api.load_model(tiny_model_dir)
    shape = {"meter": "6/8", "key": "Ador", "form": "AB", "tempo": 116}
    tunes = api.generate(loaded, num=3, max_len=300, seed=4, top_k=7, constrain=True, **shape)
    for number, tune in enumerate(tunes, start=1):
        lines = tune.text.splitlines()
        assert lines[:4] == [
            f"X:{number}",
            f"% musicseq {__version__}, model {tiny_model_dir.name}, tune {number} of 3",
            "% seed 4, temperature 1, top-k 7, top-p 1, max-len 300",
            "% constrained: form AB, 8 bars a part, cadence tonic, repeat bias 1.5",
        ]
        header = lines[4 : lines.index("K:Ador") + 1]
        assert "M:6/8" in header and header[-2:] == ["Q:3/8=116", "K:Ador"]
        report = tune.check()
        assert report.ok, report.to_dict()  # the grammar's tune, still valid after stamping
        assert tune.number == number and tune.meter == "6/8"
    book = tunes.to_abc()
    assert [t.get("X") for t in parse_tunebook(book).tunes] == ["1", "2", "3"]


def test_api_and_cli_force_header_values_alike(tiny_model_dir):
    loaded = api.load_model(tiny_model_dir)
    free = api.generate(loaded, num=1, max_len=20, meter="2/2", tempo=90)
    assert "M:2/2\nL:1/8\nQ:1/2=90\nK:D\n" in free[0].text
    fixed = api.generate(loaded, num=1, max_len=20, fixed={"M": "3/4", "Q": "1/4=80"})
    assert "M:3/4\nL:1/8\nQ:1/4=80\nK:D\n" in fixed[0].text
    for constrain in (False, True):
        with pytest.raises(UserError, match="unknown key 'H#'"):
            api.generate(loaded, num=1, max_len=20, key="H#", constrain=constrain)
        with pytest.raises(UserError, match="tempo must be 20 to 400"):
            api.generate(loaded, num=1, max_len=20, tempo=1000, constrain=constrain)
    with pytest.warns(MusicseqWarning, match="ignored without constrain=True: form, bars"):
        api.generate(loaded, num=1, max_len=20, form="AABB", bars=16)


def test_tunes_render_to_the_audio_format_asked_for(tmp_path, data_dir):
    import soundfile

    tunes = api.load_tunes(data_dir / "three.abc")
    results = tunes.render_all(tmp_path, audio="ogg", sample_rate=22050, mono=True)
    assert [r.audio.name for r in results] == ["tune_001.ogg", "tune_002.ogg", "tune_003.ogg"]
    info = soundfile.info(str(results[0].audio))
    assert (info.format, info.samplerate, info.channels) == ("OGG", 22050, 1)
    flac = tunes[2].to_audio(tmp_path / "waltz.flac")
    assert soundfile.info(str(flac)).format == "FLAC"
    with pytest.raises(UserError, match="audio format"):
        tunes.render_all(tmp_path, audio="aiff")


def test_a_model_brings_its_own_sampling_settings_and_callers_override_them(
    tiny_model_dir, tmp_path
):
    import json
    import shutil

    from tests.conftest import run_cli

    model = tmp_path / "tuned"
    shutil.copytree(tiny_model_dir, model)
    meta = json.loads((model / "musicseq.json").read_text())
    meta["sampling"] = {"free": {"top_p": 0.9}, "constrained": {"repeat_bias": 0.75}}
    (model / "musicseq.json").write_text(json.dumps(meta))
    loaded = api.load_model(model)

    def settings(tunes):
        return [line for line in tunes[0].text.splitlines() if "top-p" in line or "bias" in line]

    free = api.generate(loaded, num=1, max_len=40, seed=2)
    assert settings(free) == ["% seed 2, temperature 1, top-k 0, top-p 0.9, max-len 40"]
    mine = api.generate(loaded, num=1, max_len=40, seed=2, top_p=1.0)  # the default, given
    assert "top-p 1," in settings(mine)[0]
    constrained = api.generate(loaded, num=1, max_len=300, seed=2, constrain=True, form="AB")
    assert "top-p 1," in settings(constrained)[0]
    assert settings(constrained)[1].endswith("repeat bias 0.75")
    # Its repeat bias was measured at top-p 1: changing top-p alone under constrain warns.
    with pytest.warns(
        MusicseqWarning, match=r"repeat bias \(0.75\) was measured at .*top-p 1; with top-p 0.9"
    ):
        nucleus = api.generate(loaded, num=1, max_len=300, seed=2, constrain=True, top_p=0.9)
    assert settings(nucleus)[1].endswith("repeat bias 0.75")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MusicseqWarning)
        assert loaded.sampling_settings(True, {"top_p": 0.9, "repeat_bias": 0.5}) == {
            "top_p": 0.9,
            "repeat_bias": 0.5,
        }
        assert loaded.sampling_settings(True, {"top_p": 1.0})["repeat_bias"] == 0.75
        assert loaded.sampling_settings(False, {"top_p": 0.8}) == {"top_p": 0.8}
    # The command line: an option given equal to its default still wins over the model's.
    given = run_cli(
        "generate",
        model,
        "--num",
        "1",
        "--max-len",
        "40",
        "--top-p",
        "1.0",
        "--out",
        "-",
        "--quiet",
    )
    assert given.returncode == 0, given.stderr
    assert "top-p 1," in given.stdout
    left = run_cli("generate", model, "--num", "1", "--max-len", "40", "--out", "-", "--quiet")
    assert "top-p 0.9," in left.stdout
    # evaluate too: the model's own top-p unless --top-p is given (plain sampling for a table).
    from musicseq.cli import main

    for extra, top_p in (([], 0.9), (["--top-p", "1.0", "--top-k", "0"], 1.0)):
        out = tmp_path / f"evaluated-{top_p}"
        argv = ["evaluate", str(model), "--num", "1", "--max-len", "40", "--out", str(out)]
        data = Path(__file__).parent / "data" / "three.abc"  # its own test set: all 3 tunes
        assert main([*argv, "--data", str(data), "--quiet", *extra]) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["unconstrained"]["sampling"]["top_p"] == top_p

    meta["sampling"] = {"free": {"top_q": 0.9}}
    (model / "musicseq.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="unknown sampling fields: top_q"):
        api.generate(api.load_model(model), num=1, max_len=20)
    meta["sampling"] = {"free": {"top_p": "0.9"}}
    (model / "musicseq.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="sampling top_p must be a float, got '0.9'"):
        api.generate(api.load_model(model), num=1, max_len=20)
