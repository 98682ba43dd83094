"""Model registry: ``build_model(config)`` for every kind, and the one-step view for sampling.

Never reads files, flags or the environment.
"""

from __future__ import annotations

from musicseq.config import MODEL_KINDS, RECURRENT_KINDS, ModelConfig


def build_model(config: ModelConfig, chars=None):
    """A Keras model mapping ids ``(batch, time)`` to logits ``(batch, time, vocab)``.

    A metrical model (``config.metrical``) reads packed ids (:mod:`musicseq.metrical`) and
    needs the vocabulary's characters ``chars`` (kept in its embedding layer, for the clock).
    """
    config.validate()
    if config.metrical and chars is None:
        raise ValueError("a metrical model needs the vocabulary's characters (chars=)")
    chars = list(chars) if config.metrical else None
    if config.kind in RECURRENT_KINDS:
        from musicseq.models.recurrent import build_recurrent

        return build_recurrent(config, chars)
    if config.kind == "transformer":
        from musicseq.models.transformer import build_transformer

        return build_transformer(config, chars)
    raise ValueError(f"unknown model kind {config.kind!r}; choose from {MODEL_KINDS}")


def step_function(model, config: ModelConfig):
    """``(initial_state(batch), step(tokens, state) -> (logits, state))`` for ``model``.

    ``tokens`` are plain ids; for a metrical model the step runs the meter clock and feeds
    the model packed ids (the state is then ``[clock state, model state]``)."""
    if config.kind == "transformer":
        from musicseq.models.transformer import transformer_step

        initial_state, step = transformer_step(model, config)
    else:
        from musicseq.models.recurrent import recurrent_step

        initial_state, step = recurrent_step(model, config)
    if not config.metrical:
        return initial_state, step
    clock = meter_clock(model)

    def metrical_initial(batch):
        return [clock.initial(batch), initial_state(batch)]

    def metrical_step(tokens, state):
        read = clock.advance(state[0], tokens)
        logits, inner = step(clock.pack(tokens, read), state[1])
        return logits, [read, inner]

    return metrical_initial, metrical_step


def meter_clock(model):
    """The :class:`musicseq.metrical.MeterClock` of a metrical model's vocabulary."""
    from musicseq.metrical import MeterClock

    return MeterClock(model.get_layer("embedding").chars)


def attention_maps(model, config: ModelConfig, ids) -> list:
    """Transformer: each block's attention weights on ``ids`` (1, T), as (heads, T, T) arrays."""
    if config.kind != "transformer":
        raise ValueError("attention maps exist for the Transformer only")
    from musicseq.models.transformer import attention_maps as maps

    if config.metrical:  # the model reads packed ids
        ids, _ = meter_clock(model).pack_sequences(ids)
    return maps(model, config, ids)


def top_hidden(config: ModelConfig, state):
    """Recurrent kinds: the top layer's hidden state (batch, units) in a step state."""
    if config.kind not in RECURRENT_KINDS:
        raise ValueError("hidden units are inspected for recurrent kinds")
    from musicseq.models.recurrent import top_hidden as hidden

    return hidden(state[1] if config.metrical else state)


def register_custom_objects() -> None:
    """Import the modules whose layers are registered for ``.keras`` loading."""
    from musicseq.models import fused, metrical, rnn_cell, transformer  # noqa: F401
