"""An interpolated Kneser-Ney character n-gram model: the reference the neural models must beat.

Tunes are scored exactly like :func:`musicseq.evaluate.held_out_loss`: each tune is
``EOT text EOT``, every character of the text and the final ``EOT`` is predicted, and the
context never reaches into another tune. Pure Python.
"""

from __future__ import annotations

import math
from collections import defaultdict

BOUNDARY = "\x02"  # stands for the end-of-tune token


class KneserNey:
    """Interpolated Kneser-Ney with one discount per order (Ney's estimate ``n1/(n1+2 n2)``)."""

    def __init__(self, order: int):
        if order < 1:
            raise ValueError("order must be >= 1")
        self.order = order

    def fit(self, texts: list[str]) -> KneserNey:
        n = self.order
        highest: dict[str, int] = defaultdict(int)  # raw counts of n-grams
        for text in texts:
            seq = BOUNDARY * (n - 1) + BOUNDARY + text + BOUNDARY
            for i in range(n, len(seq) + 1):
                highest[seq[i - n : i]] += 1
        # Lower orders use continuation counts: how many distinct characters precede the n-gram.
        counts = {n: highest}
        for k in range(n - 1, 0, -1):
            cont: dict[str, int] = defaultdict(int)
            for gram in counts[k + 1]:
                cont[gram[1:]] += 1
            counts[k] = cont
        self.vocab = {g[-1] for g in counts[1]}
        self.counts = counts
        self.context_total: dict[int, dict[str, int]] = {}
        self.context_types: dict[int, dict[str, int]] = {}
        self.discount: dict[int, float] = {}
        for k, table in counts.items():
            totals: dict[str, int] = defaultdict(int)
            types: dict[str, int] = defaultdict(int)
            n1 = n2 = 0
            for gram, c in table.items():
                totals[gram[:-1]] += c
                types[gram[:-1]] += 1
                n1 += c == 1
                n2 += c == 2
            self.context_total[k], self.context_types[k] = totals, types
            self.discount[k] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.75
        return self

    def prob(self, context: str, char: str) -> float:
        p = 1.0 / (len(self.vocab) + 1)  # uniform floor (also covers unseen characters)
        for k in range(1, self.order + 1):
            history = context[len(context) - (k - 1) :] if k > 1 else ""
            total = self.context_total[k].get(history, 0)
            if total == 0:
                continue
            d = self.discount[k]
            count = self.counts[k].get(history + char, 0)
            p = max(count - d, 0.0) / total + d * self.context_types[k][history] / total * p
        return p

    def nats(self, text: str) -> float:
        """Total nats of one tune (its characters and the final end-of-tune)."""
        n = self.order
        seq = BOUNDARY * (n - 1) + BOUNDARY + text + BOUNDARY
        return -sum(math.log(self.prob(seq[i - n + 1 : i], seq[i])) for i in range(n, len(seq)))

    def nats_per_char(self, texts: list[str]) -> float:
        return sum(self.nats(t) for t in texts) / sum(len(t) + 1 for t in texts)
