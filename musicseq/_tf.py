"""Import TensorFlow once, with its C++ start-up chatter kept off the user's terminal.

TensorFlow 2.21 logs oneDNN/CUDA notices through absl before ``TF_CPP_MIN_LOG_LEVEL`` takes
effect; the CLI calls :func:`quiet_import` so that a user sees musicseq's output, not those.
Library users who import TensorFlow themselves are not affected.
"""

from __future__ import annotations

import os
import sys


def quiet_import(init_devices: bool = True) -> None:
    """Import tensorflow (and initialise its devices) with stderr (fd 2) sent to /dev/null."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            if init_devices:
                tf.config.list_logical_devices()
                # The first int32 transpose logs a oneDNN notice: let it happen here.
                tf.transpose(tf.constant([[1]], dtype=tf.int32))
    finally:
        os.dup2(saved, 2)
        os.close(saved)
