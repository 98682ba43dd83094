"""Training: compile, fit, callbacks, and the model directory.

A model directory holds ``config.json`` (model + training config, format version),
``vocab.json``, ``model.keras``, ``history.json`` and ``loss.png``. Every file is written
atomically. This module never builds layers itself: it calls :func:`musicseq.models.build_model`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

from musicseq import __version__, fileio
from musicseq.config import FORMAT_VERSION, ModelConfig, TrainConfig, from_dict, to_dict
from musicseq.errors import UserError
from musicseq.vocab import Vocab

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
HISTORY_FILE = "history.json"
LOSS_PLOT = "loss.png"


def compile_model(model, train_config: TrainConfig) -> None:
    import keras

    optimizer = keras.optimizers.Adam(train_config.learning_rate, clipnorm=train_config.clipnorm)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss)


def plan_steps(train_config: TrainConfig, steps_in_pass: int) -> tuple[int, int]:
    """(epochs, steps per epoch) for the requested budget.

    ``--steps N`` gives about N steps in epochs of at most one pass (or ``steps_per_epoch``);
    ``--minutes`` gives short epochs (so validation is reported often) until time runs out.
    """
    per_epoch = train_config.steps_per_epoch or steps_in_pass
    if train_config.minutes is not None:
        return 1_000_000, min(per_epoch, 200)
    if train_config.steps is not None:
        per_epoch = min(per_epoch, train_config.steps)
        epochs = math.ceil(train_config.steps / per_epoch)
        return epochs, math.ceil(train_config.steps / epochs)
    return train_config.epochs, per_epoch


def _callbacks(train_config: TrainConfig, tokens_per_step: int, log: Callable[[str], None]):
    import keras

    class Report(keras.callbacks.Callback):
        """Stops at the time budget; logs nats/char, bits/char and tokens/s per epoch."""

        def on_train_begin(self, logs=None):
            self.start = self.epoch_start = time.monotonic()
            self.steps = 0

        def on_epoch_begin(self, epoch, logs=None):
            self._flush()
            self.epoch_start, self.epoch_steps = time.monotonic(), 0

        def on_train_end(self, logs=None):
            self._flush()

        def _flush(self):
            # Printed after Keras' own end-of-epoch line, not in the middle of its progress bar.
            if getattr(self, "pending", None):
                log(self.pending)
            self.pending = None

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            self.epoch_steps += 1
            self.last_batch_end = time.monotonic()
            budget = train_config.minutes
            if budget is not None and time.monotonic() - self.start >= budget * 60:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            seconds = max(self.last_batch_end - self.epoch_start, 1e-9)  # training time only
            logs["tokens_per_second"] = self.epoch_steps * tokens_per_step / seconds
            parts = [f"epoch {epoch + 1}: train {logs.get('loss', float('nan')):.4f} nats/char"]
            if "val_loss" in logs:
                val = logs["val_loss"]
                parts.append(f"validation {val:.4f} nats/char ({val / math.log(2):.4f} bits/char)")
            parts.append(f"{logs['tokens_per_second']:.0f} tokens/s")
            self.pending = ", ".join(parts)

    return [Report()]


def train(
    data: str | Path,
    out_dir: str | Path,
    model_config: ModelConfig,
    train_config: TrainConfig,
    log: Callable[[str], None] = print,
    verbose: int | str = "auto",
) -> dict:
    """Train a model on ``data`` (a corpus directory or ``.abc`` file/dir) into ``out_dir``.

    Returns the history dict (per-epoch ``loss``, ``val_loss``, ``tokens_per_second``).
    """
    train_config.validate()
    from musicseq.corpus import load_split
    from musicseq.data import encode_stream, eval_dataset, steps_per_pass, training_dataset

    train_texts = load_split(data, "train")
    if not train_texts:
        raise UserError(f"no training tunes in {data}")
    val_texts = load_split(data, "validation")
    vocab = Vocab.from_texts(train_texts)
    model_config = dataclasses.replace(model_config, vocab_size=len(vocab))
    if model_config.kind == "transformer" and train_config.seq_len > model_config.context:
        raise UserError(
            f"--seq-len {train_config.seq_len} is longer than the Transformer's context {model_config.context}"
        )
    try:
        model_config.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from exc

    import keras

    keras.utils.set_random_seed(train_config.seed)
    train_stream = encode_stream(train_texts, vocab)
    seq_len, batch = train_config.seq_len, train_config.batch_size
    train_ds = training_dataset(train_stream, seq_len, batch, train_config.seed)
    val_ds = None
    val_stream = encode_stream(val_texts, vocab)
    if len(val_stream) > seq_len:
        val_ds = eval_dataset(val_stream, seq_len, batch)
    else:
        log(
            f"notice: the validation split has {len(val_texts)} tunes, too few to report validation loss"
        )

    from musicseq.models import build_model

    model = build_model(model_config)
    compile_model(model, train_config)
    epochs, per_epoch = plan_steps(train_config, steps_per_pass(len(train_stream), seq_len, batch))
    log(
        f"training {model_config.kind} ({model.count_params():,} parameters) on "
        f"{len(train_texts)} tunes / {len(train_stream):,} characters; vocabulary {len(vocab)}; "
        f"batch {batch} x {seq_len} characters"
    )
    started = time.monotonic()
    fit = model.fit(
        train_ds,
        epochs=epochs,
        steps_per_epoch=per_epoch,
        validation_data=val_ds,
        callbacks=_callbacks(train_config, batch * seq_len, log),
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself
    )
    history = {k: [float(v) for v in values] for k, values in fit.history.items()}
    history["seconds"] = time.monotonic() - started
    history["steps"] = int(model.optimizer.iterations.numpy())
    history["tokens"] = history["steps"] * batch * seq_len
    save_model_dir(out_dir, model, model_config, train_config, vocab, history, data=str(data))
    log(f"saved model to {out_dir} after {history['steps']} steps in {history['seconds']:.0f} s")
    return history


def save_model_dir(out_dir, model, model_config, train_config, vocab, history, data="") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with fileio.atomic_path(out / MODEL_FILE) as tmp:
        model.save(tmp)
    vocab.save(out / VOCAB_FILE)
    fileio.write_json(
        out / CONFIG_FILE,
        {
            "format": FORMAT_VERSION,
            "musicseq_version": __version__,
            "model": to_dict(model_config),
            "train": to_dict(train_config),
            "data": data,
        },
    )
    fileio.write_json(out / HISTORY_FILE, history)
    plot_history(history, out / LOSS_PLOT)


def plot_history(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(history.get("loss", [])) + 1)
    ax.plot(epochs, history.get("loss", []), label="train")
    if history.get("val_loss"):
        ax.plot(epochs, history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (nats/char)")
    ax.set_title("musicseq training loss")
    ax.legend()
    fig.tight_layout()
    with fileio.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def load_model_dir(model_dir: str | Path):
    """Load ``(model, model_config, vocab)`` from a model directory, validating it first.

    The ``.keras`` file is loaded with ``safe_mode=True``: no code from the file is run.
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise UserError(f"model directory not found: {path}")
    for name in (CONFIG_FILE, VOCAB_FILE, MODEL_FILE):
        if not (path / name).is_file():
            raise UserError(f"{path} is not a musicseq model directory: {name} is missing")
    try:
        raw = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path / CONFIG_FILE}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_VERSION:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise UserError(
            f"{path} was written by an incompatible musicseq (model format {found!r}, "
            f"this version reads {FORMAT_VERSION})"
        )
    try:
        model_config = from_dict(ModelConfig, raw.get("model"))
        model_config.validate()
        vocab = Vocab.load(path / VOCAB_FILE)
    except (TypeError, ValueError) as exc:
        raise UserError(f"invalid model directory {path}: {exc}") from exc
    if len(vocab) != model_config.vocab_size:
        raise UserError(
            f"{path}: vocab.json has {len(vocab)} tokens but the model expects {model_config.vocab_size}"
        )

    import keras

    from musicseq.models import register_custom_objects

    register_custom_objects()
    try:
        model = keras.saving.load_model(path / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load {path / MODEL_FILE}: {first}") from exc
    embedding = model.get_layer("embedding") if _has_layer(model, "embedding") else None
    if embedding is None or embedding.input_dim != model_config.vocab_size:
        raise UserError(f"{path}: the model file does not match config.json (embedding size)")
    return model, model_config, vocab


def _has_layer(model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)
