"""Model registry: ``build_model(config)`` for every kind, and the one-step view for sampling.

Never reads files, flags or the environment.
"""

from __future__ import annotations

from musicseq.config import MODEL_KINDS, ModelConfig


def build_model(config: ModelConfig):
    """A Keras model mapping ids ``(batch, time)`` to logits ``(batch, time, vocab)``."""
    config.validate()
    from musicseq.models.recurrent import build_recurrent

    if config.kind in ("lstm", "gru", "simple_rnn"):
        return build_recurrent(config)
    raise ValueError(f"unknown model kind {config.kind!r}; choose from {MODEL_KINDS}")


def step_function(model, config: ModelConfig):
    """``(initial_state, step)`` pair that runs ``model`` one character at a time."""
    from musicseq.models.recurrent import recurrent_step

    return recurrent_step(model, config)
