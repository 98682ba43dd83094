"""The ABC checker on hand-made tunes whose bar lengths are computed by hand."""

from fractions import Fraction as F

import pytest

from musicseq.notation.checker import check_text
from tests.conftest import cpu_seconds_small_and_large


def _bars(body, meter="4/4", length="1/8"):
    report = check_text(f"X:1\nT:t\nM:{meter}\nL:{length}\nK:G\n{body}\n")
    return report, [b.duration for b in report.bars]


@pytest.mark.parametrize(
    "body,expected",
    [
        (
            "A2 A/2 A3/2 A/ A// z x3 |",
            [F(35, 4) / 8],
        ),  # lengths: 2 + 1/2 + 3/2 + 1/2 + 1/4 + 1 + 3 = 35/4 eighths
        ("A>B c<d e>>f |", [F(6, 8)]),  # broken rhythm keeps the pair's total
        ("(3abc d2 (3:2:3efg |", [F(2 + 2 + 2, 8)]),  # triplets: 3 in the time of 2
        ("(5abcde (2ab |", [F(2, 8) + F(3, 8)]),  # (5 in 4/4 is 5:2 ; (2 is 2:3
        ("[ceg]2 [c2e2]3/2 [ce] |", [F(2 + 3 + 1, 8)]),  # chords take the first note's length
        ("{ga}A2 {/b}B2 !trill!c2 .d ~e |", [F(8, 8)]),  # grace notes take no time
        ('"Am"A2 "^text"B2 "G/B"c4 |', [F(8, 8)]),  # chord symbols and annotations
        ("A2- A2 B4 |", [F(8, 8)]),  # ties
        ("+E3A3+ B |", [F(4, 8)]),  # abc 1.6 '+...+' chord
        ("HA LB MC OD PE SF TG uA vB z |", [F(10, 8)]),  # decoration shortcuts
    ],
)
def test_durations(body, expected):
    report, bars = _bars(body)
    assert bars == expected, report.problems
    assert not report.problems


def test_compound_meter_tuplet_default():
    _, bars = _bars("(2AB c |", meter="6/8")  # (2 in compound meter: 2 in the time of 3
    assert bars == [F(3 + 1, 8)]


def test_inline_fields_change_meter_and_unit():
    report, bars = _bars("ABcd efga | [M:3/4] ABcdef | [L:1/16] A4B4c4 | [K:D] d4e4f4 |")
    assert bars == [F(1), F(3, 4), F(3, 4), F(3, 4)]
    assert [b.expected for b in report.bars] == [F(1), F(3, 4), F(3, 4), F(3, 4)]
    assert all(b.exact for b in report.bars)


def test_field_line_in_body_changes_meter():
    report = check_text("X:1\nM:4/4\nL:1/8\nK:G\nABcd efga|\nM:6/8\nABc def|ABc def|\n")
    assert [b.expected for b in report.bars] == [F(1), F(3, 4), F(3, 4)]


def test_pickup_and_closing_bars_at_section_boundaries_are_not_mid_section():
    report = check_text(
        "X:1\nM:6/8\nL:1/8\nK:D\n"
        "A|dfa afd|cec ABc|dfa afd|1 cBA d2:|2 cBA d3||\n"
        "|:f|g3 gfe|f3 fed|e3 edc|d3-d2:|\n"
    )
    assert report.headers_ok and report.repeats_balanced and not report.problems
    mid = report.mid_section_bars
    assert [str(b.duration) for b in mid] == ["3/4"] * 5
    assert report.all_bars_exact
    pickups = [b for b in report.bars if b.opens_section]
    assert str(pickups[0].duration) == "1/8"


def test_wrong_bar_is_caught_at_its_position():
    report = check_text("X:1\nM:4/4\nL:1/8\nK:G\n|:GABc dBAG|FGAB c2B|AGFE D4|GABc d4:|\n")
    wrong = [b for b in report.mid_section_bars if not b.exact]
    assert [(b.line, b.column, b.duration) for b in wrong] == [(5, 13, F(7, 8))]
    assert not report.all_bars_exact and not report.ok


def test_repeats_and_endings():
    ok = check_text("X:1\nM:2/4\nL:1/8\nK:G\n|:AB cd|ef ga:|[1 AB cd:|[2 dc BA|]\n")
    assert ok.repeats_balanced
    nested = check_text("X:1\nM:2/4\nL:1/8\nK:G\n|:AB cd|:ef ga:|\n")
    assert not nested.repeats_balanced
    unclosed = check_text("X:1\nM:2/4\nL:1/8\nK:G\n|:AB cd|ef ga|\n")
    assert not unclosed.repeats_balanced
    both = check_text("X:1\nM:2/4\nL:1/8\nK:G\nAB cd|ef ga::AB cd|ef ga:|\n")
    assert both.repeats_balanced and not both.problems


def test_headers():
    assert check_text("X:1\nM:6/8\nK:Dmix\nABc|\n").headers_ok
    assert not check_text("X:1\nM:6/8\nK:Q\nABc|\n").headers_ok
    assert not check_text("T:no x\nM:6/8\nK:D\nABc|\n").headers_ok
    assert not check_text("X:1\nK:D\nABc|\n").headers_ok  # no M:
    assert not check_text("X:1\nM:6/8\nABc|\n").headers_ok  # no K: at all


def test_default_length_from_meter():
    report, bars = _bars("ABCD EFGA|", meter="2/4", length="1/16")
    assert bars == [F(1, 2)]
    report = check_text("X:1\nM:2/4\nK:G\nABCD EFGA|\n")  # no L: -> 1/16 for 2/4
    assert [b.duration for b in report.bars] == [F(1, 2)]


def test_unrecognised_tokens_are_problems_with_positions():
    report = check_text("X:1\nM:2/4\nL:1/8\nK:G\nAB cd|e# ga|\n")
    assert report.problems == ["line 5, column 8: unrecognised character '#'"]


@pytest.mark.parametrize(
    "unit, count",
    [
        ("ABcd efga|", 25_000),
        ("[[[((((", 36_000),
        ("(3", 125_000),
        ("x", 250_000),
        ("{", 250_000),
        ("|:", 125_000),
    ],
)
def test_checking_time_grows_linearly_with_line_length(unit, count):
    """A four times longer line costs about four times as much, not sixteen.

    A ratio, not a deadline: absolute speed lives in scripts/fuzz.py and
    docs/robustness.md. The 1 MB line at the top end is also the size a
    pasted-in garbage file reaches.
    """

    def text(n):
        body = unit * n if unit != "x" else '"' + "x" * n
        return "X:1\nM:4/4\nL:1/8\nK:G\n" + body + "\n"

    small, large = cpu_seconds_small_and_large(check_text, text(count), text(4 * count))
    assert large < 9 * max(small, 1e-3), (small, large)


def test_methods_are_verbs():
    from musicseq.notation.checker import _BodyChecker

    for name in ("read_field", "walk_line", "read_number", "read_note", "read_length"):
        assert callable(getattr(_BodyChecker, name))
    for noun in ("field", "line", "number", "note", "length", "bracket", "tuplet", "bar_token"):
        assert not hasattr(_BodyChecker, noun)


def test_events_follow_the_walk():
    from musicseq.notation import parse_tune
    from musicseq.notation.checker import BAR, CHORD, FIELD, NOTE, REST, TIE, tune_events
    from musicseq.notation.durations import TICKS

    tune = parse_tune("X:1\nM:2/4\nL:1/8\nK:G\n|:A>B [ce]-c|1 z2 Z:|2 [K:D] {g}d4|]\n")
    events = [(kind, value, extra) for kind, _, _, value, extra in tune_events(tune)]
    eighth = TICKS // 8
    assert events == [
        (BAR, "|:", ""),
        (NOTE, "A", eighth * 3 // 2),  # broken rhythm: the first note dotted ...
        (NOTE, "B", eighth // 2),  # ... the second halved
        (CHORD, ("c", "e"), eighth),
        (TIE, "-", 0),
        (NOTE, "c", eighth),
        (BAR, "|", "1"),
        (REST, "z", 2 * eighth),
        (REST, "Z", 4 * eighth),
        (BAR, "|", ""),  # Z closes its bar
        (BAR, ":|", "2"),
        (FIELD, "K", "D"),
        (NOTE, "d", 4 * eighth),  # grace notes take no time and give no event
        (BAR, "|]", ""),
        (BAR, "", ""),  # the end of the body
    ]
    report = check_text(tune.text)
    assert [b.duration for b in report.bars] == [F(1, 2), F(3, 4), F(1, 2)]
