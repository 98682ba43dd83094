import subprocess
import sys
from fractions import Fraction

import pytest

from musicseq.notation import (
    EmptyBodyError,
    EncodingError,
    FieldError,
    FragmentError,
    MissingKeyError,
    count_bars,
    decode_bytes,
    parse_length,
    parse_meter,
    parse_tune,
    parse_tunebook,
    split_tunebook,
)


def test_split_keeps_blank_lines_inside_and_last_tune_without_newline(data_dir):
    text = (data_dir / "tricky.abc").read_text(encoding="latin-1")
    preamble, tunes = split_tunebook(text)
    assert len(preamble) == 1 and "free text" in preamble[0][1]
    assert [line for line, _ in tunes] == [4, 17, 23, 29, 35, 40]
    assert "ba gf|e4|]" in tunes[0][1]  # after the blank lines, still the first tune
    assert tunes[-1][1].endswith("d3|]")


def test_tricky_tunebook_collects_typed_errors_with_lines(data_dir):
    result = parse_tunebook(decode_bytes((data_dir / "tricky.abc").read_bytes()), "tricky.abc")
    assert [t.title for t in result.tunes] == ["Blank Lines Inside", "Last Tune No Newline"]
    kinds = [(type(e), e.line) for e in result.errors]
    assert kinds == [
        (MissingKeyError, 17),
        (FieldError, 25),
        (EncodingError, 33),
        (EmptyBodyError, 35),
    ]
    assert str(result.errors[0]).startswith("tricky.abc:17: no K: field")


def test_normalisation_drops_metadata_comments_lyrics_and_blank_lines():
    tune = parse_tune(
        "X:3\nT:Tune  \nC:Composer\nZ:transcriber\nN:a note\nR:reel\nM:C|\nQ:1/4=120\nK:D % key\n"
        "ABcd|  \n\n%comment\nw:la la\ndefg|]\nW:words\n"
    )
    assert tune.text == "X:3\nT:Tune\nR:reel\nM:C|\nQ:1/4=120\nK:D\nABcd|\ndefg|]\n"


def test_header_fields_and_defaults():
    tune = parse_tune("X:1\nT:A\nT:B\nM:2/4\nK:Gmix\nAB|\n")
    assert tune.title == "A" and tune.key == "Gmix"
    assert tune.meter.bar == Fraction(1, 2)
    assert tune.unit_length == Fraction(1, 16)  # default for meters below 3/4
    assert parse_tune("X:1\nM:6/8\nK:G\nA|\n").unit_length == Fraction(1, 8)
    assert parse_tune("X:1\nK:G\nA|\n").meter.free


@pytest.mark.parametrize(
    "text,bar",
    [("C", Fraction(1)), ("C|", Fraction(1)), ("6/8", Fraction(3, 4)), ("(2+3)/8", Fraction(5, 8))],
)
def test_parse_meter(text, bar):
    assert parse_meter(text).bar == bar


@pytest.mark.parametrize("text", ["seven/eight", "3/0", "4", "1/x"])
def test_bad_meter_and_length(text):
    with pytest.raises(ValueError):
        parse_meter(text)
    with pytest.raises(ValueError):
        parse_length(text)


def test_title_is_transliterated_but_music_must_be_ascii():
    assert parse_tune("X:1\nT:Ó Raghallaigh\nK:G\nAB|\n").title == "O Raghallaigh"
    with pytest.raises(EncodingError):
        parse_tune("X:1\nK:G\nAB é|\n")


def test_field_with_music_on_the_same_line_becomes_inline():
    tune = parse_tune("X:1\nM:6/8\nK:D\nABA|\nM:9/8 EDC DA,B, CDE|\n")
    assert tune.body[-1] == "[M:9/8] EDC DA,B, CDE|"


def test_fragment_before_first_tune_is_reported():
    result = parse_tunebook("ABc dBA|GAB c2d|\nX:1\nK:G\nAB|\n", "f.abc")
    assert len(result.tunes) == 1
    assert isinstance(result.errors[0], FragmentError)


def test_decode_utf16_and_latin1():
    text = "X:1\nT:Café\nK:G\nAB|\n"
    assert decode_bytes(text.encode("utf-16")) == text
    assert decode_bytes(text.encode("latin-1")) == text


def test_count_bars():
    tune = parse_tune('X:1\nM:4/4\nK:G\n|:"G|D"ABcd|efga:|\n|1 abc2|]\n')
    assert count_bars(tune) == 3  # ABcd, efga and the ending abc2 (bar lines: 5)


def test_mit_lab_corpus_is_804_tunes_no_fragments(data_dir):
    result = parse_tunebook((data_dir / "irish.abc").read_text(encoding="ascii"), "irish.abc")
    assert len(result.tunes) == 804
    assert result.errors == []


def test_notation_does_not_import_tensorflow():
    code = "import musicseq, musicseq.notation, musicseq.corpus, musicseq.vocab, sys; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stamp_tune_numbers_comments_and_sets_header_fields():
    from musicseq.notation.tunebook import stamp_tune

    text = "X:1\nT:Reel\nM:4/4\nL:1/8\nK:D\nABcd efga|\n"
    stamped = stamp_tune(text, 7, ["made here", "seed 1"], {"Q": "1/4=120"})
    assert stamped == (
        "X:7\n% made here\n% seed 1\nT:Reel\nM:4/4\nL:1/8\nQ:1/4=120\nK:D\nABcd efga|\n"
    )
    assert stamp_tune(stamped, 7, [], {"Q": "1/4=96"}).count("Q:") == 1  # replaced, not added
    assert stamp_tune("T:No number\nK:G\nGAB|\n", 2) == "X:2\nT:No number\nK:G\nGAB|\n"
    body_field = "X:1\nK:G\nGAB|\nQ:1/4=60\nc|\n"  # a Q: in the body is the music's own
    assert stamp_tune(body_field, 1, [], {"Q": "1/4=90"}).startswith("X:1\nQ:1/4=90\nK:G\n")
    parsed = parse_tune(stamped)
    assert parsed.get("X") == "7" and parsed.get("Q") == "1/4=120"


@pytest.mark.parametrize(
    "meter, beat",
    [("6/8", "3/8"), ("9/8", "3/8"), ("12/8", "3/8"), ("3/8", "1/8"), ("2/2", "1/2")]
    + [("C|", "1/2"), ("C", "1/4"), ("3/4", "1/4"), ("2/4", "1/4"), ("none", "1/4"), (None, "1/4")],
)
def test_tempo_beat_follows_the_meter(meter, beat):
    from musicseq.notation.tunebook import tempo_beat

    assert tempo_beat(meter) == beat
