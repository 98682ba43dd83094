"""Peak resident memory and wall time of a command (and everything it starts).

    python scripts/peak_memory.py --label "make demo" -- make demo

Appends a row to the memory section of docs/benchmarks.md. The figure is the largest
resident set of any single process of the command (``RUSAGE_CHILDREN``'s ``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.perf_counter()
    status = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ).returncode
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{args.label}: exit {status}, {seconds:.0f} s, peak {peak_mb:,.0f} MB")
    from _bench import BENCHMARKS, write_section

    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    match = re.search(r"<!-- memory:start -->\n(.*?)<!-- memory:end -->", text, re.S)
    rows = [
        line
        for line in (match.group(1).splitlines() if match else [])
        if line.startswith("| ") and "command" not in line
    ]
    rows = [r for r in rows if not r.startswith(f"| {args.label} |")]
    rows.append(
        f"| {args.label} | `{' '.join(command)}` | {seconds:.0f} | {peak_mb:,.0f} | {status} |"
    )
    write_section(
        "memory",
        "\n".join(
            [
                "## Peak memory (`python scripts/peak_memory.py`)",
                "",
                "Largest resident set of any process of the command, and its wall time.",
                "",
                "| what | command | seconds | peak MB | exit |",
                "|---|---|---:|---:|---:|",
                *rows,
            ]
        ),
    )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
