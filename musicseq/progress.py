"""A one-line progress report for long generation runs: tunes done, characters (or tokens) per second,
time left. Pure Python (no TensorFlow); the library takes it as a ``progress`` callback and
the CLI passes one unless ``--quiet``."""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class Progress:
    """``Progress(label)(step, total, done, num, chars)`` after each chunk of the decoding loop.

    On a terminal the line is rewritten in place; elsewhere (logs, CI) a line is printed at
    most every ``every`` seconds. Time left is the remaining loop steps at the rate so far:
    an upper bound, as streams that end early stop the loop sooner. :meth:`finish` ends the
    line with the totals. Nothing is printed for a run shorter than ``after`` seconds.
    """

    def __init__(
        self,
        label: str = "generating",
        stream=None,
        every: float = 10.0,
        after: float = 2.0,
        unit: str = "characters",
    ):
        self.label = label
        self.unit = unit  # what the loop counts: characters, or an ABC-token model's tokens
        self.stream = stream or sys.stderr
        self.every = every
        self.after = after
        self.printed = False
        self.started = time.perf_counter()
        self.last_print = float("-inf")
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.line = ""

    def __call__(self, step: int, total: int, done: int, num: int, chars: int) -> None:
        now = time.perf_counter()
        elapsed = max(now - self.started, 1e-9)
        left = elapsed / max(step, 1) * (total - step) if done < num else 0.0
        self.line = (
            f"{self.label}: {done}/{num} tunes done, {chars:,} {self.unit}, "
            f"{chars / elapsed:,.0f} {self.unit}/s, {_clock(elapsed)} elapsed, "
            f"at most {_clock(left)} left"
        )
        if elapsed < self.after:
            return
        self.printed = True
        if self.tty:
            self.stream.write("\r" + self.line + "\x1b[K")
            self.stream.flush()
        elif now - self.last_print >= self.every:
            self.stream.write(self.line + "\n")
            self.stream.flush()
            self.last_print = now

    def finish(self) -> None:
        if self.printed:
            self.stream.write(("\r" + self.line + "\x1b[K\n") if self.tty else self.line + "\n")
            self.stream.flush()
