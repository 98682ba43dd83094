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
    most every ``every`` seconds. Nothing is printed for a run shorter than ``after`` seconds.
    :meth:`finish` ends the line with the totals.

    The rate and the time left are measured from the end of the first chunk: in a process's
    first call the time before it is mostly building the decoding graph (tracing and
    optimising it: ~30 s for constrained decoding of the shipped default), which the later
    chunks do not pay, so a rate over it would be several times too slow and the time left
    as many times too long. Time left is the remaining loop steps at that rate: an upper
    bound, as streams that end early stop the loop sooner. :meth:`stage` names, on a
    terminal, what the loop is doing before its first chunk.
    """

    def __init__(
        self,
        label: str = "generating",
        stream=None,
        every: float = 10.0,
        after: float = 2.0,
        unit: str = "characters",
        clock=time.perf_counter,
    ):
        self.label = label
        self.unit = unit  # what the loop counts: characters, or an ABC-token model's tokens
        self.stream = stream or sys.stderr
        self.every = every
        self.after = after
        self.clock = clock
        self.printed = False
        self.started = clock()
        self.first: tuple[float, int, int] | None = None  # (time, step, chars) of the 1st chunk
        self.last_print = float("-inf")
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.line = ""
        self.staged = False  # a stage line is on the terminal, to be overwritten or cleared

    def stage(self, text: str) -> None:
        """Show what the loop does before its first chunk (``building the decoding graph``):
        on a terminal only, in place, replaced by the first report (logs get no line: a
        short run stays silent there)."""
        if self.tty:
            self.stream.write(f"\r{self.label}: {text}\x1b[K")
            self.stream.flush()
            self.staged = True

    def __call__(self, step: int, total: int, done: int, num: int, chars: int) -> None:
        now = self.clock()
        elapsed = max(now - self.started, 1e-9)
        head = f"{self.label}: {done}/{num} tunes done, {chars:,} {self.unit}"
        if self.first is None:
            self.first = (now, step, chars)
            if done < num:
                speed = "rate and time left from the next report"
                self.line = f"{head}, {_clock(elapsed)} elapsed (first steps), {speed}"
            else:  # all done in one chunk
                self.line = f"{head}, {chars / elapsed:,.0f} {self.unit}/s, {_clock(elapsed)}"
                self.line += " elapsed, 0 s left"
        else:
            since, first_step, first_chars = self.first
            seconds = max(now - since, 1e-9)
            rate = (chars - first_chars) / seconds
            per_step = seconds / max(step - first_step, 1)
            left = per_step * (total - step) if done < num else 0.0
            self.line = (
                f"{head}, {rate:,.0f} {self.unit}/s, {_clock(elapsed)} elapsed, "
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
        elif self.staged:  # a short run: its stage line is wiped
            self.stream.write("\r\x1b[K")
            self.stream.flush()
