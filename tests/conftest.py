import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """The default corpus's splits: data/abc when `musicseq data` has built it, else built once
    here (a clean checkout, as in CI, has only data/abc/README.md)."""
    built = Path(__file__).parent.parent / "data" / "abc"
    if (built / "test.abc").is_file() and (built / "train.abc").is_file():
        return built
    from musicseq.corpus import DEFAULT_COLLECTIONS, build_corpus, collection_files, write_corpus

    out = tmp_path_factory.mktemp("corpus")
    write_corpus(build_corpus(collection_files(DEFAULT_COLLECTIONS)), out)
    return out


def _train_tiny(out: Path, model_config, train_config) -> Path:
    from musicseq.train import train

    train(DATA / "three.abc", out, model_config, train_config, log=lambda _m: None, verbose=0)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny LSTM trained for a few steps on the three fixture tunes (shared by tests)."""
    from musicseq.config import ModelConfig, TrainConfig

    return _train_tiny(
        tmp_path_factory.mktemp("tiny_model"),
        ModelConfig(kind="lstm", units=32, embedding_dim=16, vocab_size=1),
        TrainConfig(seq_len=32, batch_size=8, steps=30, seed=1),
    )


@pytest.fixture(scope="session")
def bfloat16_model_dir(tmp_path_factory) -> Path:
    """A tiny Transformer trained for 3 steps under mixed bfloat16 (as the shipped default)."""
    from musicseq.config import ModelConfig, TrainConfig

    return _train_tiny(
        tmp_path_factory.mktemp("bf16"),
        ModelConfig(
            kind="transformer", units=16, embedding_dim=8, num_heads=2, context=32, vocab_size=1
        ),
        TrainConfig(seq_len=32, batch_size=4, steps=3, seed=0, precision="mixed_bfloat16"),
    )


def cpu_seconds_small_and_large(work, small, large) -> tuple[float, float]:
    """CPU seconds of ``work(small)`` and ``work(large)``, each the best of three, the two sizes
    interleaved and the garbage collector off: a busy machine (the other test worker) only ever
    adds time, and to both sizes alike. For linear-time ratios, never deadlines."""
    import gc
    import time

    def seconds(item):
        start = time.process_time()
        work(item)
        return time.process_time() - start

    best_small = best_large = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            best_small = min(best_small, seconds(small))
            best_large = min(best_large, seconds(large))
    finally:
        gc.enable()
    return best_small, best_large


def run_cli(*args, cwd=None, timeout=300):
    """Run ``python -m musicseq`` in a subprocess; returns the CompletedProcess."""
    import subprocess

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(Path(__file__).parent.parent))
    return subprocess.run(
        [sys.executable, "-m", "musicseq", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )
