import shutil

import numpy as np
import pytest

from musicseq import render


@pytest.fixture
def kesh(tmp_path, data_dir):
    from musicseq.notation import parse_tunebook

    tune = parse_tunebook((data_dir / "three.abc").read_text(), "three.abc").tunes[0]
    path = tmp_path / "kesh.abc"
    path.write_text(tune.text)
    return path


def _check(result):
    assert result.error is None
    info = render.midi_info(result.midi)
    assert info.notes > 40 and 5 < info.seconds < 120
    seconds = render.wav_seconds(result.wav)
    assert abs(seconds - info.seconds) <= 0.1 * info.seconds
    audio, rate = render.read_wav(result.wav)
    assert rate == render.SAMPLE_RATE and 0.5 < abs(audio).max() <= 1.0


def test_render_with_system_tools(kesh, tmp_path):
    if not (shutil.which("abc2midi") and shutil.which("fluidsynth")):
        pytest.skip("abc2midi/fluidsynth not installed (make setup installs them as root)")
    result = render.render_file(kesh, tmp_path / "out")
    _check(result)
    # abc2midi plays both repeats: 2 parts x 2 x 8 bars of 6/8 at the default tempo
    assert render.midi_info(result.midi).notes >= 4 * 8 * 4


def test_render_fallbacks_without_system_tools(kesh, tmp_path, monkeypatch):
    monkeypatch.setattr(render.shutil, "which", lambda _name: None)
    result = render.render_file(kesh, tmp_path / "out")
    _check(result)


def test_abc2midi_that_writes_nothing_is_an_error(tmp_path):
    if not shutil.which("abc2midi"):
        pytest.skip("abc2midi not installed")
    bad = tmp_path / "bad.abc"
    bad.write_text("X:1\nT:nothing\n")
    result = render.render_file(bad, tmp_path / "out")
    assert result.error and "abc2midi" in result.error
    assert not list((tmp_path / "out").glob("*.mid"))


def _onsets(midi_path) -> list[int]:
    import mido

    onsets, now = [], 0
    for message in mido.MidiFile(str(midi_path)).merged_track:
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            onsets.append(now)
    return onsets


def test_abc2midi_plays_a_broken_pair_with_a_decoration_in_its_rhythm(tmp_path):
    # abc2midi 4.84 refuses c>.d ("Cannot apply broken rhythm") and plays c d evenly; the
    # corpus writes '>.' 554 times. Its input gets such pairs as lengths; the ABC file is kept.
    if not shutil.which("abc2midi"):
        pytest.skip("abc2midi not installed (make setup installs it as root)")
    head = "X:1\nT:t\nM:4/4\nL:1/8\nK:C\n"
    decorated = tmp_path / "decorated.abc"
    decorated.write_text(head + ".c>d e<.f (g>>.f) (3.a>bc|B,/>.=C/ D3 E4|(c.d)>e A5|c8|]\n")
    plain = tmp_path / "plain.abc"
    plain.write_text(head + "c>d e<f (g>>f) (3a>bc|B,/>=C/ D3 E4|(cd)>e A5|c8|]\n")
    render.abc_to_midi(decorated, tmp_path / "decorated.mid")
    render.abc_to_midi(plain, tmp_path / "plain.mid")
    assert _onsets(tmp_path / "decorated.mid") == _onsets(tmp_path / "plain.mid")
    assert ">." in decorated.read_text()
    assert render.for_abc2midi("c2>.d2 (3a<!trill!bc") == "c3.d (3a/!trill!b3/2c"
    assert render.for_abc2midi("~c>d e<<Hf g)>(a") == "~c3/2d/ e/4Hf7/4 g3/2)(a/"
    assert render.for_abc2midi("T:A>B\nK:C\n[ce]>.d") == "T:A>B\nK:C\n[ce]>.d"  # as written


def test_a_tie_between_two_pitches_reaches_the_renderers_as_a_slur(tmp_path):
    # The corpus writes B-c for a slur (730 times); abcm2ps and abc2midi call it a bad tie.
    head = "X:1\nT:A-B\nM:4/4\nL:1/8\nK:G\n"
    body = "B2B-c d2c-B|c2e-|c ^c-c A2-|A2 (dc)-B B- (3.A.B.c|~d4-c4|(B-c) z6|]\n"
    slurred = "B2(Bc) d2(cB)|c2(e|c) ^c-c A2-|A2 (dc)B B (3.A.B.c|(~d4c4)|(Bc) z6|]\n"
    assert render.for_abcm2ps(head + body) == head + slurred
    assert render.for_abc2midi(head + body) == head + slurred
    if not (shutil.which("abcm2ps") and shutil.which("abc2midi")):
        pytest.skip("abcm2ps/abc2midi not installed (make setup installs them as root)")
    for text, bad in ((head + body, 7), (head + slurred, 0)):
        (tmp_path / "t.abc").write_text(text)
        score = render._run(["abcm2ps", "-q", "-g", "-O", "s.svg", "t.abc"], 30, cwd=tmp_path)
        midi = render._run(["abc2midi", "t.abc", "-o", "t.mid"], 30, cwd=tmp_path)
        assert score.count("Bad tie") == bad, score
        assert ("Could not find note to be tied" in midi) == bool(bad), midi
        assert bad or ("Error" not in midi and "error" not in score), (midi, score)
        assert bad or "Slur within slur" not in midi, midi


def test_hanging_program_is_killed(monkeypatch):
    with pytest.raises(render.RenderError, match="timed out"):
        render._run(["sleep", "5"], timeout=0.2)


@pytest.mark.parametrize("audio", ["flac", "ogg", "mp3"])
def test_render_to_lighter_audio(kesh, tmp_path, audio):
    import soundfile

    from musicseq.config import RenderConfig

    wav = render.render_file(kesh, tmp_path / "wav")
    config = RenderConfig(audio=audio, sample_rate=22050, mono=True)
    result = render.render_file(kesh, tmp_path / audio, config=config)
    assert result.error is None and result.audio == tmp_path / audio / f"kesh.{audio}"
    assert result.wav == result.audio  # the older name of the field
    info = soundfile.info(str(result.audio))
    assert (info.samplerate, info.channels) == (22050, 1)
    assert abs(render.audio_seconds(result.audio) - render.wav_seconds(wav.audio)) < 0.2
    assert result.audio.stat().st_size < wav.audio.stat().st_size / 3


def test_long_ogg_is_written_in_blocks(tmp_path):
    """One soundfile write of a whole tune made libvorbis overflow its stack (a segfault)."""
    seconds, rate = 60, 44100
    t = np.arange(seconds * rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None].repeat(2, axis=1)
    render.write_audio(tmp_path / "long.ogg", tone, rate)
    assert abs(render.audio_seconds(tmp_path / "long.ogg") - seconds) < 0.1


def test_render_config_is_checked():
    from musicseq.config import RenderConfig

    with pytest.raises(ValueError, match="audio format"):
        RenderConfig(audio="aiff").validate()
    with pytest.raises(ValueError, match="sample rate"):
        RenderConfig(sample_rate=4000).validate()
    with pytest.raises(render.RenderError, match="unknown audio format"):
        render.midi_to_audio("x.mid", "x.aiff")
