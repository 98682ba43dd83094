"""The model directory: its files, and saving and validated loading of a trained model.

Everything that *uses* a trained model (the API, the CLI, evaluation, export, inspection,
scripts) imports this module, never the training module. A model directory holds::

    musicseq.json   format version, model and training configs, data, the exact command
    vocab.json      the characters, in id order
    model.keras     the Keras model (weights only: no optimizer state)
    history.json    per-epoch losses, learning rate, speed; steps, tokens, weights digest
    loss.png        the training curves (written by training)
    checkpoint/     resumable training state (written by training)

Every file is written atomically. The configuration file is not called ``config.json``:
Keras takes a directory holding ``config.json`` for an unzipped ``.keras`` file, so
``keras.saving.load_model(model_dir)`` failed with an ``UnboundLocalError``; now Keras says
the format is not supported, and ``keras.saving.load_model(model_dir / "model.keras")``
(after ``import musicseq.models``) or :meth:`ModelDir.load` load it. Directories written by
earlier versions (``config.json``, format 1) still load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musicseq import __version__, fileio
from musicseq.config import ModelConfig, TrainConfig, from_dict, to_dict
from musicseq.errors import UserError
from musicseq.vocab import Vocab

FORMAT_VERSION = 2  # 2: musicseq.json; 1: config.json (still read)
READABLE_FORMATS = (1, 2)
CONFIG_FILE = "musicseq.json"
LEGACY_CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
VOCAB_FILE = "vocab.json"
HISTORY_FILE = "history.json"
LOSS_PLOT = "loss.png"
CHECKPOINT_DIR = "checkpoint"
MAX_JSON_BYTES = 1024 * 1024  # a musicseq.json / vocab.json larger than this is refused


def weights_digest(model) -> str:
    """A short SHA-256 of all weights: equal digests mean bit-identical models."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def config_path(path: str | Path) -> Path:
    """The directory's configuration file: ``musicseq.json``, or a format-1 ``config.json``."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file() and (path / LEGACY_CONFIG_FILE).is_file():
        return path / LEGACY_CONFIG_FILE
    return path / CONFIG_FILE


def read_meta(path: str | Path) -> dict:
    """The directory's configuration as a dict (format checked, configs not yet parsed)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"model directory not found: {path}")
    meta_file = config_path(path)
    for file in (meta_file, path / VOCAB_FILE, path / MODEL_FILE):
        if not file.is_file():
            raise UserError(f"{path} is not a musicseq model directory: {file.name} is missing")
    for file in (meta_file, path / VOCAB_FILE):
        if file.stat().st_size > MAX_JSON_BYTES:
            raise UserError(
                f"{file} is larger than {MAX_JSON_BYTES // 1024} KB: not a musicseq file"
            )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {meta_file}: {exc}") from exc
    found = meta.get("format") if isinstance(meta, dict) else None
    if found not in READABLE_FORMATS:
        raise UserError(
            f"{path} was written by an incompatible musicseq (model format {found!r}, "
            f"this version reads {', '.join(map(str, READABLE_FORMATS))})"
        )
    return meta


@dataclass(frozen=True)
class ModelDir:
    """A loaded model directory: the Keras model, its config and vocabulary, and the rest of
    ``musicseq.json`` (training config, data, command) as ``meta``."""

    path: Path
    model: Any
    config: ModelConfig
    vocab: Vocab
    meta: dict = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, path: str | Path) -> ModelDir:
        """Load and validate; raises :class:`UserError` naming what is wrong.

        The ``.keras`` file is loaded with ``safe_mode=True``: no code from the file is run.
        """
        path = Path(path)
        meta = read_meta(path)
        try:
            config = from_dict(ModelConfig, meta.get("model"))
            config.validate()
            vocab = Vocab.load(path / VOCAB_FILE)
        except (TypeError, ValueError) as exc:
            raise UserError(f"invalid model directory {path}: {exc}") from exc
        if len(vocab) != config.vocab_size:
            raise UserError(
                f"{path}: vocab.json has {len(vocab)} tokens but the model expects "
                f"{config.vocab_size}"
            )
        model = _load_keras(path / MODEL_FILE)
        width = model.output_shape[-1]
        if width != len(vocab):
            raise UserError(
                f"{path}: the model predicts {width} tokens but vocab.json has {len(vocab)}"
            )
        return cls(path, model, config, vocab, meta)

    @property
    def train_config(self) -> TrainConfig | None:
        raw = self.meta.get("train")
        return from_dict(TrainConfig, raw) if isinstance(raw, dict) else None

    @property
    def data(self) -> str:
        """The training data the model was trained on, as recorded ("" if unknown)."""
        return str(self.meta.get("data") or "")

    def history(self) -> dict:
        path = self.path / HISTORY_FILE
        return json.loads(path.read_text()) if path.is_file() else {}


def _load_keras(file: Path):
    import keras

    from musicseq.models import register_custom_objects

    register_custom_objects()
    try:
        return keras.saving.load_model(file, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Lambda" in first:  # Keras' safe mode refused code embedded in the file
            first = "it carries a Lambda layer (Python code); refused, musicseq never runs code from model files"
        raise UserError(f"cannot load {file}: {first.split('. ')[0]}") from exc


def load_model_dir(path: str | Path):
    """``(model, model_config, vocab)`` of a model directory: :meth:`ModelDir.load`, unpacked."""
    loaded = ModelDir.load(path)
    return loaded.model, loaded.config, loaded.vocab


def save_model_dir(
    out_dir: str | Path,
    model,
    model_config: ModelConfig,
    train_config: TrainConfig,
    vocab: Vocab,
    history: dict,
    data: str = "",
    command: str = "",
) -> Path:
    """Write the model directory's files (all but ``loss.png``, which training draws)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model_file(model, out / MODEL_FILE)
    vocab.save(out / VOCAB_FILE)
    fileio.write_json(
        out / CONFIG_FILE,
        {
            "format": FORMAT_VERSION,
            "musicseq_version": __version__,
            "model": to_dict(model_config),
            "train": to_dict(train_config),
            "data": data,
            **({"command": command} if command else {}),
        },
    )
    if (out / LEGACY_CONFIG_FILE).is_file():  # an older run's config would shadow nothing, but
        (out / LEGACY_CONFIG_FILE).unlink()  # it would make Keras mistake the directory again
    fileio.write_json(out / HISTORY_FILE, history)
    return out


def save_model_file(model, path: str | Path) -> None:
    """Write ``model.keras`` with the weights only: no optimizer state.

    Adam's two moment tensors would triple the file; resuming uses ``checkpoint/``, which
    keeps them, and loading a model directory never compiles it.
    """
    if getattr(model, "optimizer", None) is not None:
        # from_config, not clone_model: Keras 3 clones the compile state (and optimizer) too.
        bare = type(model).from_config(model.get_config())
        bare.set_weights(model.get_weights())
        model = bare
    with fileio.atomic_path(Path(path)) as tmp:
        model.save(tmp)
