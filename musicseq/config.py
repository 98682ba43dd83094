"""Typed configuration: the one home of musicseq's defaults, choices and help texts.

Library code takes these dataclasses as arguments; only the CLI (or a user's script)
overrides them. Each field's metadata carries its help text (and, where the command line
spells it differently, its flag), so the ``musicseq`` options are derived from here. Every
config round-trips through JSON with :func:`to_dict` / :func:`from_dict`, and ``validate``
is as strict as the command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MODEL_KINDS = ("rnn_scratch", "simple_rnn", "lstm", "gru", "transformer")
RECURRENT_KINDS = ("rnn_scratch", "simple_rnn", "lstm", "gru")
ACTIVATIONS = ("tanh", "relu")
RECURRENT_INITIALIZERS = ("orthogonal", "identity", "glorot_uniform")
POSITIONAL = ("sinusoidal", "learned")
LR_SCHEDULES = ("constant", "cosine")
JIT_COMPILE = ("auto", "on", "off")
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
TOKEN_KINDS = ("chars", "abc")  # musicseq.vocab.Vocab's kinds
BARS_PER_PART = (8, 16)
CADENCES = ("tonic", "none")
AUDIO_FORMATS = ("wav", "flac", "ogg", "mp3")
DEFAULT_CORPUS = "data/abc"  # where `musicseq data` writes the default corpus
# TrainConfig fields that may change between a run and its resumption (the budget).
BUDGET_FIELDS = ("steps", "epochs", "minutes")


def option(
    default,
    help: str,
    *,
    flag: str | None = None,
    choices=None,
    cli: bool = True,
    metavar: str | None = None,
    group: str | None = None,
):
    """A dataclass field whose metadata describes its command-line option.

    ``flag`` overrides the option name derived from the field name (``seq_len`` →
    ``--seq-len``); ``cli=False`` keeps a field off the command line; ``group`` puts options
    in a mutually exclusive group.
    """
    metadata = {
        "help": help,
        "flag": flag,
        "choices": choices,
        "cli": cli,
        "metavar": metavar,
        "group": group,
    }
    return dataclasses.field(default=default, metadata=metadata)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def _check_positive_ints(config, names, limit: int = 1_000_000) -> None:
    """Each named field is a positive integer up to ``limit``, or None (not set)."""
    for name in names:
        value = getattr(config, name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= limit:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """The network: a character embedding, a recurrent stack or Transformer, a logits layer."""

    kind: str = option("lstm", "model family", flag="--model", choices=MODEL_KINDS)
    vocab_size: int = option(0, "set from the vocabulary when training starts", cli=False)
    embedding_dim: int = option(64, "size of each character's embedding (recurrent kinds)")
    units: int = option(512, "recurrent state size; the model width for the Transformer")
    num_layers: int = option(1, "stacked recurrent layers / Transformer blocks", flag="--layers")
    dropout: float = option(0.0, "dropout on each layer's output, in [0, 1)")
    activation: str = option("tanh", "rnn_scratch nonlinearity", choices=ACTIVATIONS)
    recurrent_initializer: str = option(
        "orthogonal",
        "rnn_scratch W_hh initializer ('identity' with relu: the IRNN trick)",
        flag="--recurrent-init",
        choices=RECURRENT_INITIALIZERS,
    )
    num_heads: int = option(
        4, "Transformer attention heads (units must divide by it)", flag="--heads"
    )
    context: int = option(256, "Transformer context length (the window it attends over)")
    positional: str = option("sinusoidal", "Transformer positional encoding", choices=POSITIONAL)
    fused: bool = option(True, "lstm/gru: faster CPU recurrence (same weights)", cli=False)
    metrical: bool = option(
        False,
        "feed each character's position in the bar and bar in the part beside it "
        "(musicseq.metrical)",
    )
    tonal: bool = option(
        False,
        "with --metrical: also feed the key's tonic and the scale degree of the last note "
        "(musicseq.metrical)",
    )
    relative_pitch: bool = option(
        False,
        "with --tonal (Transformer): note letters also get logits from a head that reads them "
        "as scale steps above the key's tonic, shared by every key (musicseq.models.metrical)",
    )

    def validate(self) -> None:
        _check_choice("model kind", self.kind, MODEL_KINDS)
        if self.tonal and not self.metrical:
            raise ValueError("tonal inputs come with the metrical ones: add --metrical")
        if self.relative_pitch and not self.tonal:
            raise ValueError("--relative-pitch reads the tonal inputs: add --metrical --tonal")
        if self.relative_pitch and self.kind != "transformer":
            raise ValueError("--relative-pitch is for the Transformer (--model transformer)")
        _check_positive_ints(
            self, ("vocab_size", "embedding_dim", "units", "num_layers", "num_heads", "context")
        )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("recurrent initializer", self.recurrent_initializer, RECURRENT_INITIALIZERS)
        _check_choice("positional encoding", self.positional, POSITIONAL)
        if self.kind == "transformer" and self.units % self.num_heads:
            raise ValueError(f"units ({self.units}) must be divisible by heads ({self.num_heads})")
        if self.kind == "transformer" and self.context < 2:
            raise ValueError(f"context must be at least 2, got {self.context}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: data windows, optimiser, the budget and the stopping rule."""

    seq_len: int = option(100, "characters per training window")
    batch_size: int = option(32, "windows per step (per replica)")
    learning_rate: float = option(2e-3, "Adam step size (the peak of the cosine schedule)")
    clipnorm: float | None = option(1.0, "gradient clipping by global norm (None: off)")
    steps: int | None = option(None, "budget: total optimiser steps", group="budget")
    epochs: int | None = option(
        None, "budget: passes over the training windows (default 1)", group="budget"
    )
    minutes: float | None = option(None, "budget: wall-clock minutes", group="budget")
    steps_per_epoch: int | None = option(
        None, "steps between validation reports (default: one pass; 200 with --minutes)"
    )
    seed: int = option(0, "weights, data order and dropout")
    lr_schedule: str = option(
        "constant", "constant, or cosine decay after a linear warm-up", choices=LR_SCHEDULES
    )
    warmup_steps: int = option(0, "linear warm-up steps of the cosine schedule")
    early_stopping: int | None = option(
        None,
        "stop when validation loss has not improved for this many epochs; the best "
        "weights are kept",
        metavar="PATIENCE",
    )
    transpose: int = option(
        0,
        "augmentation: add up to this many transpositions of each training tune into common "
        "keys of its mode (musicseq.notation.transpose)",
        metavar="COPIES",
    )
    cadence_weight: float = option(
        1.0,
        "loss weight of the characters of each part's last bar (its cadence) against 1 for "
        "the others, the weights then scaled to average 1 (1: unweighted)",
        metavar="WEIGHT",
    )
    tokens: str = option(
        "chars",
        "what one input id stands for: a character, or a musical ABC token (a note with its "
        "length, a bar line, a header line…; musicseq.notation.tokens)",
        choices=TOKEN_KINDS,
    )
    save_every: int = option(200, "steps between resumable checkpoints (and every epoch end)")
    strategy: str = option("auto", "tf.distribute strategy", choices=STRATEGIES)
    precision: str = option(
        "float32", "float32, or mixed precision (GPU/TPU; runs on CPU)", choices=PRECISIONS
    )
    jit_compile: str = option(
        "auto",
        "XLA for the train step (auto: on CPU, on for the fused LSTM/GRU and a float32 Transformer)",
        choices=JIT_COMPILE,
    )
    deterministic: bool = option(False, "TensorFlow op determinism (slower; reproducible)")
    tensorboard: bool = option(True, "write TensorBoard logs to MODEL_DIR/logs")

    def validate(self) -> None:
        _check_positive_ints(
            self,
            ("seq_len", "batch_size", "save_every", "steps_per_epoch", "early_stopping", "epochs"),
        )
        _check_positive_ints(self, ("steps",), limit=10**12)
        budgets = [n for n in BUDGET_FIELDS if getattr(self, n) is not None]
        if len(budgets) > 1:
            raise ValueError(f"give one budget, not {' and '.join(budgets)}")
        if self.minutes is not None and not 0 < self.minutes < float("inf"):
            raise ValueError(f"minutes must be positive, got {self.minutes}")
        if not 0 < self.learning_rate < float("inf"):
            raise ValueError(f"learning rate must be positive, got {self.learning_rate}")
        if self.clipnorm is not None and not self.clipnorm > 0:
            raise ValueError(f"clipnorm must be positive, got {self.clipnorm}")
        _check_choice("lr schedule", self.lr_schedule, LR_SCHEDULES)
        if not isinstance(self.transpose, int) or not 0 <= self.transpose <= 11:
            raise ValueError(f"transpose must be 0 … 11 copies, got {self.transpose!r}")
        if not 1 <= self.cadence_weight <= 100:
            raise ValueError(f"cadence weight must be 1 … 100, got {self.cadence_weight!r}")
        if self.cadence_weight != 1 and self.tokens != "chars":
            raise ValueError("cadence weights are for a character model (--tokens chars)")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warm-up steps must be >= 0, got {self.warmup_steps}")
        if not isinstance(self.seed, int) or not -(2**31) <= self.seed < 2**31:
            raise ValueError(f"seed must fit in 32 bits, got {self.seed!r}")
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("tokens", self.tokens, TOKEN_KINDS)
        _check_choice("jit-compile", self.jit_compile, JIT_COMPILE)
        _check_choice("precision", self.precision, PRECISIONS)


@dataclass(frozen=True)
class SampleConfig:
    """How to generate."""

    num: int = option(4, "tunes generated together, as one batch")
    max_len: int = option(
        1200, "characters (tokens, for an ABC-token model) per tune at most (hard cap 100000)"
    )
    temperature: float = option(1.0, "logits are divided by this")
    top_k: int = option(0, "sample among the k likeliest characters (0: all)")
    top_p: float = option(1.0, "nucleus sampling: smallest set with this much probability")
    seed: int = option(0, "same seed, same tunes")
    prime: str = option("X:1\n", "ABC text every tune starts with (a literal \\n is a newline)")
    form: str = option(
        "auto",
        "with constrain: the tune's parts, e.g. AABB, AB, AABBCC; free: no form; auto: "
        "drawn per tune from the corpus's forms for its meter",
    )
    bars: int = option(8, "with constrain: bars per part", choices=BARS_PER_PART)
    repeat_bias: float = option(
        1.5, "with constrain: logit bonus for continuing a bar 1, 2, 4 or 8 bars back (0: off)"
    )
    cadence: str = option(
        "tonic", "with constrain: end the tune on the key's tonic, or none", choices=CADENCES
    )
    grammar_xla: str = option(
        "auto",
        "with constrain: compile the grammar's step with XLA (on: that step 4-15x faster, but "
        "10-30 s more on the first call for each number of tunes, which one call does not repay; "
        "auto: on only when this process has compiled it for that many tunes); same tunes either way",
        choices=JIT_COMPILE,
    )

    def validate(self) -> None:
        if not 1 <= self.num <= 4096:
            raise ValueError(f"num must be in 1..4096, got {self.num}")
        if not 1 <= self.max_len <= 100_000:
            raise ValueError(f"max-len must be in 1..100000, got {self.max_len}")
        if not 0 < self.temperature < float("inf"):
            raise ValueError(f"temperature must be a positive number, got {self.temperature}")
        if not 0 <= self.top_k <= 100_000:
            raise ValueError(f"top-k must be >= 0 (0 turns it off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")
        if not -(2**31) <= self.seed < 2**31:
            raise ValueError(f"seed must fit in 32 bits, got {self.seed}")
        if not self.prime:
            raise ValueError("prime must not be empty")
        if self.form not in ("auto", "free") and not (
            self.form.isalpha() and self.form.isupper() and len(self.form) <= 12
        ):
            raise ValueError(f"form must be auto, free or parts such as AABB, got {self.form!r}")
        _check_choice("bars", self.bars, BARS_PER_PART)
        _check_choice("cadence", self.cadence, CADENCES)
        _check_choice("grammar-xla", self.grammar_xla, JIT_COMPILE)
        if not 0 <= self.repeat_bias <= 20:
            raise ValueError(f"repeat-bias must be in [0, 20], got {self.repeat_bias}")


@dataclass(frozen=True)
class RenderConfig:
    """How rendered tunes sound and how large their audio files are."""

    audio: str = option(
        "wav",
        "audio file format: wav (16-bit PCM: 5.8 MB for 32 s of stereo 44.1 kHz), flac "
        "(lossless, a third to a half of that), ogg (Vorbis) or mp3 (lossy, about a fifteenth)",
        choices=AUDIO_FORMATS,
    )
    sample_rate: int = option(44100, "samples per second of the audio, 8000 to 96000")
    mono: bool = option(False, "one channel instead of two (half the size of a WAV)")

    def validate(self) -> None:
        _check_choice("audio format", self.audio, AUDIO_FORMATS)
        if not isinstance(self.sample_rate, int) or not 8000 <= self.sample_rate <= 96000:
            raise ValueError(f"sample rate must be from 8000 to 96000, got {self.sample_rate!r}")


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
