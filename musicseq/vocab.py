"""Tokens ⇄ ids, with reserved tokens, saved as JSON next to every model.

Two kinds of vocabulary share ids 0–2 (padding, unknown, end of tune):

* ``"chars"``: one id per character (``vocab.json`` format 1, unchanged since the first
  models: ``{"format": 1, "reserved": [...], "chars": [...]}``).
* ``"abc"``: the characters of the training texts, in the same order and so with the same
  ids as a ``"chars"`` vocabulary of those texts, then multi-character musical tokens
  (:mod:`musicseq.notation.tokens`). Text is split by greedy longest match, losslessly
  (format 2: ``{"format": 2, "kind": "abc", "reserved": [...], "tokens": [...]}``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from musicseq import fileio
from musicseq.config import TOKEN_KINDS
from musicseq.notation.tokens import Tokenizer

PAD, UNK, EOT = 0, 1, 2  # padding, unknown character, end of tune
RESERVED = ("<pad>", "<unk>", "<eot>")
MAX_VOCAB = 4096
KINDS = TOKEN_KINDS


class Vocab:
    """A vocabulary of characters (``kind="chars"``) or of ABC tokens (``kind="abc"``).

    Ids 0–2 are reserved: padding, unknown, end-of-tune; ``tokens[i]`` has id ``i + 3``.
    """

    def __init__(self, chars: Iterable[str], kind: str = "chars"):
        tokens = list(chars)
        if kind not in KINDS:
            raise ValueError(f"vocabulary kind must be one of {KINDS}, got {kind!r}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary characters must be unique")
        if kind == "chars":
            if any(not isinstance(c, str) or len(c) != 1 for c in tokens):
                raise ValueError("vocabulary entries must be single characters")
        elif any(not isinstance(t, str) or not t for t in tokens):
            raise ValueError("vocabulary tokens must be non-empty strings")
        if len(tokens) + len(RESERVED) > MAX_VOCAB:
            raise ValueError(f"vocabulary larger than {MAX_VOCAB}")
        self.kind = kind
        self.tokens = tokens
        self._ids = {t: i + len(RESERVED) for i, t in enumerate(tokens)}
        # The multi-character tokens; empty for a character vocabulary.
        self.tokenizer = Tokenizer(t for t in tokens if len(t) > 1)

    @property
    def chars(self) -> list[str]:
        """The characters in id order (a ``"chars"`` vocabulary only)."""
        if self.kind != "chars":
            raise ValueError(
                f"a {self.kind!r} vocabulary has multi-character tokens: use .tokens, not .chars"
            )
        return self.tokens

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], kind: str = "chars", min_count: int = 5, beams: bool = False
    ) -> Vocab:
        """Every character of ``texts``, sorted; for ``kind="abc"`` then the musical tokens
        seen at least ``min_count`` times (:meth:`Tokenizer.from_texts`), as many as fit."""
        texts = list(texts)
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        chars = sorted(seen)
        if kind != "abc":
            return cls(chars, kind)
        room = MAX_VOCAB - len(RESERVED) - len(chars)
        tokenizer = Tokenizer.from_texts(texts, min_count, beams=beams, max_tokens=max(room, 0))
        return cls(chars + tokenizer.tokens, kind)

    @property
    def unit(self) -> str:
        """What one id stands for, in the plural: ``"characters"`` or ``"tokens"``."""
        return "characters" if self.kind == "chars" else "tokens"

    def __len__(self) -> int:
        return len(RESERVED) + len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of ``text`` that the vocabulary does not hold, in order of appearance."""
        return sorted(set(text) - set(self._ids), key=text.index)

    def split(self, text: str) -> list[str]:
        """``text`` as the strings its ids stand for (characters for a ``"chars"`` vocabulary)."""
        return list(text) if self.kind == "chars" else self.tokenizer.tokenize(text)

    def encode(self, text: str) -> list[int]:
        """Token ids; characters outside the vocabulary become ``UNK``."""
        ids = self._ids
        if self.kind == "chars":
            return [ids.get(c, UNK) for c in text]
        return [ids.get(t, UNK) for t in self.tokenizer.tokenize(text)]

    def decode(self, ids: Iterable[int], stop_at_eot: bool = True) -> str:
        """Text for ``ids``; stops at ``EOT``; padding is skipped and unknown ids shown as ``?``."""
        out = []
        offset = len(RESERVED)
        for i in ids:
            i = int(i)
            if i == EOT and stop_at_eot:
                break
            if i >= offset and i - offset < len(self.tokens):
                out.append(self.tokens[i - offset])
            elif i == UNK:
                out.append("?")
        return "".join(out)

    def token_lengths(self) -> list[int]:
        """Characters per id: ``len(token)``; ``UNK`` 1 (one unknown character), ``EOT`` 1,
        ``PAD`` 0.

        ``EOT`` counts as one so that summing over a scored tune's targets (its tokens and the
        final ``EOT``) gives characters + 1, the denominator the character models' nats per
        character have always used: sum of token nats / that sum compares across kinds.
        """
        return [0, 1, 1, *map(len, self.tokens)]

    def to_dict(self) -> dict:
        if self.kind == "chars":
            return {"format": 1, "reserved": list(RESERVED), "chars": self.tokens}
        return {"format": 2, "kind": self.kind, "reserved": list(RESERVED), "tokens": self.tokens}

    @classmethod
    def from_dict(cls, data: dict) -> Vocab:
        if not isinstance(data, dict):
            raise ValueError("vocab JSON must be an object")
        if data.get("reserved", list(RESERVED)) != list(RESERVED):
            raise ValueError(f"vocab reserved tokens must be {list(RESERVED)}")
        form = data.get("format", 1)
        if form == 1:
            if not isinstance(data.get("chars"), list):
                raise ValueError("vocab JSON must be an object with a 'chars' list")
            return cls(data["chars"])
        if form == 2:
            if not isinstance(data.get("tokens"), list):
                raise ValueError("vocab JSON (format 2) must have a 'tokens' list")
            return cls(data["tokens"], data.get("kind", "chars"))
        raise ValueError(f"unknown vocab format {form!r} (this musicseq reads 1 and 2)")

    def save(self, path: str | os.PathLike) -> None:
        fileio.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read vocabulary {path}: {exc}") from exc

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and (self.kind, self.tokens) == (other.kind, other.tokens)
