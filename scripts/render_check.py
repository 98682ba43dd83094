"""What abc2midi and abcm2ps say about a set of tunes, as musicseq renders them.

    python scripts/render_check.py out/tunes/            # the .abc files of a directory
    python scripts/render_check.py data/abc/test.abc     # every tune of a tunebook
    python scripts/render_check.py DIR --as-written      # the text as written, for comparison

Each tune goes through :func:`musicseq.render.for_abc2midi` and
:func:`musicseq.render.for_abcm2ps` (unless ``--as-written``) and then through both programs;
the script counts their messages by kind (numbers blanked) and the tunes that got each, and
prints one example line per kind with ``--examples``. Exit code 1 when a tune got an error or
a bar-length warning ("Bar N has N time units"), 0 otherwise.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from musicseq.notation import parse_tunebook
from musicseq.render import for_abc2midi, for_abcm2ps

SERIOUS = re.compile(r"error|time units", re.I)


def tunes_of(paths: list[str]) -> list[tuple[str, str]]:
    out = []
    for name in paths:
        path = Path(name)
        files = sorted(path.glob("*.abc")) if path.is_dir() else [path]
        for file in files:
            for i, tune in enumerate(parse_tunebook(file.read_text(errors="replace")).tunes):
                out.append((f"{file}#{i + 1}", tune.text))
    return out


def messages(program: list[str], text: str, scratch: Path) -> list[str]:
    (scratch / "t.abc").write_bytes(text.encode("latin-1", errors="replace"))
    done = subprocess.run(
        program, cwd=scratch, capture_output=True, text=True, errors="replace", timeout=60
    )
    lines = (done.stdout + done.stderr).splitlines()
    return [line for line in lines if re.search(r"\b(error|warning)\b", line, re.I)]


def kind(line: str) -> str:
    line = re.sub(r"^.*?(error|warning)", r"\1", line, flags=re.I)
    line = re.sub(r"line-char \S+ : ", "", line)
    return re.sub(r"\d+(/\d+)?", "N", line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help=".abc files or directories of them")
    parser.add_argument("--as-written", action="store_true", help="skip musicseq's rewriting")
    parser.add_argument("--examples", action="store_true", help="one example line per kind")
    args = parser.parse_args(argv)
    for exe in ("abc2midi", "abcm2ps"):
        if not shutil.which(exe):
            print(f"error: {exe} not found (make setup installs it as root)", file=sys.stderr)
            return 2
    tunes = tunes_of(args.paths)
    if not tunes:
        print("error: no tunes found", file=sys.stderr)
        return 2
    counts: Counter = Counter()
    affected: Counter = Counter()
    example: dict[str, str] = {}
    serious = 0
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for name, text in tunes:
            for program, prepare in (
                (["abc2midi", "t.abc", "-o", "t.mid"], for_abc2midi),
                (["abcm2ps", "-q", "-g", "-O", "t.svg", "t.abc"], for_abcm2ps),
            ):
                got = messages(program, text if args.as_written else prepare(text), scratch)
                kinds = Counter(f"{program[0]}: {kind(line)}" for line in got)
                counts.update(kinds)
                affected.update(kinds.keys())
                for line in got:
                    example.setdefault(f"{program[0]}: {kind(line)}", f"{name}: {line}")
                serious += any(SERIOUS.search(line) for line in got)
    print(
        f"{len(tunes)} tunes{' (as written)' if args.as_written else ''}; "
        f"{serious} with an error or a bar-length warning"
    )
    for message, n in counts.most_common():
        print(f"{n:6d} in {affected[message]:5d} tunes  {message}")
        if args.examples:
            print(f"{'':27s}{example[message]}")
    return 1 if serious else 0


if __name__ == "__main__":
    sys.exit(main())
