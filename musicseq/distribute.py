"""Distribution: the ``tf.distribute`` strategy by name, who is chief, and the XLA policy."""

from __future__ import annotations

import json
import os

from musicseq.config import ModelConfig, TrainConfig
from musicseq.errors import UserError


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
                "the multi_worker strategy needs the TF_CONFIG environment variable (see README)"
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


def is_multi_worker(strategy) -> bool:
    """True for ``MultiWorkerMirroredStrategy``, where Keras 3's ``fit`` cannot run."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs
    )


def use_xla(train_config: TrainConfig, model_config: ModelConfig | None) -> bool:
    """XLA for the train step: ``on``/``off``, or ``auto``: on a single CPU replica, on for the
    fused LSTM/GRU (XLA fuses each step's gate maths) and for a Transformer computing in
    float32 (+6–28% in docs/benchmarks.md; under mixed bfloat16 XLA made it ~23% slower, so
    off there), else off. Call it inside the strategy's scope, after the precision policy
    is set."""
    if train_config.jit_compile != "auto":
        return train_config.jit_compile == "on"
    if model_config is None:
        return False
    fused_recurrent = model_config.fused and model_config.kind in ("lstm", "gru")
    if model_config.kind == "transformer":
        import keras

        if keras.mixed_precision.global_policy().compute_dtype != "float32":
            return False
    elif not fused_recurrent:
        return False
    import tensorflow as tf

    # Not with several replicas: XLA cannot reach variables mirrored on other devices.
    single_replica = tf.distribute.get_strategy().num_replicas_in_sync == 1
    return single_replica and not tf.config.list_logical_devices("GPU")
