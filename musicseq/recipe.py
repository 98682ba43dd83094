"""A training recipe for a corpus and a time budget: what ``musicseq train --data FILE
--minutes M`` uses when no model or optimiser option is given.

The choices and why (docs/ablation.md has the runs behind them):

- **Transformer** -- the lowest held-out loss of the five kinds in the equal-time comparison
  (docs/model_comparison.md), with **metrical inputs** (position in the bar, bar in the part:
  the model keeps the meter) and a context of 512 characters (96% of the corpus's tunes whole).
- **Size by data**: a small corpus over-fits a large model within minutes (a 512-unit LSTM on
  700 tunes: validation loss rising after 7 minutes). Width and depth grow with the training
  characters, dropout shrinks.
- **Transposition** (each tune also in other common keys of its mode) multiplies a small corpus
  several times over without changing its melodies. From 0.4M training characters on, none:
  on the 1.2M-character default corpus two transpositions per tune left the shipped default's
  recipe 2.3% worse per note after the same 1,800 steps (docs/ablation.md).
- **The schedule fits the budget**: cosine decay of the learning rate over the measured number
  of steps the minutes allow, after a short warm-up.
- **Early stopping with the best weights kept**: validation every ~1/20 of the budget, patience 3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# Options a user gives to take the choice over: any of them turns the recipe off.
MODEL_OPTIONS = (
    "kind",
    "embedding_dim",
    "units",
    "num_layers",
    "dropout",
    "activation",
    "recurrent_initializer",
    "num_heads",
    "context",
    "positional",
    "metrical",
)
TRAIN_OPTIONS = (
    "seq_len",
    "batch_size",
    "learning_rate",
    "lr_schedule",
    "warmup_steps",
    "early_stopping",
    "steps_per_epoch",
    "transpose",
    "no_clip",
)


@dataclass
class Recipe:
    model: dict = field(default_factory=dict)  # ModelConfig fields
    train: dict = field(default_factory=dict)  # TrainConfig fields
    reasons: list[str] = field(default_factory=list)

    def describe(self) -> str:
        m, t = self.model, self.train
        shape = (
            f"Transformer {m['units']} wide, {m['num_layers']} blocks, {m['num_heads']} heads, "
            f"context {m['context']}, dropout {m['dropout']}, metrical inputs"
        )
        extra = f", {t['transpose']} transpositions per tune" if t["transpose"] else ""
        return (
            f"recipe: {shape}; batch {t['batch_size']}, learning rate {t['learning_rate']} "
            f"(cosine over the budget){extra}; early stopping after {t['early_stopping']} "
            f"validations without improvement, best weights kept"
        )


def choose(train_characters: int, minutes: float) -> Recipe:
    """The recipe for ``train_characters`` of training text and a budget of ``minutes``."""
    recipe = Recipe()
    if train_characters < 400_000:
        units, layers, heads, dropout, copies = 192, 4, 6, 0.2, 3
        recipe.reasons.append(
            f"{train_characters:,} training characters is a small corpus: a smaller model "
            f"(width {units}), dropout {dropout} and {copies} transpositions of each tune"
        )
    elif train_characters < 3_000_000:
        units, layers, heads, dropout, copies = 256, 4, 8, 0.1, 0
        recipe.reasons.append(
            f"{train_characters:,} training characters: the shipped default's shape "
            f"(width {units}, {layers} blocks), dropout {dropout}, no transpositions"
        )
    else:
        units, layers, heads, dropout, copies = 384, 6, 8, 0.1, 0
        recipe.reasons.append(
            f"{train_characters:,} training characters: a larger model (width {units}, "
            f"{layers} blocks), no augmentation"
        )
    if minutes < 10:
        units, layers, heads = min(units, 128), min(layers, 3), min(heads, 4)
        recipe.reasons.append(f"{minutes:g} minutes is short: width {units}, {layers} blocks")
    recipe.model = {
        "kind": "transformer",
        "units": units,
        "num_layers": layers,
        "num_heads": heads,
        "context": 512,
        "dropout": dropout,
        "metrical": True,
    }
    recipe.train = {
        "seq_len": 512,
        "batch_size": 16,
        "learning_rate": 1.5e-3,
        "lr_schedule": "cosine",
        "warmup_steps": 100,
        "early_stopping": 3,
        "steps_per_epoch": max(25, min(150, int(minutes * 60 / 2.0 / 20))),
        "transpose": copies,
    }
    return recipe


def apply(data, model_config, train_config, given: set[str]):
    """``(model_config, train_config, recipe)`` with the recipe's choices for a ``--minutes``
    run on ``data`` when ``given`` (the options on the command line) names none of
    :data:`MODEL_OPTIONS` / :data:`TRAIN_OPTIONS`; None otherwise (the options as given)."""
    if train_config.minutes is None or given & {*MODEL_OPTIONS, *TRAIN_OPTIONS}:
        return None
    from musicseq.corpus import load_split

    characters = sum(len(t) for t in load_split(data, "train"))
    chosen = choose(characters, train_config.minutes)
    return (
        dataclasses.replace(model_config, **chosen.model),
        dataclasses.replace(train_config, **chosen.train),
        chosen,
    )
