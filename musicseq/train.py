"""Training: the learning-rate plan, resumable checkpoints, callbacks and the fit loops.

:func:`train` reads as three steps: prepare the data, build (or resume) the model, run the
budget. A run is resumable at any moment: ``checkpoint/`` holds the model's variables, the
optimizer's and the run's bookkeeping in one file, written atomically, and the training
batches are a fixed sequence indexed by step, so a run killed at any step and resumed ends
with bit-identical weights to one that was never interrupted (under ``deterministic``).
This module never builds layers (:mod:`musicseq.models`) and never defines the model
directory's files (:mod:`musicseq.modeldir`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from musicseq import fileio
from musicseq.config import BUDGET_FIELDS, ModelConfig, TrainConfig, to_dict
from musicseq.distribute import is_chief, is_multi_worker, make_strategy, use_xla
from musicseq.errors import UserError
from musicseq.modeldir import CHECKPOINT_DIR, LOSS_PLOT, save_model_dir, weights_digest
from musicseq.vocab import Vocab

MINUTES_EPOCH = 200  # steps per epoch (validation report) in a time budget, by default
UNKNOWN_TOTAL = 10**9  # a time budget's total steps before the first estimate


# --- the learning-rate plan -------------------------------------------------------------------


def plan_steps(train_config: TrainConfig, steps_in_pass: int) -> tuple[int, int]:
    """(epochs, steps per epoch) for the requested budget.

    ``steps`` gives about that many steps in epochs of at most one pass (or
    ``steps_per_epoch``); ``minutes`` gives short epochs (so validation is reported often)
    until time runs out; ``epochs`` (default 1) gives whole passes.
    """
    per_epoch = train_config.steps_per_epoch or steps_in_pass
    if train_config.minutes is not None:
        return 1_000_000, train_config.steps_per_epoch or min(steps_in_pass, MINUTES_EPOCH)
    if train_config.steps is not None:
        per_epoch = min(per_epoch, train_config.steps)
        epochs = math.ceil(train_config.steps / per_epoch)
        return epochs, math.ceil(train_config.steps / epochs)
    return train_config.epochs or 1, per_epoch


def make_schedule(train_config: TrainConfig, total_steps: int):
    """The optimizer's learning rate: a number, or a :class:`WarmupCosine` over ``total_steps``."""
    if train_config.lr_schedule == "constant":
        return train_config.learning_rate
    return WarmupCosine(train_config.learning_rate, train_config.warmup_steps, total_steps)


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak`` over ``warmup`` steps, then cosine decay to 0 at
    ``total`` steps. ``total`` is a variable: a time budget sets it once the step time is
    measured, a resumed run from its checkpoint."""

    def __init__(self, peak: float, warmup: int, total: int):
        import tensorflow as tf

        self.peak = float(peak)
        self.warmup = int(warmup)
        self.total = tf.Variable(float(total), trainable=False, dtype=tf.float32)

    def __call__(self, step):
        import tensorflow as tf

        step = tf.cast(step, tf.float32)
        warmup = tf.minimum(float(self.warmup), tf.maximum(self.total - 1.0, 0.0))
        rising = self.peak * step / tf.maximum(warmup, 1.0)
        span = tf.maximum(self.total - warmup, 1.0)
        progress = tf.clip_by_value((step - warmup) / span, 0.0, 1.0)
        decaying = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < warmup, rising, decaying)

    def get_config(self):
        return {"peak": self.peak, "warmup": self.warmup, "total": int(self.total.numpy())}


def compile_model(
    model, train_config: TrainConfig, total_steps: int = 1, model_config: ModelConfig | None = None
) -> None:
    """Adam with the planned schedule and clipping; sparse cross-entropy on logits."""
    optimizer = keras.optimizers.Adam(
        make_schedule(train_config, total_steps), clipnorm=train_config.clipnorm
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss, jit_compile=use_xla(train_config, model_config))


# --- the run's bookkeeping and its checkpoint -------------------------------------------------


@dataclass
class RunState:
    """Everything about a run that is not a variable: where it is, what it has seen."""

    settings: dict  # model, training settings (not the budget) and vocabulary
    budget: dict  # steps / epochs / minutes as asked
    planned_steps: int  # the schedule's total (estimated for a time budget)
    step: int = 0
    epochs_done: int = 0
    elapsed: float = 0.0
    history: dict = field(default_factory=dict)
    best_val_loss: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    finished: bool = False
    stopped_early: bool = False
    # Training loss of the current epoch before an interruption: (sum over steps, steps).
    partial_loss: tuple = (0.0, 0)

    def record(self, epoch: int, logs: dict) -> None:
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.epochs_done = epoch + 1

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunState:
        return cls(**json.loads(text))


def describe_epoch(epoch: int, logs: dict, unit: str = "char") -> str:
    """One line per epoch; ``unit`` is what one id stands for (``char`` or ``token``)."""
    parts = [f"epoch {epoch + 1}: train {logs.get('loss', float('nan')):.4f} nats/{unit}"]
    if "val_loss" in logs:
        val = logs["val_loss"]
        parts.append(f"validation {val:.4f} nats/{unit} ({val / math.log(2):.4f} bits/{unit})")
    parts.append(f"{logs['tokens_per_second']:.0f} tokens/s")
    return ", ".join(parts)


def _with_new_defaults(saved: dict, settings: dict) -> dict:
    """``saved`` settings with the config fields added since it was written (absent from it)
    taken from ``settings`` when they hold their defaults: such a run resumes unchanged."""
    defaults = {"model": to_dict(ModelConfig()), "train": to_dict(TrainConfig())}
    out = dict(saved)
    for section, fields in defaults.items():
        if isinstance(saved.get(section), dict) and isinstance(settings.get(section), dict):
            new = {
                k: v
                for k, v in settings[section].items()
                if k not in saved[section] and k in fields and v == fields[k]
            }
            out[section] = {**saved[section], **new}
    return out


class Checkpointer:
    """Resumable checkpoints in ``MODEL_DIR/checkpoint``.

    ``checkpoint.npz`` holds the model's variables (weights, dropout seed states), the
    optimizer's (step, moments, loss scale) and the :class:`RunState`, in one file renamed
    into place, so a kill at any moment leaves the previous checkpoint or the new one, never
    a mix. ``best.npz`` keeps the best weights when early stopping is on. ``state.json`` is a
    readable copy of the state.
    """

    FILE = "checkpoint.npz"
    BEST = "best.npz"

    def __init__(self, out_dir: Path, writer: bool):
        self.dir = out_dir / CHECKPOINT_DIR
        self.writer = writer

    def exists(self) -> bool:
        return (self.dir / self.FILE).is_file()

    def load(self, settings: dict) -> tuple[RunState, list, list]:
        """(state, model arrays, optimizer arrays); refuses a checkpoint of another run."""
        try:
            with np.load(self.dir / self.FILE, allow_pickle=False) as data:
                state = RunState.from_json(str(data["state"]))
                model = [data[f"m{i}"] for i in range(int(data["model_count"]))]
                optimizer = [data[f"o{i}"] for i in range(int(data["optimizer_count"]))]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"unreadable checkpoint {self.dir} ({exc}); restart the run") from exc
        if _with_new_defaults(state.settings, settings) != settings:
            raise UserError(
                f"{self.dir} holds a checkpoint of a run with other settings; "
                "run again with the same settings, or restart the run"
            )
        return state, model, optimizer

    def save(self, model, state: RunState) -> None:
        if not self.writer:
            return
        arrays = {f"m{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
        optimizer = model.optimizer.variables
        arrays.update({f"o{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer)})
        _write_npz(
            self.dir / self.FILE,
            state=np.asarray(state.to_json()),
            model_count=np.asarray(len(model.variables)),
            optimizer_count=np.asarray(len(optimizer)),
            **arrays,
        )
        fileio.write_text(self.dir / "state.json", state.to_json() + "\n")

    def save_best(self, model) -> None:
        if self.writer:
            _write_npz(
                self.dir / self.BEST, **{f"m{i}": v.numpy() for i, v in enumerate(model.variables)}
            )

    def load_best(self) -> list | None:
        if not (self.dir / self.BEST).is_file():
            return None
        with np.load(self.dir / self.BEST, allow_pickle=False) as data:
            return [data[f"m{i}"] for i in range(len(data.files))]

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _write_npz(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    fileio.write_bytes(path, buffer.getvalue())


def _assign(variables, arrays, what: str) -> None:
    if len(variables) != len(arrays):
        raise UserError(f"the checkpoint's {what} does not match the model; restart the run")
    for variable, array in zip(variables, arrays):
        if tuple(variable.shape) != array.shape:
            raise UserError(f"the checkpoint's {what} does not match the model; restart the run")
        variable.assign(array)


# --- callbacks --------------------------------------------------------------------------------


def _report_callback(train_config, tokens_per_step, log, checkpointer, state, clock):
    """The run's own callback: time budget, schedule estimate, logs, checkpoints, early stop."""

    class Report(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_steps_planned = 0
            self.total_steps = self.total_epochs = 1 << 62  # set by _run_budget
            self.pending = None

        def on_train_begin(self, logs=None):
            self.epoch_start = self.last_batch_end = time.monotonic()
            self.timing = None  # (step, time) where step timing began

        def on_epoch_begin(self, epoch, logs=None):
            self._flush()
            self.epoch_start, self.epoch_steps, self.running_loss = time.monotonic(), 0, 0.0

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
            self.running_loss = float((logs or {}).get("loss", 0.0))  # mean over this call
            state.step = int(self.model.optimizer.iterations.numpy())
            state.elapsed = clock()
            self._estimate_total()
            end_of_epoch = self.epoch_steps == self.epoch_steps_planned
            if state.step % train_config.save_every == 0 and not end_of_epoch:
                before = state.partial_loss
                state.partial_loss = self._epoch_loss()
                checkpointer.save(self.model, state)  # the epoch end saves its own
                state.partial_loss = before
            if train_config.minutes is not None and state.elapsed >= train_config.minutes * 60:
                state.finished = True
                self.model.stop_training = True

        def _estimate_total(self):
            """A time budget with a schedule: total steps from the measured step time, first
            after 20 timed steps, then again after 100 and every 200."""
            if train_config.minutes is None or train_config.lr_schedule == "constant":
                return
            if self.timing is None:
                if self.epoch_steps >= 3:  # after the first (compiling) steps
                    self.timing = (state.step, time.monotonic(), state.elapsed)
                return
            first_step, started, _ = self.timing
            measured = state.step - first_step
            if measured in (20, 100) or (measured > 100 and measured % 200 == 0):
                per_step = (time.monotonic() - started) / measured
                left = train_config.minutes * 60 - state.elapsed
                state.planned_steps = state.step + max(int(left / per_step), 1)
                _set_total(self.model.optimizer, state.planned_steps)

        def _epoch_loss(self) -> tuple:
            """(sum, steps) of this epoch's training loss, steps before a resume included."""
            total, steps = state.partial_loss
            return (total + self.running_loss * self.epoch_steps, steps + self.epoch_steps)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            if state.partial_loss[1] and "loss" in logs:  # an epoch finished after a resume
                self.running_loss = float(logs["loss"])
                total, steps = self._epoch_loss()
                logs["loss"] = total / steps
            state.partial_loss = (0.0, 0)
            seconds = max(self.last_batch_end - self.epoch_start, 1e-9)  # training time only
            logs["tokens_per_second"] = self.epoch_steps * tokens_per_step / seconds
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
            state.record(epoch, logs)
            state.step = int(self.model.optimizer.iterations.numpy())
            self._early_stopping(logs.get("val_loss"))
            if state.step >= self.total_steps or state.epochs_done >= self.total_epochs:
                state.finished = True  # the budget is spent
            if state.finished and train_config.early_stopping and not state.stopped_early:
                _restore_best(self.model, checkpointer)  # the best weights are kept at the end
            state.elapsed = clock()
            checkpointer.save(self.model, state)
            self.pending = describe_epoch(
                epoch, logs, "char" if train_config.tokens == "chars" else "token"
            )
            self.model.stop_training = True  # one epoch per fit call (see _run_budget)

        def _early_stopping(self, val_loss):
            if not train_config.early_stopping or val_loss is None:
                return
            if state.best_val_loss is None or val_loss < state.best_val_loss:
                state.best_val_loss, state.best_epoch = float(val_loss), state.epochs_done
                state.epochs_without_improvement = 0
                checkpointer.save_best(self.model)
                return
            state.epochs_without_improvement += 1
            if state.epochs_without_improvement >= train_config.early_stopping:
                state.finished = state.stopped_early = True
                _restore_best(self.model, checkpointer)

    return Report()


def _set_total(optimizer, total: int) -> None:
    schedule = getattr(optimizer, "inner_optimizer", optimizer)._learning_rate
    if hasattr(schedule, "total"):
        schedule.total.assign(float(total))


def _restore_best(model, checkpointer: Checkpointer) -> None:
    best = checkpointer.load_best()
    if best is not None:
        _assign(model.variables, best, "best weights")


# --- the fit loops ----------------------------------------------------------------------------


def _fit_keras(model, train_ds, val_ds, epoch, epochs, steps, callbacks, verbose):
    model.fit(
        train_ds,
        initial_epoch=epoch,
        epochs=epochs,
        steps_per_epoch=steps,
        validation_data=val_ds,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself
    )


def _custom_step(strategy, model):
    """One distributed step for MultiWorkerMirroredStrategy (Keras 3's ``fit`` fails there):
    ``strategy.run``, ``tf.nn.compute_average_loss`` and the optimizer's loss scaling (a
    ``LossScaleOptimizer`` under mixed_float16; a no-op otherwise)."""
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    optimizer = model.optimizer

    @tf.function
    def train_step(iterator):
        def step_fn(x, y, weights=None):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                nats = loss_fn(y, logits)
                if weights is not None:  # --cadence-weight
                    nats = tf.cast(nats, tf.float32) * weights
                per_window = tf.reduce_mean(nats, axis=-1)  # (per-replica batch,)
                loss = tf.nn.compute_average_loss(per_window)
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        per_replica = strategy.run(step_fn, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def validation_loss(val_ds):
        total, count = 0.0, 0
        for x, y in val_ds:
            nats = loss_fn(y, model(x, training=False))
            total += float(tf.reduce_sum(tf.cast(nats, tf.float32)))
            count += int(tf.size(nats))
        return total / max(count, 1)

    return train_step, validation_loss


def _fit_custom(strategy, model, step_fns, train_ds, val_ds, epoch, steps, callbacks):
    """One epoch of the custom loop, driving the same callbacks as ``fit``."""
    train_step, validation_loss = step_fns
    iterator = iter(strategy.experimental_distribute_dataset(train_ds))
    model.stop_training = False
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
        callback.on_epoch_begin(epoch)
    losses = []
    for batch in range(steps):
        losses.append(float(train_step(iterator)))
        for callback in callbacks:
            callback.on_train_batch_end(batch, {"loss": losses[-1]})
        if model.stop_training:
            break
    logs = {"loss": sum(losses) / max(len(losses), 1)}
    if val_ds is not None:
        logs["val_loss"] = validation_loss(val_ds)
    for callback in callbacks:
        callback.on_epoch_end(epoch, logs)
        callback.on_train_end()


# --- train --------------------------------------------------------------------------------------


@dataclass
class _Data:
    texts: int
    vocab: Vocab
    train_stream: np.ndarray
    val_ds: object
    steps_in_pass: int
    train_weights: np.ndarray | None = None  # per target id (--cadence-weight), or None


def train(
    data: str | Path,
    out_dir: str | Path,
    model_config: ModelConfig | None,
    train_config: TrainConfig,
    log: Callable[[str], None] = print,
    verbose: int | str = "auto",
    restart: bool = False,
    command: str = "",
    init_from: str | Path | None = None,
) -> dict:
    """Train a model on ``data`` (a corpus directory or ``.abc`` file/dir) into ``out_dir``.

    With ``init_from`` (a model name or directory) it fine-tunes: training starts from that
    model's weights, and its model config and vocabulary replace ``model_config`` (pass
    None) and the data's own (characters it never saw are read as unknown).

    Resumes from ``out_dir/checkpoint`` when it holds a run with the same settings (unless
    ``restart``); a finished run is not trained again. Returns the history dict (per-epoch
    ``loss``, ``val_loss``, ``tokens_per_second``, ``learning_rate``; ``steps``, ``tokens``,
    ``seconds``, ``weights_sha256``). ``command``, when given, is recorded so that the run
    can be repeated.
    """
    try:
        train_config.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    base = None
    if init_from is not None:
        from musicseq.modeldir import ModelDir

        base = ModelDir.load(init_from)
        model_config = base.config
        log(f"fine-tuning {base.name} ({base.path}): its model settings and vocabulary are kept")
    elif model_config is None:
        raise ValueError("train() needs a model_config, or init_from to fine-tune a model")
    if base is not None:  # its vocabulary, and so its kind of tokens
        train_config = dataclasses.replace(train_config, tokens=base.vocab.kind)
    elif model_config.metrical and train_config.tokens != "chars":
        raise UserError("metrical inputs are read from characters: --metrical needs --tokens chars")
    if model_config.kind == "transformer" and train_config.seq_len != model_config.context:
        # A Transformer only generalises to positions it was trained on, and evaluation and
        # generation use its whole context: train on windows of exactly that length.
        log(
            f"notice: training the Transformer on windows of its context length {model_config.context}"
        )
        train_config = dataclasses.replace(train_config, seq_len=model_config.context)

    strategy = make_strategy(train_config.strategy)  # first: multi-worker must precede other ops
    import tensorflow as tf

    keras.utils.set_random_seed(train_config.seed)
    if train_config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(train_config.precision)
    try:
        replicas = strategy.num_replicas_in_sync
        global_batch = train_config.batch_size * replicas
        prepared = _prepare_data(
            data,
            train_config,
            global_batch,
            log,
            vocab=base.vocab if base else None,
            metrical=model_config.metrical,
        )
        model_config = dataclasses.replace(model_config, vocab_size=len(prepared.vocab))
        try:
            model_config.validate()
        except ValueError as exc:
            raise UserError(str(exc)) from exc

        out = Path(out_dir)
        chief = is_chief(strategy)
        work_dir = out if chief else Path(tempfile.mkdtemp(prefix="musicseq-worker-"))
        checkpointer = Checkpointer(out, writer=chief)
        if restart and chief:
            checkpointer.clear()
        model, state = _build_or_resume(
            strategy,
            model_config,
            train_config,
            prepared,
            checkpointer,
            log,
            initial_weights=base.model.get_weights() if base else None,
        )
        unit = prepared.vocab.unit
        log(
            f"training {model_config.kind} ({model.count_params():,} parameters) on "
            f"{prepared.texts} tunes / {len(prepared.train_stream):,} {unit}; vocabulary "
            f"{len(prepared.vocab)}; {type(strategy).__name__} with {replicas} replica(s): batch "
            f"{train_config.batch_size} per replica, {global_batch} global, x "
            f"{train_config.seq_len} {unit}"
        )
        _run_budget(
            strategy,
            model,
            train_config,
            prepared,
            state,
            checkpointer,
            work_dir,
            global_batch,
            log,
            verbose,
        )
        history = dict(state.history)
        history.update(
            seconds=state.elapsed,
            steps=int(model.optimizer.iterations.numpy()),
            planned_steps=state.planned_steps,
        )
        history["tokens"] = history["steps"] * global_batch * train_config.seq_len
        history["weights_sha256"] = weights_digest(model)
        if train_config.early_stopping:
            history.update(
                best_epoch=state.best_epoch,
                best_val_loss=state.best_val_loss,
                stopped_early=state.stopped_early,
            )
        save_model_dir(
            work_dir,
            model,
            model_config,
            train_config,
            prepared.vocab,
            history,
            data=str(data),
            command=command,
        )
        from musicseq.visualize import save_history_plot

        save_history_plot(history, work_dir / LOSS_PLOT)
        if not chief:
            shutil.rmtree(work_dir, ignore_errors=True)  # workers save to a scratch dir
        where = out if chief else "(worker scratch dir, removed)"
        log(
            f"saved model to {where} after {history['steps']} steps in "
            f"{history['seconds']:.0f} s; weights sha256 {history['weights_sha256']}"
        )
        return history
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _prepare_data(
    data,
    train_config: TrainConfig,
    global_batch: int,
    log,
    vocab: Vocab | None = None,
    metrical: bool = False,
) -> _Data:
    """Step 1: the splits, the vocabulary (the data's, unless ``vocab`` is given), the
    training stream and the validation batches."""
    from musicseq.corpus import load_split
    from musicseq.data import encode_stream, eval_dataset, steps_per_pass

    train_texts = load_split(data, "train")
    if not train_texts:
        raise UserError(f"no training tunes in {data}")
    val_texts = load_split(data, "validation")
    if train_config.transpose:
        from musicseq.notation.transpose import augment

        tunes = len(train_texts)
        train_texts = augment(train_texts, train_config.transpose, seed=train_config.seed)
        log(
            f"augmentation: {len(train_texts) - tunes} transpositions added to {tunes} training "
            "tunes"
        )
    if vocab is None:
        vocab = Vocab.from_texts(train_texts, kind=train_config.tokens)
        if vocab.kind != "chars":
            log(
                f"vocabulary: {len(vocab)} ids, {sum(len(t) > 1 for t in vocab.tokens)} of "
                "them musical tokens of several characters"
            )
    else:
        unseen = sorted({c for text in train_texts for c in text if c not in vocab})
        if unseen:
            log(
                f"notice: {len(unseen)} characters of the data are not in the model's "
                f"vocabulary and are read as unknown: {''.join(unseen[:20])!r}"
            )
    encode = encode_stream
    if metrical:  # packed ids: each character with its metrical features
        from musicseq.metrical import pack_stream as encode
    train_stream = encode(train_texts, vocab)
    seq_len = train_config.seq_len
    steps_in_pass = steps_per_pass(len(train_stream), seq_len, global_batch)
    val_stream = encode(val_texts, vocab)
    val_ds = None
    if len(val_stream) > seq_len:
        val_ds = eval_dataset(val_stream, seq_len, global_batch, vocab_size=len(vocab))
    else:
        log(
            f"notice: the validation split has {len(val_texts)} tunes, too few to report validation loss"
        )
    weights = None
    if train_config.cadence_weight != 1:
        from musicseq.data import cadence_weight_stream

        weights = cadence_weight_stream(train_texts, train_config.cadence_weight)
        share = float(np.mean(weights > weights.min()))
        log(
            f"cadence weight {train_config.cadence_weight:g} on the last bar of each part "
            f"({share:.1%} of the training characters)"
        )
    return _Data(len(train_texts), vocab, train_stream, val_ds, steps_in_pass, weights)


def _build_or_resume(
    strategy, model_config, train_config, prepared, checkpointer, log, initial_weights=None
):
    """Step 2: a new model (with ``initial_weights`` when fine-tuning), or the checkpointed
    one with its optimizer state and run state."""
    from musicseq.models import build_model

    settings = {
        "model": to_dict(model_config),
        "train": {k: v for k, v in to_dict(train_config).items() if k not in BUDGET_FIELDS},
        "vocab": prepared.vocab.tokens,
    }
    budget = {k: getattr(train_config, k) for k in BUDGET_FIELDS}
    epochs, per_epoch = plan_steps(train_config, prepared.steps_in_pass)
    planned = UNKNOWN_TOTAL if train_config.minutes is not None else epochs * per_epoch
    saved = checkpointer.load(settings) if checkpointer.exists() else None
    state = saved[0] if saved else RunState(settings, budget, planned)
    if saved and state.budget != budget:
        _change_budget(state, budget, planned, train_config, checkpointer.dir)
    with strategy.scope():
        chars = prepared.vocab.chars if model_config.metrical else None
        model = build_model(model_config, chars=chars)
        compile_model(model, train_config, state.planned_steps, model_config)
        model.optimizer.build(model.trainable_variables)
    if initial_weights is not None and not saved:
        model.set_weights(initial_weights)
    if saved:
        _assign(model.variables, saved[1], "model")
        _assign(model.optimizer.variables, saved[2], "optimizer state")
        _set_total(model.optimizer, state.planned_steps)
        log(
            f"resuming from {checkpointer.dir} at step {state.step} (epoch {state.epochs_done + 1})"
        )
    return model, state


def _change_budget(state: RunState, budget: dict, planned: int, train_config, where) -> None:
    """A resumed run asked for another budget: extend or shorten it, unless a schedule was
    planned over the old one (its decay would be wrong: say so and stop)."""
    if train_config.lr_schedule != "constant" and planned != state.planned_steps:
        old = ", ".join(f"{v} {k}" for k, v in state.budget.items() if v is not None)
        raise UserError(
            f"{where} holds a run whose {train_config.lr_schedule} schedule was planned over "
            f"{old or 'one epoch'}; resume it with that budget, or restart the run"
        )
    state.budget, state.planned_steps = budget, planned
    if not state.stopped_early:
        state.finished = False


def _run_budget(
    strategy,
    model,
    train_config,
    prepared,
    state,
    checkpointer,
    work_dir,
    global_batch,
    log,
    verbose,
) -> None:
    """Step 3: whole epochs (the first one possibly the rest of an interrupted epoch), each
    on the batches from the current step on, until the budget is spent or training stops."""
    from musicseq.data import training_dataset

    if state.finished:
        done = (
            f"stopped early; best weights from epoch {state.best_epoch}"
            if state.stopped_early
            else "its budget is spent"
        )
        log(
            f"the run in {checkpointer.dir.parent} is complete ({state.step} steps, {done}); nothing to train"
        )
        return
    epochs, per_epoch = plan_steps(train_config, prepared.steps_in_pass)
    previous = state.elapsed
    started = time.monotonic()

    def clock() -> float:
        return previous + time.monotonic() - started

    report = _report_callback(
        train_config, global_batch * train_config.seq_len, log, checkpointer, state, clock
    )
    callbacks = [report]
    if train_config.tensorboard and checkpointer.writer:
        callbacks.append(
            keras.callbacks.TensorBoard(log_dir=str(work_dir / "logs"), write_graph=False)
        )
    multi_worker = is_multi_worker(strategy)
    step_fns = _custom_step(strategy, model) if multi_worker else None
    total = epochs * per_epoch
    report.total_steps, report.total_epochs = total, epochs
    while not state.finished and state.epochs_done < epochs and state.step < total:
        if train_config.minutes is not None and clock() >= train_config.minutes * 60:
            break
        # Finish an interrupted epoch with exactly its missing steps.
        steps = min(per_epoch * (state.epochs_done + 1), total) - state.step
        train_ds = training_dataset(
            prepared.train_stream,
            train_config.seq_len,
            global_batch,
            train_config.seed,
            start_step=state.step,
            vocab_size=len(prepared.vocab),
            weights=prepared.train_weights,
        )
        if multi_worker:
            train_ds = _shard_by_data(train_ds)
        report.epoch_steps_planned = steps
        if multi_worker:
            val_ds = _shard_by_data(prepared.val_ds) if prepared.val_ds is not None else None
            _fit_custom(
                strategy, model, step_fns, train_ds, val_ds, state.epochs_done, steps, callbacks
            )
        else:
            _fit_keras(
                model,
                train_ds,
                prepared.val_ds,
                state.epochs_done,
                epochs,
                steps,
                callbacks,
                verbose,
            )
    if not state.finished:  # the time ran out between two epochs: mark the run complete
        state.finished = True
        if train_config.early_stopping:
            _restore_best(model, checkpointer)
        state.elapsed = clock()
        checkpointer.save(model, state)


def _shard_by_data(dataset):
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
