"""Rendering: ABC → MIDI (abc2midi, else music21), MIDI → WAV (fluidsynth, else pretty_midi)
and ABC → SVG score (abcm2ps; no fallback).

External programs run from an argument list (no shell), with a timeout; a failure raises
:class:`RenderError` carrying the program's stderr. Every output is written atomically.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicseq import fileio
from musicseq.config import RenderConfig
from musicseq.notation.durations import broken_factors, fraction_text, length_multiplier

SAMPLE_RATE = RenderConfig.sample_rate
# Audio file suffixes and their soundfile (libsndfile) format and subtype; .wav is written
# by the standard library's wave module.
AUDIO_SUFFIXES = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}
WRITE_BLOCK = 16384  # frames per soundfile write
PEAK = 0.89  # normalise WAVs to about -1 dBFS
TAIL_SECONDS = 1.0  # keep at most this much release after the last MIDI event
MAX_STDERR = 2000  # characters of a program's output kept for an error message
MAX_OUTPUT = 64 * 1024  # bytes of a program's output ever read back


class RenderError(Exception):
    """A tune could not be rendered; the message says which program failed and why."""


@dataclass(frozen=True)
class MidiInfo:
    notes: int
    seconds: float


_warned: set[str] = set()


def _notice(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print(f"notice: {message}", file=sys.stderr)


def _run(args: list[str], timeout: float, cwd: str | Path | None = None) -> str:
    """Run a program (no shell) with a timeout; returns the tail of its stdout + stderr.

    Output goes to a temporary file rather than a pipe, so a program that prints without
    end cannot fill memory; only the last ``MAX_OUTPUT`` bytes are read back.
    """
    with tempfile.TemporaryFile() as output:
        try:
            subprocess.run(
                args,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
                cwd=cwd,
            )
        except subprocess.TimeoutExpired as exc:
            raise RenderError(f"{Path(args[0]).name} timed out after {timeout:.0f} s") from exc
        except OSError as exc:
            raise RenderError(f"cannot run {args[0]}: {exc}") from exc
        size = output.seek(0, os.SEEK_END)
        output.seek(max(0, size - MAX_OUTPUT))
        return output.read().decode("utf-8", "replace").strip()[-MAX_STDERR:]


def _summary(output: str) -> str:
    """The last two non-empty lines of a program's output, on one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return " / ".join(lines[-2:]) or "(no output)"


def midi_info(path: str | Path) -> MidiInfo:
    """Notes and duration of a MIDI file (mido); raises :class:`RenderError` if unreadable."""
    import mido

    try:
        midi = mido.MidiFile(str(path))
        notes = sum(
            1
            for track in midi.tracks
            for msg in track
            if msg.type == "note_on" and msg.velocity > 0
        )
        return MidiInfo(notes, float(midi.length))
    except Exception as exc:  # mido raises OSError, EOFError, ValueError, KeyError…
        raise RenderError(f"unreadable MIDI file {path}: {exc}") from exc


# abc2midi 4.84 does not apply broken rhythm to a pair with a decoration on either note
# (``.c>d``, ``c>.d``, ``B<~A``; "Cannot apply broken rhythm") or a slur's end between
# (``(c.d)>e``): it plays them evenly, or counts the bar wrong. The corpus writes ``>.`` 554
# times and a decorated first note 556. Its input therefore gets every broken pair of two
# notes written out as lengths (``c3/2.d/``), which is the same music.
_NOTE = r"[=^_]{0,2}[A-Ga-gxz][,']*"
_SUFFIX = r"\d*(?:/\d*)*"
_BETWEEN = r"(?:[.~HLMOPSTUkuvy( ]|![^!\n]*!|\"[^\"\n]*\")*"
_BROKEN_PAIR = re.compile(rf"({_NOTE})({_SUFFIX})(\)*)(<<?|>>?)({_BETWEEN})({_NOTE})({_SUFFIX})")
_KEY_LINE = re.compile(r"^K:.*$", re.M)


def _pair_as_lengths(match: re.Match) -> str:
    first, first_len, close, symbol, between, second, second_len = match.groups()
    a, b = broken_factors(symbol)
    x, y = length_multiplier(first_len), length_multiplier(second_len)
    if x <= 0 or y <= 0:  # a malformed length: leave it for abc2midi to report
        return match.group(0)
    return f"{first}{fraction_text(x * a)}{close}{between}{second}{fraction_text(y * b)}"


def _pitch(n: int) -> str:
    """A note's accidental, letter and octave marks as the named groups acc{n} l{n} o{n}."""
    return rf"(?P<acc{n}>[=^_]{{0,2}})(?P<l{n}>[A-Ga-g])(?P<o{n}>[,']*)"


# A tie joins two notes of one pitch; the corpus also writes it between two pitches (``B-c``,
# 730 times against 425 true ties: a slur in its old tunebooks), and the model learnt it.
# abcm2ps draws no tie there ("Bad tie") and abc2midi reports one error each ("Could not
# find note to be tied"), so both get such a pair as a slur, ``(Bc)``.
_TIED = re.compile(
    rf"(?P<deco>[.~HLMOPSTUkuvy]*)(?P<a>{_pitch(1)}{_SUFFIX})-(?P<gap>[ |]*)"
    rf"(?P<b>{_pitch(2)}{_SUFFIX})"
)
# The same with a slur's end, a tuplet or decorations around the '-' (``(dc)-B``,
# ``B4- (3.A``): there the '-' is dropped.
_TIED_AMONG = re.compile(
    rf"(?P<a>{_pitch(1)}{_SUFFIX})(?P<close>\)*)-"
    rf"(?P<gap>(?:[ |(.~HLMOPSTUkuvy]|\(\d)*)(?P<b>{_pitch(2)})"
)


def _one_pitch(match: re.Match) -> bool:
    same = match["l1"] == match["l2"] and match["o1"] == match["o2"]
    return same and (not match["acc2"] or match["acc2"] == match["acc1"])


def _tie_or_slur(match: re.Match) -> str:
    if _one_pitch(match):
        return match.group(0)
    pair = f"{match['deco']}{match['a']}{match['gap']}{match['b']}"
    text, start, end = match.string, match.start(), match.end()
    if text[start - 1 : start] == "(" and text[end : end + 1] == ")":
        return pair  # (B-c): already slurred
    return f"({pair})"


def _tie_or_nothing(match: re.Match) -> str:
    if _one_pitch(match):
        return match.group(0)
    return f"{match['a']}{match['close']}{match['gap']}{match['b']}"


def _in_body(text: str, *rewrites: tuple[re.Pattern, object]) -> str:
    """``text`` with each (pattern, replacement) applied after its first ``K:`` line."""
    key = _KEY_LINE.search(text)
    at = key.end() if key else 0
    body = text[at:]
    for pattern, replacement in rewrites:
        body = pattern.sub(replacement, body)
    return text[:at] + body


_TIES = ((_TIED, _tie_or_slur), (_TIED_AMONG, _tie_or_nothing))


def for_abcm2ps(text: str) -> str:
    """``text`` as abcm2ps should typeset it: ties between two pitches drawn as slurs."""
    return _in_body(text, *_TIES)


def for_abc2midi(text: str) -> str:
    """``text`` as abc2midi should read it: the same music, its broken pairs of two notes
    written out as lengths and its ties between two pitches as slurs, after the first ``K:``
    line (the ABC file itself is never changed). Chords and chained pairs are left as
    written."""
    return _in_body(text, (_BROKEN_PAIR, _pair_as_lengths), *_TIES)


def abc_to_midi(abc_path: str | Path, midi_path: str | Path, timeout: float = 30.0) -> str:
    """Convert the first tune of ``abc_path`` to ``midi_path``; returns the backend used."""
    exe = shutil.which("abc2midi")
    if exe:
        text = Path(abc_path).read_bytes().decode("latin-1")  # any bytes, back unchanged
        readable = for_abc2midi(text)
        with fileio.atomic_path(midi_path) as tmp, tempfile.TemporaryDirectory() as scratch:
            source = Path(abc_path)
            if readable != text:
                source = Path(scratch) / source.name
                source.write_bytes(readable.encode("latin-1"))
            output = _run([exe, str(source), "-o", str(tmp)], timeout)
            # abc2midi exits 0 even when it wrote nothing: the file is the real verdict.
            if not tmp.exists() or tmp.stat().st_size == 0:
                raise RenderError(f"abc2midi wrote no MIDI for {abc_path}: {_summary(output)}")
            info = midi_info(tmp)
            if info.notes == 0:
                raise RenderError(f"abc2midi wrote a MIDI file without notes for {abc_path}")
        return "abc2midi"
    _notice(
        "abc2midi",
        "abc2midi not found (Debian package abcmidi); using music21, which is slower "
        "and expands ':|' repeats wrongly on some tunes",
    )
    _music21_to_midi(Path(abc_path).read_text(encoding="ascii", errors="replace"), midi_path)
    return "music21"


def _music21_to_midi(text: str, midi_path: str | Path) -> None:
    from music21 import converter, midi

    try:
        score = converter.parseData(text, format="abc")
        data = midi.translate.music21ObjectToMidiFile(score).writestr()
    except Exception as exc:  # music21 raises a wide variety of errors on bad ABC
        raise RenderError(f"music21 could not convert the tune: {exc}") from exc
    with fileio.atomic_path(midi_path) as tmp:
        tmp.write_bytes(data)
        if midi_info(tmp).notes == 0:
            raise RenderError("music21 produced a MIDI file without notes")


def abc_to_svg(text: str, timeout: float = 30.0) -> str:
    """Typeset one ABC tune with abcm2ps; returns the SVG document of its score.

    abcm2ps runs in secure mode (``-S``: no file inclusion, no PostScript) inside a scratch
    directory, so a ``default.fmt`` in the caller's directory cannot restyle the score.
    Raises :class:`RenderError` when abcm2ps is missing or writes no score (it exits 0 on
    input without a tune, and 1 on errors it has skipped while still writing one).
    """
    exe = shutil.which("abcm2ps")
    if not exe:
        message = "abcm2ps not found (Debian package abcm2ps): scores are not typeset"
        _notice("abcm2ps", message)
        raise RenderError(message)
    with tempfile.TemporaryDirectory(prefix="musicseq-score-") as tmp:
        Path(tmp, "tune.abc").write_text(for_abcm2ps(text), encoding="utf-8", errors="replace")
        # -g: one SVG per tune (named score001.svg, ...), -q: quiet, -S: secure mode
        output = _run([exe, "-g", "-q", "-S", "-O", "score.svg", "tune.abc"], timeout, cwd=tmp)
        scores = sorted(Path(tmp).glob("score*.svg"))
        if not scores:
            raise RenderError(f"abcm2ps typeset no score: {_summary(output)}")
        return scores[0].read_text(encoding="utf-8", errors="replace")


def soundfont_path() -> Path:
    """The General MIDI soundfont bundled in the pretty_midi wheel."""
    import importlib.util

    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.submodule_search_locations:
        raise RenderError("pretty_midi is not installed; it provides the soundfont")
    return Path(next(iter(spec.submodule_search_locations))) / "TimGM6mb.sf2"


def midi_to_audio(
    midi_path: str | Path,
    audio_path: str | Path,
    timeout: float = 120.0,
    sample_rate: int = SAMPLE_RATE,
    mono: bool = False,
) -> str:
    """Render ``midi_path`` to normalised audio in the format of ``audio_path``'s suffix
    (:data:`AUDIO_SUFFIXES`: 16-bit WAV or FLAC, Ogg Vorbis, MP3); returns the backend used."""
    if Path(audio_path).suffix.lower() not in AUDIO_SUFFIXES:
        raise RenderError(f"unknown audio format {Path(audio_path).suffix!r} of {audio_path}")
    info = midi_info(midi_path)
    exe = shutil.which("fluidsynth")
    if exe:
        with tempfile.TemporaryDirectory(prefix="musicseq-") as tmp_dir:
            raw = Path(tmp_dir) / "raw.wav"
            args = [
                exe,
                "-ni",
                "-q",
                "-g",
                "1.0",
                "-r",
                str(sample_rate),
                "-F",
                str(raw),
                str(soundfont_path()),
                str(midi_path),
            ]
            output = _run(args, timeout)
            if not raw.exists() or raw.stat().st_size <= 44:
                raise RenderError(f"fluidsynth wrote no audio: {_summary(output)}")
            audio, rate = read_wav(raw)
        backend = "fluidsynth"
    else:
        _notice("fluidsynth", "fluidsynth not found; using pretty_midi's sine-wave synthesis")
        import pretty_midi

        try:
            audio = pretty_midi.PrettyMIDI(str(midi_path)).synthesize(fs=sample_rate)
        except Exception as exc:
            raise RenderError(f"pretty_midi could not synthesise {midi_path}: {exc}") from exc
        audio, rate = audio[:, None], sample_rate
        backend = "pretty_midi"
    # Keep the music plus a short release; fluidsynth's reverb tail can run long.
    audio = audio[: int((info.seconds + TAIL_SECONDS) * rate)]
    if mono:
        audio = audio.mean(axis=1, keepdims=True)
    write_audio(audio_path, normalise(audio), rate)
    return backend


midi_to_wav = midi_to_audio  # its name from when every rendering was a WAV


def normalise(audio: np.ndarray) -> np.ndarray:
    """Scale to a peak of ``PEAK`` (silence stays silent)."""
    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio * (PEAK / peak) if peak > 0 else audio


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Float samples ``(frames, channels)`` in [-1, 1] and the sample rate of a 16-bit WAV."""
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2:
            raise RenderError(f"{path}: expected 16-bit samples")
        frames = handle.readframes(handle.getnframes())
        data = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
        return data.reshape(-1, handle.getnchannels()), handle.getframerate()


def write_wav(path: str | Path, audio: np.ndarray, rate: int) -> None:
    audio = audio if audio.ndim == 2 else audio[:, None]
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with fileio.atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as handle:
            handle.setnchannels(pcm.shape[1])
            handle.setsampwidth(2)
            handle.setframerate(rate)
            handle.writeframes(pcm.tobytes())


def write_audio(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """Write ``(frames, channels)`` float samples as the suffix of ``path`` says: WAV with
    the standard library, FLAC, Ogg Vorbis and MP3 with soundfile (its wheel bundles
    libsndfile and its encoders)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".wav":
        write_wav(path, audio, rate)
        return
    import soundfile

    kind, subtype = AUDIO_SUFFIXES[suffix]
    audio = np.clip(audio if audio.ndim == 2 else audio[:, None], -1.0, 1.0)
    with fileio.atomic_path(path) as tmp:
        try:
            with soundfile.SoundFile(
                str(tmp), "w", rate, audio.shape[1], subtype, format=kind
            ) as handle:
                # In blocks: libvorbis allocates a whole write on the stack, and one call with
                # a tune's seconds of audio overflowed it (a segmentation fault).
                for start in range(0, len(audio), WRITE_BLOCK):
                    handle.write(audio[start : start + WRITE_BLOCK])
        except (RuntimeError, TypeError, ValueError) as exc:  # libsndfile refused it
            raise RenderError(f"cannot write {kind} audio at {rate} Hz: {exc}") from exc


def audio_seconds(path: str | Path) -> float:
    """Duration of a rendered audio file of any of :data:`AUDIO_SUFFIXES`."""
    if Path(path).suffix.lower() == ".wav":
        return wav_seconds(path)
    import soundfile

    return soundfile.info(str(path)).duration


def wav_seconds(path: str | Path) -> float:
    with wave.open(str(path), "rb") as handle:
        return handle.getnframes() / handle.getframerate()


@dataclass
class Rendered:
    abc: Path
    midi: Path | None = None
    audio: Path | None = None  # .wav, .flac, .ogg or .mp3
    seconds: float | None = None
    error: str | None = None

    @property
    def wav(self) -> Path | None:
        """The audio file (its name from when it was always a WAV)."""
        return self.audio


def render_file(
    abc_path: str | Path, out_dir: str | Path, wav: bool = True, config: RenderConfig | None = None
) -> Rendered:
    """Render one ``.abc`` file to ``out_dir/<stem>.mid`` and, unless ``wav`` is False, to
    audio as ``config`` says (default: a stereo 44.1 kHz ``.wav``); errors are captured."""
    abc_path, out = Path(abc_path), Path(out_dir)
    config = config or RenderConfig()
    result = Rendered(abc_path)
    try:
        midi_path = out / f"{abc_path.stem}.mid"
        abc_to_midi(abc_path, midi_path)
        result.midi = midi_path
        result.seconds = midi_info(midi_path).seconds
        if wav:
            audio_path = out / f"{abc_path.stem}.{config.audio}"
            midi_to_audio(midi_path, audio_path, sample_rate=config.sample_rate, mono=config.mono)
            result.audio = audio_path
    except (RenderError, OSError) as exc:
        result.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return result


def piano_roll_figure(midi_paths: list[Path], titles: list[str] | None = None, fs: int = 20):
    """A matplotlib figure with one piano roll (pitch × time) per MIDI file.

    A :class:`matplotlib.figure.Figure` made without pyplot: the caller's backend (a
    notebook's inline plots) is left alone.
    """
    import pretty_midi
    from matplotlib.figure import Figure

    count = max(len(midi_paths), 1)
    fig = Figure(figsize=(10, 2.2 * count))
    axes = fig.subplots(count, 1, squeeze=False)
    for ax, path, title in zip(axes[:, 0], midi_paths, titles or [p.stem for p in midi_paths]):
        roll = pretty_midi.PrettyMIDI(str(path)).get_piano_roll(fs=fs)  # (128 pitches, frames)
        pitches = np.nonzero(roll.sum(axis=1))[0]
        low, high = (int(pitches.min()) - 2, int(pitches.max()) + 3) if len(pitches) else (48, 84)
        ax.imshow(
            roll[low:high] > 0,
            aspect="auto",
            origin="lower",
            cmap="Greys",
            interpolation="nearest",
            extent=(0, roll.shape[1] / fs, low, high),
        )
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("MIDI pitch")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    return fig
