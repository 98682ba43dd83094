"""Transposition: every note moves by the interval, the key is spelled as musicians spell it."""

import pytest

from musicseq.corpus import read_tunebook
from musicseq.notation.form import Note, walk_events
from musicseq.notation.transpose import augment, common_shifts, transpose


def _notes(text):
    return [(e.pitch, e.duration) for e in walk_events(text) if isinstance(e, Note)]


def test_pitches_move_and_rhythm_stays_on_every_fixture_tune(data_dir):
    tunes = [t.text for t in read_tunebook(data_dir / "irish.abc").tunes]
    moved = 0
    for text in tunes[:150]:
        for shift in common_shifts(text):
            out = transpose(text, shift)
            assert out is not None
            before, after = _notes(text), _notes(out)
            assert [d for _, d in before] == [d for _, d in after]
            assert all(
                (a is None and b is None) or b - a == shift for (a, _), (b, _) in zip(before, after)
            ), (shift, text, out)
            assert transpose(out, -shift) == text  # and back, character for character
            moved += 1
    assert moved > 500


def test_spelling_of_keys_accidentals_and_chord_symbols():
    tune = 'X:1\nT:t\nM:4/4\nL:1/8\nK:D\n"D"d2 =c2 "A7"^c2 B,A,|"Em/G"G,4 [K:Ador] =f2 g2|\n'
    up = transpose(tune, 2)
    assert "K:E\n" in up
    body = up.split("K:E\n")[1]
    # D major -> E major: c natural (a semitone below the signature's c#) -> d natural, the
    # redundant ^c -> ^d, B, -> C (sharp by the signature); A dorian -> B dorian: =f -> =g
    assert body.startswith('"E"e2 =d2 "B7"^d2 CB,|"F#m/A"A,4 [K:Bdor] =g2 a2|')
    assert "K:F\n" in transpose(tune, 3)  # not E#
    assert "K:Bb\n" in transpose(tune, -4)  # not A#
    assert transpose(tune.replace("K:D", "K:none"), 2) is None
    assert transpose(tune.replace("K:D", "K:HP"), 2) is None
    assert transpose(tune, 0) == tune


def test_common_shifts_keep_keys_with_few_sharps_or_flats():
    tune = "X:1\nK:G\nGABc|\n"
    keys = {transpose(tune, s).split("K:")[1].split("\n")[0] for s in common_shifts(tune)}
    assert keys == {"C", "D", "Eb", "E", "F", "Ab", "A", "Bb"}  # not F#/Gb, B, C#/Db
    assert "G" not in keys and len(keys) == len(common_shifts(tune))


@pytest.mark.parametrize("copies", [0, 2])
def test_augment_adds_copies_deterministically(copies):
    texts = ["X:1\nK:G\nGABc|\n", "X:2\nK:none\nGABc|\n", "X:3\nK:Ador\nABcd|\n"]
    out = augment(texts, copies, seed=5)
    assert out[:3] == texts and len(out) == 3 + 2 * copies
    assert out == augment(texts, copies, seed=5)
