"""A lossless musical tokenizer of ABC: notes, lengths, bar lines, field lines as single tokens.

Two parts, kept apart on purpose:

* **Atoms** (:data:`TOKEN_CLASSES`) say what a musical token is, in the spirit of folk-rnn's
  vocabulary: a pitch with its accidentals, octave marks and length (``^c'2``, ``=B,,``,
  ``G3/2``), a rest, a bar line or repeat with its ending number (``|``, ``:|2``, ``[1``,
  ``|]``), a tuplet (``(3``, ``(3:2:3``), broken rhythm (``>``, ``<<``), a decoration
  (``!trill!``), an annotation (``"^Segno"``), a header field start (``T:``) or a whole
  common header line (``M:6/8\\n``, ``K:G\\n``). Most atoms carry the single space or line break
  written after them (``d2 ``, ``|\\n``): spaces are a fifth of the corpus's characters.
  The atom regex is only used to *collect* the inventory from training texts.
* **Tokenizing** (:class:`Tokenizer`) is a context-free greedy longest match over that
  inventory: at each position the longest inventory token that starts there, else the one
  character. So every text round-trips (``detokenize(tokenize(t)) == t``), and the same
  segmentation is one regex alternation ordered longest-first (:meth:`Tokenizer.pattern`),
  which RE2 (``tf.strings.regex_replace``, leftmost-first) reproduces inside a TensorFlow
  graph (:mod:`musicseq.tokenize_graph`). Letters in a title may come out as note tokens;
  that costs nothing, since nothing is lost.

Measured on the default corpus (train 3,976 tunes, 1.16M characters; test 230 tunes):

==============  =========  ==================  ===============  ======================
inventory       tokens     test tokens / tune  chars / token    chars in multi-char
==============  =========  ==================  ===============  ======================
min_count=1     1,244      189.8               1.52             0.58
min_count=5     653        190.5               1.52             0.57
min_count=20    420        192.1               1.50             0.57
beams, 5        4,859      123.4               2.34             0.82
beams, 20       1,586      137.5               2.10             0.79
==============  =========  ==================  ===============  ======================

(a test tune has 288.6 characters). One atom per musical symbol gives about 1.5x shorter
sequences on this corpus, not 3x: 43% of the test characters stay one-character tokens, a
quarter of all characters being bare note letters inside beams (``GBd``), and a token per
note cannot be shorter than its letter. ``beams=True`` also collects
whole beam groups (``GBd``, ``(3efg``, ``d>c``), a step towards byte-pair merges.
:func:`measure` gives these figures for any tokenizer and texts.

Pure Python: never imports TensorFlow.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

FORMAT = 1  # of to_dict()

# A note length: "2", "/2", "3/2", "/", "//", "3//".
_LEN = r"(?:\d{1,2}(?:/+\d{0,2})*|(?:/+\d{0,2})+)"
_PITCH = r"[\^_=]{0,2}[A-Ga-g][,']{0,3}"

# (class name, regex) in the order the atom scan tries them (leftmost-first).
TOKEN_CLASSES: tuple[tuple[str, str], ...] = (
    # A whole header line of a common field value: "M:6/8\n", "L:1/8\n", "K:Dmix\n", "R:reel\n"
    ("field_line", r"(?m:^[KLMQR]:[^\n]{1,30}\n)"),
    # A header (or body) field's start at the start of a line: "X:", "T:", "W:"
    ("field", r"(?m:^[A-Za-z+]:)"),
    # An inline field: "[M:3/4]", "[K:G]"
    ("inline_field", r"\[[A-Za-z]:[^\]\n]{1,30}\]"),
    # Bar lines and repeats with an ending number and the space or line break after them:
    # "|", "||", "|]", "[|", "|:", ":|", "::", ":|]", "|1", ":|2", "| ", "|\n"
    ("bar", r"(?:\[\|\]|:*\[\||:*\|+\]?:*|::+)(?:\d+(?:[,-]\d+)*)? ?\n?"),
    # An ending after a space: "[1", "[2 "
    ("ending", r"\[\d+(?:[,-]\d+)* ?"),
    # A tuplet: "(3", "(3:2", "(3:2:3"
    ("tuplet", r"\(\d(?::\d?){0,2}"),
    # A note: accidentals, letter, octave marks, length, the space after it
    ("note", rf"{_PITCH}{_LEN}? ?"),
    # A rest: "z", "z2", "x/2", "Z4"
    ("rest", rf"[zxZ]{_LEN}? ?"),
    # The end of a chord with the chord's length: "]2", "] "
    ("chord_end", rf"\]{_LEN}? ?"),
    # A length standing alone (after a tie or a chord): "2", "/2", "3/2"
    ("length", rf"{_LEN} ?"),
    ("broken", r"[<>]{1,3} ?"),
    ("decoration", r"![^!\n]{1,30}!|\+[^+\s]{1,30}\+"),
    ("annotation", r'"[^"\n]{0,30}" ?'),
    # The end of a slur or grace group with the space after it
    ("close", r"[)}] "),
    ("spaces", r" {2,8}"),
    ("continuation", r"\\\n"),
)

# Beam groups (opt-in, beams=True): two or more notes or rests written together, with slurs,
# ties and broken rhythm inside and the space after: "GBd ", "(3efg", "d>c", "(GA)"
_NOTE_IN_BEAM = rf"(?:{_PITCH}|[zx]){_LEN}?"
BEAM = rf"(?:\(\d?)?{_NOTE_IN_BEAM}(?:[-<>()]{{0,2}}{_NOTE_IN_BEAM})+\)? ?"

ATOM = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in TOKEN_CLASSES))
_BEAM = re.compile(BEAM)


def atoms(text: str, beams: bool = False) -> Iterator[str]:
    """The multi-character musical atoms of ``text`` (and its beam groups when ``beams``)."""
    for match in ATOM.finditer(text):
        if match.end() - match.start() > 1:
            yield match.group()
    if beams:
        for match in _BEAM.finditer(text):
            yield match.group()


def atom_class(atom: str) -> str | None:
    """The :data:`TOKEN_CLASSES` entry that matches all of ``atom``, ``"beam"``, or None."""
    match = ATOM.fullmatch(atom)
    if match is not None:
        return match.lastgroup
    return "beam" if _BEAM.fullmatch(atom) else None


def _escape(token: str) -> str:
    """A literal for both Python ``re`` and RE2: ASCII punctuation and controls as ``\\xHH``."""
    return "".join(c if c.isalnum() or ord(c) > 127 else f"\\x{ord(c):02x}" for c in token)


class Tokenizer:
    """Greedy longest match over an inventory of multi-character tokens, else one character.

    Lossless for any text: ``detokenize(tokenize(text)) == text``. The inventory holds only
    multi-character strings; every single character is a token too (which characters get an
    id is the vocabulary's business, :class:`musicseq.vocab.Vocab`).
    """

    def __init__(self, tokens: Iterable[str]):
        tokens = list(tokens)
        if any(not isinstance(t, str) or len(t) < 2 for t in tokens):
            raise ValueError("tokenizer tokens must be strings of two or more characters")
        if len(set(tokens)) != len(tokens):
            raise ValueError("tokenizer tokens must be unique")
        self.tokens = tokens
        self._set = frozenset(tokens)
        # first character -> the lengths of the tokens starting with it, longest first
        lengths: dict[str, set[int]] = {}
        for t in tokens:
            lengths.setdefault(t[0], set()).add(len(t))
        self._lengths = {c: sorted(ls, reverse=True) for c, ls in lengths.items()}

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        min_count: int = 5,
        beams: bool = False,
        max_tokens: int | None = None,
    ) -> Tokenizer:
        """The multi-character atoms seen at least ``min_count`` times in ``texts``.

        ``max_tokens`` keeps only the most frequent. Tokens are ordered by class, then by
        count (most frequent first), then by text, so the result is deterministic.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(atoms(text, beams))
        kept = sorted(
            (t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t)
        )
        if max_tokens is not None:
            kept = kept[:max_tokens]
        order = {name: i for i, (name, _) in enumerate(TOKEN_CLASSES)}
        kept.sort(key=lambda t: order.get(atom_class(t) or "", len(order)))  # stable
        return cls(kept)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Tokenizer) and self.tokens == other.tokens

    def tokenize(self, text: str) -> list[str]:
        """``text`` as tokens: at each position the longest inventory token, else one character."""
        out = []
        append = out.append
        lengths, known = self._lengths, self._set
        i, n = 0, len(text)
        while i < n:
            for size in lengths.get(text[i], ()):
                piece = text[i : i + size]
                if piece in known:
                    append(piece)
                    i += size
                    break
            else:
                append(text[i])
                i += 1
        return out

    @staticmethod
    def detokenize(tokens: Iterable[str]) -> str:
        return "".join(tokens)

    def pattern(self) -> str:
        """The tokenization as one regex: the inventory longest first, then any one character.

        Python ``re`` and RE2 both take the first alternative that matches at the leftmost
        position, so ``re.findall(pattern, text) == tokenize(text)``; the escapes are ones
        both engines read.
        """
        ordered = sorted(self.tokens, key=lambda t: (-len(t), t))
        return "|".join([*map(_escape, ordered), "(?s:.)"])

    def to_dict(self) -> dict:
        return {"format": FORMAT, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: dict) -> Tokenizer:
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise ValueError("tokenizer JSON must be an object with a 'tokens' list")
        if data.get("format", FORMAT) != FORMAT:
            raise ValueError(f"unknown tokenizer format {data.get('format')!r}")
        return cls(data["tokens"])


def measure(tokenizer: Tokenizer, texts: Sequence[str]) -> dict:
    """Sequence-length figures of ``tokenizer`` on ``texts``.

    ``chars_per_token``, ``tokens_per_tune``, ``multi_char_share`` (the share of characters
    inside multi-character tokens) and ``tokens_per_second`` (this Python tokenizer).
    """
    start = time.perf_counter()
    tokenized = [tokenizer.tokenize(t) for t in texts]
    seconds = time.perf_counter() - start
    tokens = sum(map(len, tokenized))
    chars = sum(map(len, texts))
    multi = sum(len(t) for toks in tokenized for t in toks if len(t) > 1)
    return {
        "inventory": len(tokenizer),
        "tunes": len(texts),
        "chars": chars,
        "tokens": tokens,
        "chars_per_token": chars / max(tokens, 1),
        "tokens_per_tune": tokens / max(len(texts), 1),
        "chars_per_tune": chars / max(len(texts), 1),
        "multi_char_share": multi / max(chars, 1),
        "tokens_per_second": tokens / max(seconds, 1e-9),
    }
