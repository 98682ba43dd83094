"""Characters ⇄ ids, with reserved tokens, saved as JSON next to every model."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from musicseq import fileio

PAD, UNK, EOT = 0, 1, 2  # padding, unknown character, end of tune
RESERVED = ("<pad>", "<unk>", "<eot>")
MAX_VOCAB = 4096


class Vocab:
    """A character vocabulary. Ids 0–2 are reserved: padding, unknown, end-of-tune."""

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be unique")
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("vocabulary entries must be single characters")
        if len(chars) + len(RESERVED) > MAX_VOCAB:
            raise ValueError(f"vocabulary larger than {MAX_VOCAB}")
        self.chars = chars
        self._ids = {c: i + len(RESERVED) for i, c in enumerate(chars)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocab:
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls(sorted(seen))

    def __len__(self) -> int:
        return len(RESERVED) + len(self.chars)

    def __contains__(self, char: str) -> bool:
        return char in self._ids

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of ``text`` that the vocabulary does not hold, in order of appearance."""
        return sorted(set(text) - set(self._ids), key=text.index)

    def encode(self, text: str) -> list[int]:
        """Character ids; characters outside the vocabulary become ``UNK``."""
        ids = self._ids
        return [ids.get(c, UNK) for c in text]

    def decode(self, ids: Iterable[int], stop_at_eot: bool = True) -> str:
        """Text for ``ids``; stops at ``EOT``; padding is skipped and unknown ids shown as ``?``."""
        out = []
        offset = len(RESERVED)
        for i in ids:
            i = int(i)
            if i == EOT and stop_at_eot:
                break
            if i >= offset and i - offset < len(self.chars):
                out.append(self.chars[i - offset])
            elif i == UNK:
                out.append("?")
        return "".join(out)

    def to_dict(self) -> dict:
        return {"format": 1, "reserved": list(RESERVED), "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict) -> Vocab:
        if not isinstance(data, dict) or not isinstance(data.get("chars"), list):
            raise ValueError("vocab JSON must be an object with a 'chars' list")
        if data.get("reserved", list(RESERVED)) != list(RESERVED):
            raise ValueError(f"vocab reserved tokens must be {list(RESERVED)}")
        return cls(data["chars"])

    def save(self, path: str | os.PathLike) -> None:
        fileio.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read vocabulary {path}: {exc}") from exc

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars
