"""Training: compile, fit, callbacks, and the model directory.

A model directory holds ``config.json`` (model + training config, format version),
``vocab.json``, ``model.keras``, ``history.json``, ``loss.png``, TensorBoard ``logs/`` and a
resumable ``checkpoint/``. Every file is written atomically. This module never builds layers itself: it calls :func:`musicseq.models.build_model`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from musicseq import __version__, fileio
from musicseq.config import (
    BUDGET_FIELDS,
    FORMAT_VERSION,
    ModelConfig,
    TrainConfig,
    from_dict,
    to_dict,
)
from musicseq.errors import UserError
from musicseq.vocab import Vocab

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
HISTORY_FILE = "history.json"
LOSS_PLOT = "loss.png"
CHECKPOINT_DIR = "checkpoint"
MAX_JSON_BYTES = 1024 * 1024  # config.json / vocab.json larger than this are refused


def make_strategy(name: str):
    """A ``tf.distribute`` strategy by name; ``auto``: Mirrored for >1 GPU, one GPU, else default."""
    import tensorflow as tf

    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy(gpus[0].name)
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UserError(
                "--strategy multi_worker needs the TF_CONFIG environment variable (see README)"
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as exc:
            raise UserError(f"TF_CONFIG is not valid JSON: {exc}") from exc
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as exc:
            raise UserError(f"no TPU found: {str(exc).splitlines()[0]}") from exc
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"unknown strategy {name!r}")


def is_chief(strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs
    )


def learning_rate(train_config: TrainConfig, total_steps: int):
    import keras

    if train_config.lr_schedule == "constant":
        return train_config.learning_rate
    warmup = min(train_config.warmup_steps, max(total_steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else train_config.learning_rate,
        decay_steps=max(total_steps - warmup, 1),
        warmup_target=train_config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def use_xla(train_config: TrainConfig, model_config: ModelConfig | None) -> bool:
    """XLA for the train step: ``on``/``off``, or ``auto``: on for the fused LSTM/GRU on a
    single CPU replica, where it fuses each step's gate maths (measured faster:
    docs/benchmarks.md), else off. Call it inside the strategy's scope."""
    if train_config.jit_compile != "auto":
        return train_config.jit_compile == "on"
    if model_config is None or not (model_config.fused and model_config.kind in ("lstm", "gru")):
        return False
    import tensorflow as tf

    # Not with several replicas: XLA cannot reach variables mirrored on other devices.
    single_replica = tf.distribute.get_strategy().num_replicas_in_sync == 1
    return single_replica and not tf.config.list_logical_devices("GPU")


def compile_model(
    model, train_config: TrainConfig, total_steps: int = 1, model_config: ModelConfig | None = None
) -> None:
    import keras

    rate = learning_rate(train_config, total_steps)
    optimizer = keras.optimizers.Adam(rate, clipnorm=train_config.clipnorm)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss, jit_compile=use_xla(train_config, model_config))


def plan_steps(train_config: TrainConfig, steps_in_pass: int) -> tuple[int, int]:
    """(epochs, steps per epoch) for the requested budget.

    ``--steps N`` gives about N steps in epochs of at most one pass (or ``steps_per_epoch``);
    ``--minutes`` gives short epochs (so validation is reported often) until time runs out.
    """
    per_epoch = train_config.steps_per_epoch or steps_in_pass
    if train_config.minutes is not None:
        return 1_000_000, train_config.steps_per_epoch or min(steps_in_pass, 200)
    if train_config.steps is not None:
        per_epoch = min(per_epoch, train_config.steps)
        epochs = math.ceil(train_config.steps / per_epoch)
        return epochs, math.ceil(train_config.steps / epochs)
    return train_config.epochs, per_epoch


def weights_digest(model) -> str:
    """A short SHA-256 of all weights: equal digests mean bit-identical models."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


class _Checkpointer:
    """Resumable checkpoints in ``MODEL_DIR/checkpoint``: the model with its optimizer state
    (``model.keras``) and ``state.json`` (step, completed epochs, history, elapsed seconds).
    Both are written atomically, state last, so a kill at any moment leaves a usable pair.
    """

    def __init__(self, out_dir: Path, settings: dict, writer: bool):
        self.dir = out_dir / CHECKPOINT_DIR
        self.settings = settings
        self.writer = writer

    def load_state(self) -> dict | None:
        path = self.dir / "state.json"
        if not path.is_file() or not (self.dir / MODEL_FILE).is_file():
            return None
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"unreadable checkpoint {path} ({exc}); use --restart") from exc
        if state.get("settings") != self.settings:
            raise UserError(
                f"{self.dir} holds a checkpoint of a run with other settings; "
                "re-run with the same flags, or use --restart"
            )
        return state

    def save(self, model, step: int, epochs_done: int, history: dict, elapsed: float) -> None:
        if not self.writer:
            return
        with fileio.atomic_path(self.dir / MODEL_FILE) as tmp:
            model.save(tmp)
        state = {"step": step, "epochs_done": epochs_done, "history": history, "elapsed": elapsed,
                 "settings": self.settings}  # fmt: skip
        fileio.write_json(self.dir / "state.json", state)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _callbacks(train_config, tokens_per_step, log, checkpointer, run):
    """Report (budget, logs), checkpointing, TensorBoard and early stopping, in that order."""
    import keras

    class Report(keras.callbacks.Callback):
        """Stops at the time budget; adds tokens/s and the learning rate to the logs."""

        def on_train_begin(self, logs=None):
            self.start = self.epoch_start = self.last_batch_end = time.monotonic()
            self.pending = None

        def on_epoch_begin(self, epoch, logs=None):
            self._flush()
            self.epoch_start, self.epoch_steps = time.monotonic(), 0

        def on_train_end(self, logs=None):
            self._flush()

        def _flush(self):
            # Printed after Keras' own end-of-epoch line, not in the middle of its progress bar.
            if self.pending:
                log(self.pending)
            self.pending = None

        def on_train_batch_end(self, batch, logs=None):
            self.epoch_steps += 1
            self.last_batch_end = time.monotonic()
            step = int(self.model.optimizer.iterations.numpy())
            if step % train_config.save_every == 0:
                checkpointer.save(
                    self.model, step, run["epochs_done"], run["history"], run.elapsed()
                )
            if train_config.minutes is not None and run.elapsed() >= train_config.minutes * 60:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            seconds = max(self.last_batch_end - self.epoch_start, 1e-9)  # training time only
            logs["tokens_per_second"] = self.epoch_steps * tokens_per_step / seconds
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
            run.record(epoch, logs)
            step = int(self.model.optimizer.iterations.numpy())
            checkpointer.save(self.model, step, run["epochs_done"], run["history"], run.elapsed())
            self.pending = run.describe(epoch, logs)

    callbacks = [Report()]
    if train_config.tensorboard and checkpointer.writer:
        callbacks.append(
            keras.callbacks.TensorBoard(log_dir=str(run.out / "logs"), write_graph=False)
        )
    if train_config.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=train_config.early_stopping, restore_best_weights=True
            )
        )
    return callbacks


class _Run(dict):
    """Mutable bookkeeping of one training run across resumptions."""

    def __init__(self, out: Path, state: dict | None):
        super().__init__(
            history=(state or {}).get("history", {}),
            epochs_done=(state or {}).get("epochs_done", 0),
        )
        self.out = out
        self.previous = (state or {}).get("elapsed", 0.0)
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return self.previous + time.monotonic() - self.started

    def record(self, epoch: int, logs: dict) -> None:
        for key, value in logs.items():
            self["history"].setdefault(key, []).append(float(value))
        self["epochs_done"] = epoch + 1

    @staticmethod
    def describe(epoch: int, logs: dict) -> str:
        parts = [f"epoch {epoch + 1}: train {logs.get('loss', float('nan')):.4f} nats/char"]
        if "val_loss" in logs:
            val = logs["val_loss"]
            parts.append(f"validation {val:.4f} nats/char ({val / math.log(2):.4f} bits/char)")
        parts.append(f"{logs['tokens_per_second']:.0f} tokens/s")
        return ", ".join(parts)


def train(
    data: str | Path,
    out_dir: str | Path,
    model_config: ModelConfig,
    train_config: TrainConfig,
    log: Callable[[str], None] = print,
    verbose: int | str = "auto",
    restart: bool = False,
    command: str = "",
) -> dict:
    """Train a model on ``data`` (a corpus directory or ``.abc`` file/dir) into ``out_dir``.

    Resumes from ``out_dir/checkpoint`` when it holds a run with the same settings (unless
    ``restart``). Returns the history dict (per-epoch ``loss``, ``val_loss``,
    ``tokens_per_second``, ``learning_rate``; ``steps``, ``tokens``, ``seconds``).
    ``command``, when given, is written to config.json so that the run can be repeated.
    """
    try:
        train_config.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    from musicseq.corpus import load_split
    from musicseq.data import encode_stream, eval_dataset, steps_per_pass, training_dataset

    train_texts = load_split(data, "train")
    if not train_texts:
        raise UserError(f"no training tunes in {data}")
    val_texts = load_split(data, "validation")
    vocab = Vocab.from_texts(train_texts)
    model_config = dataclasses.replace(model_config, vocab_size=len(vocab))
    try:
        model_config.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if model_config.kind == "transformer" and train_config.seq_len != model_config.context:
        # A Transformer only generalises to positions it was trained on, and evaluation and
        # generation use its whole context: train on windows of exactly that length.
        log(
            f"notice: training the Transformer on windows of its context length {model_config.context}"
        )
        train_config = dataclasses.replace(train_config, seq_len=model_config.context)

    strategy = make_strategy(train_config.strategy)  # first: multi-worker must precede other ops
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(train_config.seed)
    if train_config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(train_config.precision)

    out = Path(out_dir)
    chief = is_chief(strategy)
    work_dir = out if chief else Path(tempfile.mkdtemp(prefix="musicseq-worker-"))
    settings = {
        "model": to_dict(model_config),
        "train": _resumable(train_config),
        "vocab": vocab.chars,
    }
    checkpointer = _Checkpointer(out, settings, writer=chief)
    if restart:
        if chief:
            checkpointer.clear()
        state = None
    else:
        state = checkpointer.load_state()

    replicas = strategy.num_replicas_in_sync
    seq_len, batch = train_config.seq_len, train_config.batch_size
    global_batch = batch * replicas
    train_stream = encode_stream(train_texts, vocab)
    # A resumed run draws a fresh (but seeded) data order from its step onwards.
    data_seed = train_config.seed + (state["step"] if state else 0)
    train_ds = training_dataset(train_stream, seq_len, global_batch, data_seed)
    val_ds = None
    val_stream = encode_stream(val_texts, vocab)
    if len(val_stream) > seq_len:
        val_ds = eval_dataset(val_stream, seq_len, global_batch)
    else:
        log(
            f"notice: the validation split has {len(val_texts)} tunes, too few to report validation loss"
        )
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        train_ds = train_ds.with_options(options)
        val_ds = val_ds.with_options(options) if val_ds is not None else None

    epochs, per_epoch = plan_steps(
        train_config, steps_per_pass(len(train_stream), seq_len, global_batch)
    )
    total_steps = epochs * per_epoch if train_config.minutes is None else 1_000_000
    from musicseq.models import build_model, register_custom_objects

    with strategy.scope():
        if state:
            register_custom_objects()
            model = keras.saving.load_model(checkpointer.dir / MODEL_FILE, safe_mode=True)
        else:
            model = build_model(model_config)
            compile_model(model, train_config, total_steps, model_config)
    step = int(model.optimizer.iterations.numpy())
    log(
        f"training {model_config.kind} ({model.count_params():,} parameters) on "
        f"{len(train_texts)} tunes / {len(train_stream):,} characters; vocabulary {len(vocab)}; "
        f"{type(strategy).__name__} with {replicas} replica(s): batch {batch} per replica, "
        f"{global_batch} global, x {seq_len} characters"
    )
    run = _Run(work_dir, state)
    if state:
        log(f"resuming from {checkpointer.dir} at step {step} (epoch {state['epochs_done'] + 1})")
    done_epochs = run["epochs_done"]
    out_of_time = train_config.minutes is not None and run.elapsed() >= train_config.minutes * 60
    if done_epochs < epochs and step < epochs * per_epoch and not out_of_time:
        callbacks = _callbacks(train_config, global_batch * seq_len, log, checkpointer, run)
        fit = (
            _fit_custom
            if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            else _fit_keras
        )
        # Finish an interrupted epoch with exactly its missing steps, then whole epochs.
        missing = (
            per_epoch - (step - done_epochs * per_epoch) if step > done_epochs * per_epoch else 0
        )
        run_epochs = functools.partial(fit, strategy, model, train_ds, val_ds, callbacks=callbacks,
                                       verbose=verbose, log=log)  # fmt: skip
        if missing > 0:
            run_epochs(done_epochs, done_epochs + 1, missing)
            done_epochs += 1
        if done_epochs < epochs and not getattr(model, "stop_training", False):
            run_epochs(done_epochs, epochs, per_epoch)
    history = dict(run["history"])
    history["seconds"] = run.elapsed()
    history["steps"] = int(model.optimizer.iterations.numpy())
    history["tokens"] = history["steps"] * global_batch * seq_len
    history["weights_sha256"] = weights_digest(model)
    save_model_dir(work_dir, model, model_config, train_config, vocab, history, data=str(data),
                   command=command)  # fmt: skip
    if not chief:
        shutil.rmtree(work_dir, ignore_errors=True)  # workers save to a scratch dir, as TF advises
    log(
        f"saved model to {out if chief else '(worker scratch dir, removed)'} after {history['steps']} steps "
        f"in {history['seconds']:.0f} s; weights sha256 {history['weights_sha256']}"
    )
    return history


def _resumable(train_config: TrainConfig) -> dict:
    """The settings a resumed run must share with the original (everything but the budget)."""
    return {k: v for k, v in to_dict(train_config).items() if k not in BUDGET_FIELDS}


def _fit_keras(
    strategy, model, train_ds, val_ds, initial_epoch, epochs, per_epoch, callbacks, verbose, log
):
    model.fit(
        train_ds,
        initial_epoch=initial_epoch,
        epochs=epochs,
        steps_per_epoch=per_epoch,
        validation_data=val_ds,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself
    )


def _fit_custom(
    strategy, model, train_ds, val_ds, initial_epoch, epochs, per_epoch, callbacks, verbose, log
):
    """A distributed training loop for MultiWorkerMirroredStrategy (Keras 3's ``fit`` fails
    there): ``experimental_distribute_dataset``, ``strategy.run`` and
    ``tf.nn.compute_average_loss``. Drives the same callbacks as ``fit``."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    optimizer = model.optimizer
    iterator = iter(strategy.experimental_distribute_dataset(train_ds))

    @tf.function
    def train_step(iterator):
        def step_fn(x, y):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                per_window = tf.reduce_mean(loss_fn(y, logits), axis=-1)  # (per-replica batch,)
                loss = tf.nn.compute_average_loss(per_window)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        per_replica = strategy.run(step_fn, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def validation_loss():
        total, count = 0.0, 0
        for x, y in val_ds:
            nats = loss_fn(y, model(x, training=False))
            total += float(tf.reduce_sum(nats))
            count += int(tf.size(nats))
        return total / max(count, 1)

    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        losses = []
        for batch in range(per_epoch):
            losses.append(float(train_step(iterator)))
            for callback in callbacks:
                callback.on_train_batch_end(batch, {"loss": losses[-1]})
            if model.stop_training:
                break
        logs = {"loss": sum(losses) / max(len(losses), 1)}
        if val_ds is not None:
            logs["val_loss"] = validation_loss()
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    for callback in callbacks:
        callback.on_train_end()


def save_model_dir(
    out_dir, model, model_config, train_config, vocab, history, data="", command=""
) -> None:
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
    fileio.write_json(out / HISTORY_FILE, history)
    plot_history(history, out / LOSS_PLOT)


def save_model_file(model, path) -> None:
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
    for name in (CONFIG_FILE, VOCAB_FILE):
        if (path / name).stat().st_size > MAX_JSON_BYTES:
            raise UserError(
                f"{path / name} is larger than {MAX_JSON_BYTES // 1024} KB: not a musicseq file"
            )
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
        if "Lambda" in first:  # Keras' safe mode refused code embedded in the file
            first = "it carries a Lambda layer (Python code); refused, musicseq never runs code from model files"
        raise UserError(f"cannot load {path / MODEL_FILE}: {first.split('. ')[0]}") from exc
    embedding = model.get_layer("embedding") if _has_layer(model, "embedding") else None
    if embedding is None or embedding.input_dim != model_config.vocab_size:
        raise UserError(f"{path}: the model file does not match config.json (embedding size)")
    return model, model_config, vocab


def _has_layer(model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)
