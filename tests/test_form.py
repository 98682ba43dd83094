"""Folk-tune form analysis on hand-made tunes whose parts, bars and figures are counted by hand."""

import json
from fractions import Fraction as F

import pytest

from musicseq.notation.form import (
    BarLine,
    Change,
    Note,
    analyze,
    bar_kind,
    compare,
    form_distribution,
    form_prior,
    format_comparison,
    profile_overlap,
    read_key,
    summarize,
    walk_events,
)
from tests.conftest import cpu_seconds_small_and_large

# AABB reel: an upbeat before the first repeat, first and second endings (the first ending's
# short last bar and the upbeat make one bar), a repeated B part whose bars 5-7 repeat 1-3.
REEL = """X:1
T:Reel with endings
M:C|
L:1/8
K:D
A2|:d2fd AdfA|d2fd gfed|c2ec Acec|dfed cBAG|
FAdf a2fa|gfed cdec|dfec d2cB|1 A2d2 d2:|2 A2d2 d2de||
|:fgaf gefd|e2ce Acea|fgaf gefd|edcB A4|
fgaf gefd|e2ce Acea|fgaf gefd|edcB d4:|
"""

# Jig in E dorian (F and C sharp), upbeats inside both parts.
JIG = """X:2
T:Dorian jig
M:6/8
L:1/8
K:Edor
B|E2E B2A|Bcd e2B|A2F D2F|A2B d2B|
E2E B2A|Bcd e2f|fed BAF|E3 E2:|
|:e|gfe fed|B2e e2f|gfe fed|B2A ABd|
gfe fed|B2e e2f|gfe dBA|B2A E2:|
"""

# Two unrepeated parts closed by double bars, each with an upbeat.
AB_TUNE = """X:3
T:Two parts
M:3/4
L:1/8
K:G
GA|B2 d2 B2|A2 G2 E2|D2 G2 B2|A4 GA|B2 d2 g2|f2 e2 d2|c2 A2 F2|G4||
Bc|d2 g2 g2|f2 a2 a2|g2 b2 b2|a4 Bc|d2 e2 d2|B2 A2 G2|A2 B2 A2|G4|]
"""

# A through-composed air: twelve different bars, no section marks.
AIR = """X:4
T:Air
M:3/4
L:1/4
K:Am
A B c|d e c|B A G|E2 A|c B A|G E D|E G A|B3|
c d e|d c B|A G E|A3|
"""

# 2/4, no section marks, counted by hand: bars 2-4 repeat earlier bars (3/8), bar 4 = bar 0.
HAND = "X:5\nT:Hand\nM:2/4\nL:1/8\nK:C\nCDEF|GABc|CDEF|GABc|CDEF|cBAG|FEDC|C4|]\n"


def test_reel_sections_pickup_and_endings():
    form = analyze(REEL)
    assert form.valid and not form.error
    assert form.label == "AABB"
    assert form.bars_per_section == (8, 8)
    assert [(s.repeated, s.has_endings) for s in form.sections] == [(True, True), (True, False)]
    assert form.all_sections_8_or_16 and form.repeat_marks
    assert form.tonic == "D" and form.mode == "maj"
    assert form.ends_on_tonic and form.final_bar_tonic
    assert form.form_key == "AABB/8" and form.meter == "2/2"
    # Written: upbeat, 7 body bars, 2 endings, 8 B bars; B bars 3, 5, 6, 7 repeat bars 1-2.
    assert form.bars == 18
    assert form.repeating_bars == 4 and form.bar_repetition == 4 / 18


def test_jig_in_dorian():
    form = analyze(JIG)
    assert form.label == "AABB" and form.bars_per_section == (8, 8)
    assert form.tonic == "E" and form.mode == "dor"
    assert form.ends_on_tonic and form.final_bar_tonic
    assert form.out_of_key == 0  # E dorian: F and C sharp, as written
    pitches = [e.pitch for e in walk_events(JIG) if isinstance(e, Note) and e.pitch]
    assert pitches[:4] == [71, 64, 64, 71]  # B E E B
    assert 66 in pitches and 65 not in pitches and 73 in pitches  # F#, never F; c#
    assert sum(form.pitch_class_profile) == pytest.approx(1)
    assert max(range(12), key=lambda i: form.pitch_class_profile[i]) == 0  # E, the tonic


def test_two_parts_with_double_bars():
    form = analyze(AB_TUNE)
    assert form.label == "AB" and form.bars_per_section == (8, 8)
    assert [s.repeated for s in form.sections] == [False, False]
    assert not form.repeat_marks and form.form_key == "AB/8"


def test_through_composed_air():
    form = analyze(AIR)
    assert form.label == "A" and form.bars_per_section == (12,)
    assert not form.all_sections_8_or_16 and not form.sections_inferred
    assert form.tonic == "A" and form.mode == "min" and form.ends_on_tonic
    assert form.form_key == "free"


def test_unmarked_tune_repeating_its_first_half_is_aa():
    half = "|".join(["GABc", "dcBA", "GFED", "C4", "EFGA", "BcdB", "cBAG", "c4"])
    form = analyze(f"X:6\nM:2/4\nL:1/8\nK:C\n{half}|{half}|]\n")
    assert form.label == "AA" and form.bars_per_section == (8, 8) and form.sections_inferred
    assert form.bar_repetition == 0.5  # the second half repeats the first ...
    assert form.bar_minus_4 == 0  # ... eight bars later, never four


def test_repetition_intervals_and_range_on_a_hand_made_tune():
    form = analyze(HAND)
    assert form.bars == 8
    assert form.bar_repetition == 3 / 8  # bars 2, 3, 4 repeat earlier bars
    assert form.bar_minus_4 == 1 / 4  # of bars 4-7, only bar 4 equals bar 0
    assert form.notes == 29 and form.intervals == 28
    assert form.stepwise == 24 / 28  # 21 in the bars, 3 across bar lines
    assert form.leaps_over_fifth == 2 / 28  # c -> C twice
    assert form.range_semitones == 12
    assert form.label == "A" and form.bars_per_section == (8,)
    profile = form.pitch_class_profile
    assert sum(profile) == pytest.approx(1) and profile[1] == 0
    assert profile[0] == pytest.approx((F(7, 8) + F(4, 8)) / F(29 + 3, 8))  # C: 7 eighths + C4


def test_accidentals_last_to_the_bar_line_and_apply_to_one_octave():
    events = walk_events("X:1\nM:4/4\nL:1/8\nK:G\n^c c C f =f f [Ac] _B,|c f z2 E,, A' a2-a2|\n")
    notes = [e for e in events if isinstance(e, Note)]
    pitches = [n.pitch for n in notes]
    assert pitches == [73, 73, 60, 78, 77, 77, 73, 58, 72, 78, None, 40, 81, 81, 81]
    assert notes[6].chord and not notes[5].chord  # [Ac]: the top note, c (still sharp)
    assert notes[10].duration == F(1, 4) and notes[-1].tied and not notes[-2].tied
    bars = [e for e in events if isinstance(e, BarLine)]
    assert [b.kind for b in bars] == ["plain", "plain", "end"]


def test_bar_kinds_endings_and_inline_changes():
    events = walk_events(
        "X:1\nM:2/4\nL:1/8\nK:G\n|:AB cd|1 ef ga:|2 ga fe||[M:3/4][K:Ador] ABc def|ABc [1 d2:|"
        "[2 e2 :: AB cd | ef ga |]\n"
    )
    bars = [(e.kind, e.ending) for e in events if isinstance(e, BarLine)]
    assert bars == [
        ("repeat_start", ""),
        ("plain", "1"),
        ("repeat_end", "2"),
        ("double", ""),
        ("plain", ""),
        ("plain", "1"),
        ("repeat_end", ""),
        ("plain", "2"),
        ("repeat_both", ""),
        ("plain", ""),
        ("final", ""),
        ("end", ""),
    ]
    changes = [(e.field, e.value) for e in events if isinstance(e, Change)]
    assert changes == [("M", "2/4"), ("K", "G"), ("M", "3/4"), ("K", "Ador")]
    assert [bar_kind(t) for t in ("|", "||", "|]", "[|", ":|:", "[|]", "")] == [
        "plain",
        "double",
        "final",
        "double",
        "repeat_both",
        "invisible",
        "end",
    ]


def test_broken_rhythm_and_tuplets_durations():
    notes = [
        e.duration
        for e in walk_events("X:1\nM:2/4\nL:1/8\nK:D\nA>B (3cde|\n")
        if isinstance(e, Note)
    ]
    assert notes == [F(3, 16), F(1, 16), F(1, 12), F(1, 12), F(1, 12)]


@pytest.mark.parametrize(
    "key, tonic, mode, sharps",
    [
        ("Ador", "A", "dor", 1),
        ("Edor", "E", "dor", 2),
        ("Gmix", "G", "mix", 0),
        ("Am", "A", "min", 0),
        ("A Mixolydian", "A", "mix", 2),
        ("Bb", "Bb", "maj", -2),
        ("F#m", "F#", "min", 3),
        ("Bphr", "B", "phr", 1),
        ("Glyd", "G", "lyd", 2),
        ("HP", "A", "mix", 2),
        ("D clef=treble", "D", "maj", 2),
    ],
)
def test_keys_are_mode_aware(key, tonic, mode, sharps):
    parsed = read_key(key)
    assert (parsed.tonic, parsed.mode) == (tonic, mode)
    assert sum(parsed.signature) == sharps
    assert len(parsed.scale) == 7


def test_explicit_key_accidentals_and_no_key():
    assert read_key("D =c").signature == (0, 0, 0, 1, 0, 0, 0)
    none = read_key("none")
    assert none.tonic is None and none.tonic_class is None
    form = analyze("X:1\nM:2/4\nL:1/8\nK:none\nABcd|\n")
    assert form.valid and form.ends_on_tonic is None and form.pitch_class_profile is None


@pytest.mark.parametrize(
    "key, last, on_tonic",
    [
        ("Ador", "A", True),
        ("Edor", "E", True),
        ("Gmix", "G", True),
        ("Am", "A", True),
        ("Ador", "G", False),
        ("G", "E", False),
    ],
)
def test_ends_on_tonic_in_modes(key, last, on_tonic):
    form = analyze(f"X:1\nM:2/4\nL:1/8\nK:{key}\nABcd|efgf|ed c2|{last}4|]\n")
    assert form.ends_on_tonic is on_tonic


def test_final_bar_cadence_without_ending_on_the_tonic():
    form = analyze("X:1\nM:2/4\nL:1/8\nK:G\nBcde|dcBA|GABc|GABd|]\n")
    assert form.ends_on_tonic is False and form.final_bar_tonic is True


def test_out_of_key_counts_a_deliberate_accidental():
    form = analyze("X:1\nM:4/4\nL:1/8\nK:G\nGABc d2 =f2|gfed BAG2|]\n")
    assert form.notes == 13 and form.out_of_key == 1 / 13  # =f in G major; the later f is f#


def test_inline_key_change_moves_the_tonic():
    form = analyze("X:1\nM:2/4\nL:1/8\nK:G\nGABc|d2 G2|[K:Ador] ABcd|e2 A2|]\n")
    assert form.tonic == "G" and form.ends_on_tonic is True  # A, the tonic of the key in force


def test_multi_voice_tune_reads_the_first_voice():
    text = "X:1\nM:2/4\nL:1/8\nV:1\nV:2\nK:D\n[V:1] d2 A2|d4|]\n[V:2] D,4|D,4|]\n"
    pitches = [e.pitch for e in walk_events(text) if isinstance(e, Note)]
    assert pitches == [74, 69, 74]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not abc at all",
        "X:1\nT:no key\nABC|\n",
        "X:1\nM:4/4\nK:G\n",  # no body
        "X:1\nM:9/0\nK:G\nABC|\n",  # bad meter
        "X:1\nM:4/4\nK:G\n\x00\x01|\n",
        "X:1\nM:4/4\nK:G\nz4 z4|\n",  # rests only
    ],
)
def test_malformed_input_gives_an_invalid_form_and_never_raises(text):
    form = analyze(text)
    assert form.valid is False and form.error
    assert form.form_key is None
    json.dumps(form.to_dict())


def test_garbage_in_the_music_is_still_analyzed():
    form = analyze("X:1\nM:4/4\nL:1/8\nK:G\nAB#c d2 [[ (( |:|:: ]] e|\n")
    assert form.valid and form.notes >= 4
    json.dumps(form.to_dict())


def test_summary_compare_and_distribution_of_fixtures():
    tunes = [REEL, JIG, AB_TUNE, AIR, HAND, "garbage"]
    summary = summarize(tunes)
    assert summary["tunes"] == 6 and summary["valid"] == 5
    assert summary["repeat_marks"] == 2 / 5
    assert summary["aabb_8"] == 2 / 5
    assert summary["forms"] == {"AABB": 0.4, "A": 0.4, "AB": 0.2}
    assert sum(summary["pitch_class_profile"]) == pytest.approx(1)
    json.dumps(summary)
    rows = compare(summary, summary)
    assert all(d == pytest.approx(0) for _, _, _, d in rows if d is not None)
    assert {name for name, *_ in rows} >= {"forms", "pitch_class_profile", "bar_repetition"}
    assert "bar_repetition" in format_comparison(rows)
    dist = form_distribution(tunes)
    assert dist["6/8"] == {"AABB/8": 1.0} and dist["2/4"] == {"A/8": 1.0}
    assert profile_overlap([0.5, 0.5], [1.0, 0.0]) == 0.5
    assert profile_overlap({"AB": 0.5, "A": 0.5}, {"AB": 1.0}) == 0.5


def test_form_prior_ships_with_the_package():
    prior = form_prior()
    assert {"6/8", "2/4", "2/2", "4/4", "3/4"} <= set(prior)
    for shares in prior.values():
        assert sum(shares.values()) == pytest.approx(1, abs=1e-3)
    assert max(prior["6/8"], key=prior["6/8"].get) == "AABB/8"


def test_corpus_test_split_figures_are_plausible(corpus_dir):
    from musicseq import corpus

    summary = summarize(corpus.load_split(corpus_dir, "test"))
    shown = {k: v for k, v in summary.items() if k not in ("pitch_class_profile", "forms")}
    print(json.dumps(shown, indent=1), summary["forms"])
    assert summary["valid"] == summary["tunes"] > 100
    assert 0.5 <= summary["repeat_marks"] <= 0.9
    assert 0.6 <= summary["ends_on_tonic"] <= 0.95
    assert 0.7 <= summary["final_bar_tonic"] <= 1.0
    assert 0.6 <= summary["sections_8_or_16"] <= 0.95
    assert 0.3 <= summary["aabb_8"] <= 0.6
    assert 0.15 <= summary["bar_repetition"] <= 0.4
    assert 0.08 <= summary["bar_minus_4"] <= 0.3
    assert 0.0 < summary["out_of_key"] <= 0.05
    assert 0.4 <= summary["stepwise"] <= 0.6
    assert 0.01 <= summary["leaps_over_fifth"] <= 0.1
    assert 12 <= summary["median_range"] <= 24
    assert max(summary["forms"], key=summary["forms"].get) == "AABB"


def test_analysis_time_grows_linearly():
    """Four times the sections cost about four times as much (a ratio, not a deadline)."""
    import random

    rng = random.Random(0)

    def text(n):
        bars = ("".join(rng.choice("ABCDEFG") for _ in range(8)) for _ in range(n))
        return "X:1\nM:4/4\nL:1/8\nK:G\n" + "".join(f"|:{b}:|" for b in bars) + "\n"

    small, large = cpu_seconds_small_and_large(analyze, text(1000), text(4000))
    assert large < 9 * max(small, 1e-3), (small, large)


def test_cadence_spans_mark_the_last_bar_of_each_part():
    from musicseq.notation.form import cadence_spans

    head = "X:1\nT:t\nM:6/8\nL:1/8\nK:G\n"
    cases = {
        '|:GAB cde|dBG G3:|\n|:"D"d2e !trill!f2g|gfe d3|]\n': ["dBG G3:|", "gfe d3|]"],
        # a final plain bar line: the bar before it; a double bar closes a part
        "GAB cde|dBG G3||\nd2e f2g|gfe d3|\n": ["dBG G3||", "gfe d3|"],
        # endings: each ending's last bar; a tune that stops without a bar line
        "D|GAB cde|1dBG G2:|2 dBG G2||\nd2e f2g|gfe d3\n": ["1dBG G2:|", "2 dBG G2||", "gfe d3"],
        # '::' both ends one part and starts the next; a part of one bar
        "GAB cde|dBG G3::d2e f2g|gfe d3:|\n": ["dBG G3::", "gfe d3:|"],
        "G6|]\n": ["G6|]"],
    }
    for body, expected in cases.items():
        text = head + body
        assert [text[a:b] for a, b in cadence_spans(text)] == expected, body
    assert cadence_spans("X:1\nK:G\n") == []
    assert cadence_spans("not a tune") == []
