"""Typed configuration: the one home of musicseq's defaults.

Library code takes these dataclasses as arguments; only the CLI (or a user's script)
overrides them. Every config round-trips through JSON with :func:`to_dict` / ``from_dict``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

FORMAT_VERSION = 1  # bump when a model directory's layout changes incompatibly

MODEL_KINDS = ("rnn_scratch", "simple_rnn", "lstm", "gru", "transformer")
RECURRENT_KINDS = ("rnn_scratch", "simple_rnn", "lstm", "gru")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# TrainConfig fields that may change between a run and its resumption (the budget).
BUDGET_FIELDS = ("steps", "epochs", "minutes")


@dataclass(frozen=True)
class ModelConfig:
    """The network: a character embedding, a recurrent stack and a logits layer."""

    kind: str = "lstm"  # rnn_scratch | simple_rnn | lstm | gru | transformer
    vocab_size: int = 0  # set from the vocabulary when training starts
    embedding_dim: int = 64  # size of each character's embedding vector (recurrent kinds)
    units: int = 512  # recurrent state size; the model width d for the Transformer
    num_layers: int = 1  # stacked recurrent layers / Transformer blocks
    dropout: float = 0.0  # dropout on each layer's output
    activation: str = "tanh"  # rnn_scratch: tanh | relu
    recurrent_initializer: str = "orthogonal"  # rnn_scratch: orthogonal | identity | glorot_uniform
    num_heads: int = 4  # Transformer attention heads (units must divide by it)
    context: int = 256  # Transformer context length (longest window it attends over)
    positional: str = "sinusoidal"  # Transformer positional encoding: sinusoidal | learned
    fused: bool = True  # lstm/gru: faster CPU recurrence (same weights; Keras/cuDNN path on GPU)

    def validate(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(
                f"model kind must be one of {', '.join(MODEL_KINDS)}, got {self.kind!r}"
            )
        for name in ("vocab_size", "embedding_dim", "units", "num_layers", "num_heads", "context"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0 or value > 1_000_000:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be tanh or relu, got {self.activation!r}")
        if self.recurrent_initializer not in ("orthogonal", "identity", "glorot_uniform"):
            raise ValueError(f"unknown recurrent initializer {self.recurrent_initializer!r}")
        if self.positional not in ("sinusoidal", "learned"):
            raise ValueError(f"positional must be sinusoidal or learned, got {self.positional!r}")
        if self.kind == "transformer" and self.units % self.num_heads:
            raise ValueError(f"units ({self.units}) must be divisible by heads ({self.num_heads})")
        if self.kind == "transformer" and self.context < 2:
            raise ValueError(f"context must be at least 2, got {self.context}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: data windows, optimiser and the stopping rule."""

    seq_len: int = 100  # characters per training window
    batch_size: int = 32  # windows per step
    learning_rate: float = 2e-3  # Adam step size
    clipnorm: float | None = 1.0  # gradient clipping by global norm; None turns it off
    steps: int | None = None  # total optimiser steps (overrides epochs)
    epochs: int = 1  # passes over the training windows
    minutes: float | None = None  # wall-clock budget; training stops when it is spent
    steps_per_epoch: int | None = None  # validation/checkpoint cadence; default: one pass
    seed: int = 0  # weights, data order and dropout
    lr_schedule: str = "constant"  # constant | cosine (cosine decay after a linear warm-up)
    warmup_steps: int = 0  # linear warm-up steps for the cosine schedule
    early_stopping: int | None = None  # patience in epochs on validation loss (best weights kept)
    save_every: int = 200  # steps between resumable checkpoints (and at every epoch end)
    strategy: str = "auto"  # auto | default | one_device | mirrored | multi_worker | tpu
    precision: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16 (GPU/TPU)
    jit_compile: str = (
        "auto"  # XLA for the train step: auto (on for fused LSTM/GRU on CPU) | on | off
    )
    deterministic: bool = False  # TensorFlow op determinism (slower; reproducible on CPU)
    tensorboard: bool = True  # write TensorBoard logs to MODEL_DIR/logs

    def validate(self) -> None:
        for name in ("seq_len", "batch_size", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.steps is not None and self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes must be positive, got {self.minutes}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning rate must be positive, got {self.learning_rate}")
        if self.clipnorm is not None and not self.clipnorm > 0:
            raise ValueError(f"clipnorm must be positive, got {self.clipnorm}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr schedule must be constant or cosine, got {self.lr_schedule!r}")
        if self.lr_schedule == "cosine" and self.steps is None and self.minutes is not None:
            raise ValueError(
                "the cosine schedule needs a step budget (--steps or --epochs), not --minutes"
            )
        if self.warmup_steps < 0 or self.save_every <= 0:
            raise ValueError("warm-up steps must be >= 0 and save-every > 0")
        if self.early_stopping is not None and self.early_stopping <= 0:
            raise ValueError(f"early-stopping patience must be positive, got {self.early_stopping}")
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}"
            )
        if self.jit_compile not in ("auto", "on", "off"):
            raise ValueError(f"jit-compile must be auto, on or off, got {self.jit_compile!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )


@dataclass(frozen=True)
class SampleConfig:
    """How to generate."""

    num: int = 4  # tunes generated together, as one batch
    max_len: int = 1200  # hard cap on generated characters per tune
    temperature: float = 1.0  # logits are divided by this
    top_k: int = 0  # sample among the k most likely characters; 0 = all
    top_p: float = 1.0  # nucleus: smallest set with this much probability; 1 = all
    seed: int = 0  # same seed, same tunes
    prime: str = "X:1\n"  # ABC text every tune starts with

    def validate(self) -> None:
        if not 1 <= self.num <= 4096:
            raise ValueError(f"num must be in 1..4096, got {self.num}")
        if not 1 <= self.max_len <= 100_000:
            raise ValueError(f"max-len must be in 1..100000, got {self.max_len}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.top_k <= 100_000:
            raise ValueError(f"top-k must be >= 0 (0 turns it off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")
        if not -(2**31) <= self.seed < 2**31:
            raise ValueError(f"seed must fit in 32 bits, got {self.seed}")
        if not self.prime:
            raise ValueError("prime must not be empty")


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls, data: dict):
    """Build ``cls`` from a dict, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    for name, value in data.items():
        default = fields[name].default
        if value is None or default is None:
            continue
        expected = type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, expected) or isinstance(value, bool) != isinstance(default, bool):
            raise ValueError(f"{cls.__name__}.{name} must be {expected.__name__}, got {value!r}")
    return cls(**data)
