"""Fuzz the ABC parser, checker and corpus builder: at least 10,000 generated cases.

    python scripts/fuzz.py [--cases 12000] [--seed 0]

Cases: random bytes, random printable text, random ABC-alphabet text, every truncation of
real tunes, random mutations of real tunes, pathological inputs (a 10 MB line, 1 MB of
nested brackets, tuplets, quotes, braces), and file-level cases (non-UTF-8, UTF-16, empty
files, directories without .abc files, symlink loops). Passes when nothing raises (other
than the documented ``UserError`` for unusable paths), every reported error names its
file and line, and no single case takes longer than the budget. Prints the case count.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from musicseq import corpus
from musicseq.errors import UserError
from musicseq.notation import decode_bytes, parse_tunebook
from musicseq.notation.checker import check_text

ALPHABET = "XTMLKQ:|[]()/<>{}!+\"'^_=,-~.0123456789ABCDEFGabcdefgzxyZ \n%\\&$*#@"
# Time budget of one case: linear in its size (each case is parsed and checked twice).
BUDGET_SECONDS = 1.0
BUDGET_SECONDS_PER_MB = 2.0


def run_text(text: str, name: str) -> None:
    result = parse_tunebook(text, name)
    for error in result.errors:
        assert str(error).startswith(f"{name}:"), str(error)
    for tune in result.tunes:
        check_text(tune.text)
    check_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    real = (Path(__file__).resolve().parent.parent / "tests" / "data" / "irish.abc").read_text()
    tunes = [t.text for t in parse_tunebook(real).tunes]
    counts: dict[str, int] = {}
    slowest = (0.0, "")  # the case that used most of its budget
    over_budget = []

    def case(kind: str, fn, *fn_args) -> None:
        nonlocal slowest
        size = sum(len(a) for a in fn_args if isinstance(a, str)) / 1e6
        start = time.perf_counter()
        fn(*fn_args)
        took = time.perf_counter() - start
        counts[kind] = counts.get(kind, 0) + 1
        budget = BUDGET_SECONDS + BUDGET_SECONDS_PER_MB * size
        if took / budget > slowest[0]:
            slowest = (took / budget, f"{kind}, {took:.2f} s for {size:.2f} MB")
        if took > budget:
            over_budget.append(f"{kind}: {took:.2f} s for {size:.2f} MB")

    share = args.cases // 6
    for _ in range(share):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400)))
        case("random bytes", lambda d=data: run_text(decode_bytes(d), "bytes.abc"))
    for _ in range(share):
        text = "".join(
            chr(rng.randint(32, 126)) if rng.random() > 0.05 else "\n"
            for _ in range(rng.randint(0, 400))
        )
        case("random printable text", run_text, text, "text.abc")
    for _ in range(share):
        body = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 400)))
        case(
            "random ABC-alphabet text",
            run_text,
            "X:1\nT:f\nM:6/8\nL:1/8\nK:G\n" + body,
            "alpha.abc",
        )
    truncated = 0
    while truncated < share:
        tune = rng.choice(tunes)
        for cut in range(0, len(tune), max(1, len(tune) // 60)):
            case("truncated real tune", run_text, tune[:cut], "cut.abc")
            truncated += 1
    for _ in range(share):
        chars = list(rng.choice(tunes))
        for _ in range(rng.randint(1, 12)):
            position = rng.randrange(len(chars) + 1)
            action = rng.random()
            if action < 0.4 and chars:
                del chars[min(position, len(chars) - 1)]
            elif action < 0.8:
                chars.insert(position, rng.choice(ALPHABET))
            else:
                chars.insert(position, chr(rng.randint(0, 255)))
        case("mutated real tune", run_text, "".join(chars), "mutated.abc")
    header = "X:1\nM:4/4\nL:1/8\nK:G\n"
    for label, body in [
        ("10 MB line, no newline", "ABcd" * 2_500_000),
        ("1 MB nested brackets", "[" * 500_000 + "]" * 500_000),
        ("1 MB unbalanced brackets", "[[[((((" * 150_000),
        ("1 MB tuplets", "(3" * 500_000),
        ("1 MB open quote", '"' + "x" * 1_000_000),
        ("1 MB open braces", "{" * 1_000_000),
        ("1 MB of bar lines", "|:" * 500_000),
        ("1 MB of decorations", "!trill!" * 150_000),
    ]:
        case(f"pathological: {label}", run_text, header + body, "patho.abc")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "latin1.abc").write_bytes("X:1\nT:Caf\u00e9\nM:2/4\nK:D\nAB|\n".encode("latin-1"))
        (root / "utf16.abc").write_bytes("X:1\nT:\u00c9ire\nM:2/4\nK:D\nAB|\n".encode("utf-16"))
        (root / "empty.abc").write_bytes(b"")
        (root / "loop").mkdir()
        os.symlink(root / "loop", root / "loop" / "self")
        (root / "noabc").mkdir()
        (root / "noabc" / "readme.txt").write_text("nothing")

        def files_case():
            found = corpus.find_abc_files(root)
            corpus.parse_files(found)
            for bad in (root / "noabc", root / "loop", root / "missing"):
                try:
                    corpus.find_abc_files(bad)
                except UserError:
                    pass

        for _ in range(10):
            case("files and directories", files_case)
    total = sum(counts.values())
    for kind, count in counts.items():
        print(f"{kind:28s} {count:6d}")
    print(
        f"{'total cases':28s} {total:6d}  (closest to its time budget: {slowest[0]:.0%}, {slowest[1]})"
    )
    if total < 10_000 or over_budget:
        print(over_budget[:5], file=sys.stderr)
        print("FAILED: too few cases or a case too slow", file=sys.stderr)
        return 1
    print("passed: no exception, every error with file:line")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
