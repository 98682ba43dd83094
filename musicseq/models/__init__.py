"""Model registry: ``build_model(config)`` for every kind, and the one-step view for sampling.

Never reads files, flags or the environment.
"""

from __future__ import annotations

from musicseq.config import MODEL_KINDS, RECURRENT_KINDS, ModelConfig


def build_model(config: ModelConfig):
    """A Keras model mapping ids ``(batch, time)`` to logits ``(batch, time, vocab)``."""
    config.validate()
    if config.kind in RECURRENT_KINDS:
        from musicseq.models.recurrent import build_recurrent

        return build_recurrent(config)
    if config.kind == "transformer":
        from musicseq.models.transformer import build_transformer

        return build_transformer(config)
    raise ValueError(f"unknown model kind {config.kind!r}; choose from {MODEL_KINDS}")


def step_function(model, config: ModelConfig):
    """``(initial_state(batch), step(tokens, state) -> (logits, state))`` for ``model``."""
    if config.kind == "transformer":
        from musicseq.models.transformer import transformer_step

        return transformer_step(model, config)
    from musicseq.models.recurrent import recurrent_step

    return recurrent_step(model, config)


def attention_maps(model, config: ModelConfig, ids) -> list:
    """Transformer: each block's attention weights on ``ids`` (1, T), as (heads, T, T) arrays."""
    if config.kind != "transformer":
        raise ValueError("attention maps exist for the Transformer only")
    from musicseq.models.transformer import attention_maps as maps

    return maps(model, config, ids)


def top_hidden(config: ModelConfig, state):
    """Recurrent kinds: the top layer's hidden state (batch, units) in a step state."""
    if config.kind not in RECURRENT_KINDS:
        raise ValueError("hidden units are inspected for recurrent kinds")
    from musicseq.models.recurrent import top_hidden as hidden

    return hidden(state)


def register_custom_objects() -> None:
    """Import the modules whose layers are registered for ``.keras`` loading."""
    from musicseq.models import fused, rnn_cell, transformer  # noqa: F401
