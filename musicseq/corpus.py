"""The training corpus: the embedded default (music21's bundled ABC), user files, the split.

The split is a pure function of a tune's content (a hash), so a tune stays in the same split
when other tunes are added or removed. Exact duplicates (same content, different X:) are kept
once. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from musicseq.errors import UserError
from musicseq.notation import ParsedTune, ParseResult, decode_bytes, parse_tunebook

SPLITS = ("train", "validation", "test")
# Fractions of tunes per split, by content hash: 90% / 5% / 5%.
SPLIT_BOUNDS = (0.90, 0.95)
DEFAULT_COLLECTIONS = ("oneills1850", "ryansMammoth", "airdsAirs", "miscFolk")
# Collections whose licence or kind of music differs: only on request.
OPTIONAL_COLLECTIONS = ("essenFolksong", "nottingham-dataset")
MAX_FILE_BYTES = 64 * 1024 * 1024
MANIFEST = "manifest.json"


def music21_corpus_dir() -> Path:
    """Where music21 keeps its bundled corpus (imports music21's package only, not music21)."""
    import importlib.util

    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "music21 is not installed; it provides the default corpus (pip install music21)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "corpus"


def collection_files(collections: tuple[str, ...] | list[str]) -> list[Path]:
    """The ``.abc`` files of the named music21 collections, in a fixed order."""
    base = music21_corpus_dir()
    known = DEFAULT_COLLECTIONS + OPTIONAL_COLLECTIONS
    files: list[Path] = []
    for name in collections:
        if name not in known:
            raise UserError(f"unknown collection {name!r}; choose from {', '.join(known)}")
        found = sorted((base / name).rglob("*.abc"))
        if not found:
            raise UserError(f"collection {name!r} has no .abc files under {base / name}")
        files.extend(found)
    return files


def find_abc_files(path: str | os.PathLike) -> list[Path]:
    """All ``.abc`` files at ``path`` (a file, or a directory searched recursively).

    Symbolic links to directories are not followed, so link loops cannot hang the search.
    """
    root = Path(path)
    if not root.exists():
        raise UserError(f"no such file or directory: {root}")
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise UserError(f"not a file or directory: {root}")
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        files.extend(Path(dirpath) / n for n in sorted(filenames) if n.lower().endswith(".abc"))
    if not files:
        raise UserError(f"no .abc files in {root}")
    return files


def read_tunebook(path: Path) -> ParseResult:
    """Parse one file; an unreadable or oversized file becomes an error, not an exception."""
    from musicseq.notation import ABCError

    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise OSError(f"file is larger than {MAX_FILE_BYTES // 2**20} MB")
        data = path.read_bytes()
    except OSError as exc:
        error = ABCError(str(path), 0, f"cannot read file ({exc.strerror or exc})")
        return ParseResult(errors=[error])
    return parse_tunebook(decode_bytes(data), str(path))


def parse_files(files: list[Path]) -> ParseResult:
    """Parse ``files`` and drop exact duplicates (same content under another X: number)."""
    result = ParseResult()
    seen: set[str] = set()
    for path in files:
        parsed = read_tunebook(path)
        result.errors.extend(parsed.errors)
        for tune in parsed.tunes:
            digest = content_hash(tune)
            if digest not in seen:
                seen.add(digest)
                result.tunes.append(tune)
    return result


def content_hash(tune: ParsedTune) -> str:
    return hashlib.sha1(tune.content_text().encode("ascii")).hexdigest()


def split_of(tune: ParsedTune) -> str:
    """train / validation / test, from the tune's content alone (stable under additions)."""
    fraction = int(content_hash(tune)[:8], 16) / 0x1_0000_0000
    if fraction < SPLIT_BOUNDS[0]:
        return "train"
    return "validation" if fraction < SPLIT_BOUNDS[1] else "test"


def split_tunes(tunes: list[ParsedTune]) -> dict[str, list[ParsedTune]]:
    splits: dict[str, list[ParsedTune]] = {name: [] for name in SPLITS}
    for tune in tunes:
        splits[split_of(tune)].append(tune)
    return splits


@dataclass
class Corpus:
    """Tunes per split plus what was rejected on the way."""

    splits: dict[str, list[ParsedTune]]
    errors: list = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def texts(self, split: str) -> list[str]:
        return [t.text for t in self.splits[split]]


def build_corpus(files: list[Path]) -> Corpus:
    """Parse, de-duplicate and split ``files``; raises :class:`UserError` if no tune survives."""
    parsed = parse_files(files)
    if not parsed.tunes:
        if parsed.errors:
            raise UserError(
                f"no usable tunes in {len(files)} file(s); {len(parsed.errors)} rejected, first: {parsed.errors[0]}"
            )
        raise UserError(f"no tunes in {len(files)} file(s): no line starts with X:")
    return Corpus(split_tunes(parsed.tunes), parsed.errors, [str(f) for f in files])


def write_corpus(corpus: Corpus, out_dir: str | os.PathLike, describe: dict | None = None) -> dict:
    """Write ``train.abc``, ``validation.abc``, ``test.abc`` and ``manifest.json``.

    Every file is written to a temporary name first and the renames happen only after all of
    them were written, so a failure leaves the previous corpus as it was.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": 1,
        "description": describe or {},
        "sources": corpus.sources,
        "splits": {},
        "errors": {"count": len(corpus.errors), "list": [str(e) for e in corpus.errors]},
    }
    payloads = {}
    for name in SPLITS:
        text = "\n".join(t.text for t in corpus.splits[name])
        data = text.encode("ascii")
        payloads[f"{name}.abc"] = data
        manifest["splits"][name] = {
            "file": f"{name}.abc",
            "tunes": len(corpus.splits[name]),
            "characters": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    payloads[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    _write_all(out, payloads)
    return manifest


def _write_all(out: Path, payloads: dict[str, bytes]) -> None:
    """Write every payload to a temporary file, then rename all of them into place."""
    temps: list[tuple[Path, Path]] = []
    try:
        for name, data in payloads.items():
            tmp = out / f".{name}.{os.getpid()}.tmp"
            temps.append((tmp, out / name))
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        for tmp, final in temps:
            os.replace(tmp, final)
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()


def is_corpus_dir(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def load_split(data: str | os.PathLike, split: str) -> list[str]:
    """ParsedTune texts of one split from a built corpus directory or any ``.abc`` file/dir.

    For raw ``.abc`` input the same content-hash split is applied on the fly.
    """
    path = Path(data)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if is_corpus_dir(path):
        file = path / f"{split}.abc"
        if not file.is_file():
            raise UserError(f"corpus at {path} has no {split}.abc; rebuild it with `musicseq data`")
        return [t.text for t in read_tunebook(file).tunes]
    corpus = build_corpus(find_abc_files(path))
    return corpus.texts(split)


def evaluation_set(data: str | os.PathLike, whole: bool = True) -> tuple[list[str], str]:
    """The tunes to evaluate on, and a phrase saying which they are.

    A built corpus directory gives its test split. Any other ``.abc`` file or directory is
    a test set of its own, all of it (``whole``), or, when it is the data a model was
    trained on, the tunes the content-hash split kept out of training.
    """
    path = Path(data)
    if is_corpus_dir(path) or not whole:
        return load_split(path, "test"), f"the test split of {data}"
    texts = [t.text for t in parse_files(find_abc_files(path)).tunes]
    return texts, f"all {len(texts)} tunes of {data}"


def build_and_write(
    out_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    collections: list[str] | tuple[str, ...] | None = None,
    include: list[str] | tuple[str, ...] = (),
) -> tuple[dict, Corpus, list[Path]]:
    """Build a corpus from ``data`` (an ``.abc`` file or directory) or from music21's
    ``collections`` (default: :data:`DEFAULT_COLLECTIONS`) plus ``include``, and write it to
    ``out_dir``. Returns ``(manifest, corpus, files)``."""
    if data is not None:
        files = find_abc_files(data)
        describe: dict = {"source": str(data)}
    else:
        names = list(collections or DEFAULT_COLLECTIONS) + list(include)
        files = collection_files(names)
        describe = {"source": "music21 bundled corpus", "collections": names}
    built = build_corpus(files)
    return write_corpus(built, out_dir, describe), built, files


def ensure_default(path: str | os.PathLike) -> bool:
    """Build the default corpus at ``path`` unless a corpus is there; True if it was built."""
    if is_corpus_dir(Path(path)):
        return False
    build_and_write(path)
    return True
