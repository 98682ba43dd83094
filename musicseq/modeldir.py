"""The model directory: its files, and saving and validated loading of a trained model.

Everything that *uses* a trained model (the API, the CLI, evaluation, export, inspection,
scripts) imports this module, never the training module. A model directory holds::

    musicseq.json   format version, model and training configs, data, the exact command
    vocab.json      the characters, in id order
    model.keras     the Keras model (weights only: no optimizer state)
    history.json    per-epoch losses, learning rate, speed; steps, tokens, weights digest
    loss.png        the training curves (written by training)
    checkpoint/     resumable training state (written by training)

A model is named by its directory, or by the directory's name alone: :func:`resolve` looks
for ``NAME`` in ``./models``, in each directory of ``$MUSICSEQ_MODELS`` and among the shipped
models (the repository's ``saved_models/``, or ``musicseq/saved_models`` in an installed
wheel), in that order; :func:`list_models` lists what it finds.

Every file is written atomically. The configuration file is not called ``config.json``:
Keras takes a directory holding ``config.json`` for an unzipped ``.keras`` file, so
``keras.saving.load_model(model_dir)`` failed with an ``UnboundLocalError``; now Keras says
the format is not supported, and ``keras.saving.load_model(model_dir / "model.keras")``
(after ``import musicseq.models``) or :meth:`ModelDir.load` load it. Directories written by
earlier versions (``config.json``, format 1) still load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musicseq import __version__, fileio
from musicseq.config import ModelConfig, SampleConfig, TrainConfig, from_dict, to_dict
from musicseq.errors import MusicseqWarning, UserError
from musicseq.vocab import Vocab

# The sampling settings that change how often a constrained repeat bias brings bars back.
SAMPLING_SHAPE = ("temperature", "top_k", "top_p")
_SAMPLE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SampleConfig)}

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
METRICS_FILE = "metrics.json"  # written by scripts/model_card.py: held-out loss, parameters
MODELS_ENV = "MUSICSEQ_MODELS"  # more directories of models, separated like $PATH
LOCAL_MODELS = Path("models")  # where `musicseq train --out models/NAME` puts a user's models
PACKAGE_DIR = Path(__file__).resolve().parent


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


def is_model_dir(path: Path) -> bool:
    """A directory with a musicseq configuration file (complete or not: :func:`read_meta`
    checks the rest)."""
    return path.is_dir() and config_path(path).is_file()


def shipped_models_dirs() -> list[Path]:
    """Where the shipped models are: ``musicseq/saved_models`` in an installed wheel, the
    repository's ``saved_models/`` in a source checkout."""
    places = (PACKAGE_DIR / "saved_models", PACKAGE_DIR.parent / "saved_models")
    return [place for place in places if place.is_dir()]


def search_path(environ: dict | None = None) -> list[Path]:
    """The directories searched, in order, for a model given by name: ``./models``, each
    directory of ``$MUSICSEQ_MODELS``, the shipped models."""
    environ = os.environ if environ is None else environ
    extra = [Path(p).expanduser() for p in environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    return [LOCAL_MODELS, *extra, *shipped_models_dirs()]


def _is_name(text: str) -> bool:
    """A bare name (``folk-gru``), not a path (``./folk-gru``, ``models/x``, ``~/m``)."""
    separators = [os.sep, "/"] + ([os.altsep] if os.altsep else [])
    return bool(text) and not text.startswith((".", "~")) and not any(s in text for s in separators)


def resolve(name_or_path: str | Path, search: list[Path] | None = None) -> Path:
    """The model directory meant by ``name_or_path``: the path itself when it exists, else,
    for a bare name, the first ``DIR/NAME`` holding a model among ``search`` (default
    :func:`search_path`). Raises :class:`UserError` listing the known models otherwise."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path
    search = search_path() if search is None else search
    if _is_name(text):
        for folder in search:
            if is_model_dir(folder / text):
                return folder / text
    known = sorted({info.name for info in list_models(search)})
    choices = f"known models: {', '.join(known)}" if known else "no models found"
    if _is_name(text):
        places = ", ".join(show_place(folder) for folder in search)
        raise UserError(f"no model named {text!r} (looked in {places}); {choices}")
    raise UserError(f"model directory not found: {text}; {choices}")


def show_place(path: Path) -> str:
    """A path as a user would type it: ``./models`` rather than ``models``."""
    return str(path) if path.is_absolute() or str(path).startswith(".") else f"./{path}"


@dataclass(frozen=True)
class ModelInfo:
    """What ``musicseq models`` shows of one model directory, read without TensorFlow."""

    name: str
    path: Path
    kind: str
    parameters: int | None
    bytes_on_disk: int
    held_out: float | None  # nats per character
    held_out_source: str  # "test" (metrics.json), "validation" (history.json) or ""
    shadowed: bool  # an earlier directory of the search path has a model of this name


def list_models(search: list[Path] | None = None) -> list[ModelInfo]:
    """Every model directory in the search path (default :func:`search_path`), in search
    order; a name found twice is used from its first place (the later ones are shadowed)."""
    found, seen = [], set()
    for folder in search_path() if search is None else search:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if is_model_dir(path):
                found.append(describe(path, shadowed=path.name in seen))
                seen.add(path.name)
    return found


def describe(path: Path, shadowed: bool = False) -> ModelInfo:
    """Kind, parameters, size and held-out loss of a model directory (what is unreadable
    stays None)."""

    def read(name: str) -> dict:
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    model = read(config_path(path).name).get("model")
    kind = model.get("kind", "?") if isinstance(model, dict) else "?"
    metrics, history = read(METRICS_FILE), read(HISTORY_FILE)
    held_out, source = metrics.get("test_nats_per_char"), "test"
    if not isinstance(held_out, (int, float)):
        losses = [v for v in history.get("val_loss") or [] if isinstance(v, (int, float))]
        held_out, source = (min(losses), "validation") if losses else (None, "")
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    parameters = count_parameters(path / MODEL_FILE)
    return ModelInfo(path.name, path, kind, parameters, size, held_out, source, shadowed)


def count_parameters(keras_file: Path) -> int | None:
    """Weights in a ``.keras`` file (its HDF5 weights, read with h5py; no TensorFlow)."""
    import io
    import zipfile

    try:
        import h5py

        with zipfile.ZipFile(keras_file) as archive:
            data = archive.read("model.weights.h5")
        total = 0

        def add(name, item):
            nonlocal total
            if isinstance(item, h5py.Dataset) and not name.startswith("optimizer"):
                total += item.size

        with h5py.File(io.BytesIO(data), "r") as weights:
            weights.visititems(add)
        return total
    except Exception:  # a missing or foreign file: the column shows "-"
        return None


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
        """Load and validate a model directory, given by path or by name (:func:`resolve`);
        raises :class:`UserError` naming what is wrong.

        The ``.keras`` file is loaded with ``safe_mode=True``: no code from the file is run.
        """
        path = resolve(path)
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
        model = _compute_natively(_load_keras(path / MODEL_FILE), config, vocab)
        width = model.output_shape[-1]
        if width != len(vocab):
            raise UserError(
                f"{path}: the model predicts {width} tokens but vocab.json has {len(vocab)}"
            )
        return cls(path, model, config, vocab, meta)

    @property
    def name(self) -> str:
        """The model's name: its directory's name (``folk-transformer``)."""
        return self.path.resolve().name

    @property
    def train_config(self) -> TrainConfig | None:
        raw = self.meta.get("train")
        return from_dict(TrainConfig, raw) if isinstance(raw, dict) else None

    @property
    def data(self) -> str:
        """The training data the model was trained on, as recorded ("" if unknown)."""
        return str(self.meta.get("data") or "")

    def sampling_defaults(self, constrain: bool) -> dict:
        """The sampling settings this model is generated with when the caller gives none:
        ``musicseq.json``'s ``"sampling"`` → ``"free"`` or ``"constrained"`` (SampleConfig
        fields, measured for the model and written by ``scripts/sampling_sweep.py --set``);
        ``{}`` when the model has none (SampleConfig's defaults then apply)."""
        chosen = (self.meta.get("sampling") or {}).get("constrained" if constrain else "free")
        if not isinstance(chosen, dict):
            return {}
        fields = {f.name: f for f in dataclasses.fields(SampleConfig)}
        unknown = set(chosen) - set(fields) | set(chosen) & {"num", "seed", "prime"}
        if unknown:
            raise UserError(
                f"{self.path}: musicseq.json sets unknown sampling fields: {', '.join(sorted(unknown))}"
            )
        out = {}
        for name, value in chosen.items():
            kind = type(fields[name].default)
            if isinstance(value, bool) or not isinstance(value, (kind, int)):
                raise UserError(
                    f"{self.path}: musicseq.json sampling {name} must be a {kind.__name__}, "
                    f"got {value!r}"
                )
            out[name] = kind(value)
        return out

    def sampling_settings(self, constrain: bool, given: dict) -> dict:
        """:meth:`sampling_defaults` under the caller's ``given`` options, merged.

        A model's constrained ``repeat_bias`` is measured at its constrained temperature,
        top-k and top-p (SampleConfig's defaults unless it sets them): nucleus sampling, for
        one, concentrates probability on the characters the bias favours, so the same bias
        brings bars back far more often (the shipped Transformer at top-p 0.9: bar repetition
        0.414 against 0.234 and the corpus's 0.274). A caller who changes those settings
        under ``constrain`` without giving ``repeat_bias`` gets a :class:`MusicseqWarning`."""
        defaults = self.sampling_defaults(constrain)
        if constrain and "repeat_bias" in defaults and "repeat_bias" not in given:
            measured = {name: defaults.get(name, _SAMPLE_DEFAULTS[name]) for name in SAMPLING_SHAPE}
            changed = [n for n in SAMPLING_SHAPE if n in given and given[n] != measured[n]]
            if changed:
                at = ", ".join(f"{n.replace('_', '-')} {measured[n]:g}" for n in SAMPLING_SHAPE)
                now = ", ".join(f"{n.replace('_', '-')} {given[n]:g}" for n in changed)
                warnings.warn(
                    f"this model's constrained repeat bias ({defaults['repeat_bias']:g}) was "
                    f"measured at {at}; with {now} bars come back more or less often than "
                    "measured: give the repeat bias too (docs/form.md)",
                    MusicseqWarning,
                    stacklevel=3,
                )
        return {**defaults, **given}

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


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16 or AMX), from Linux's
    ``/proc/cpuinfo``; False where that cannot be read."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return any(flag in info.split() for flag in ("avx512_bf16", "amx_bf16"))


def _compute_natively(model, config: ModelConfig, vocab: Vocab):
    """A model trained under mixed bfloat16 (the shipped default) computes in bfloat16 where
    that is fast: a GPU, or a CPU with bfloat16 instructions. Elsewhere TensorFlow would
    emulate it, so the same (float32) weights are rebuilt into a float32 model: the shipped
    default scores 0.9518 nats/char so against 0.9519 in bfloat16 (docs/benchmarks.md)."""
    if "mixed_bfloat16" not in {layer.dtype_policy.name for layer in model.layers}:
        return model
    import tensorflow as tf

    if cpu_has_bfloat16() or tf.config.list_physical_devices("GPU"):
        return model
    return float32_copy(model, config, vocab)


def float32_copy(model, config: ModelConfig, vocab: Vocab):
    """``model`` computing in float32: a mixed-precision model's (float32) weights rebuilt into
    a float32 model of the same architecture; a float32 model as it is."""
    if {layer.dtype_policy.name for layer in model.layers} <= {"float32"}:
        return model
    import keras

    from musicseq.models import build_model

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        rebuilt = build_model(config, chars=vocab.chars if config.metrical else None)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


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
