"""The ``musicseq`` command: argparse subcommands over the library's functions.

The only module that reads ``sys.argv``. A mistake a user can make ends in one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import tempfile
from pathlib import Path

from musicseq import __version__
from musicseq.config import MODEL_KINDS, PRECISIONS, STRATEGIES
from musicseq.errors import UserError

DEFAULT_DATA = Path("data/abc")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse would also print usage)
        raise UserError(f"{message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="musicseq", description="Music generation from ABC notation.")
    parser.add_argument("--version", action="version", version=f"musicseq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("data", help="build the training corpus (train/validation/test .abc files)")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_DATA, help="corpus directory (default data/abc)"
    )
    p.add_argument(
        "--data", type=Path, help="use this .abc file or directory instead of music21's corpus"
    )
    p.add_argument(
        "--collections", nargs="+", help="music21 collections (default: the Irish/Scottish four)"
    )
    p.add_argument(
        "--include",
        nargs="+",
        default=[],
        help="extra collections, e.g. essenFolksong (non-commercial licence)",
    )
    p.add_argument("--show-errors", action="store_true", help="list every rejected tune")

    p = sub.add_parser("train", help="train a model")
    p.add_argument("--model", default="lstm", choices=MODEL_KINDS)
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument(
        "--data", type=Path, help="corpus dir or .abc file/dir (default data/abc, built if missing)"
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_positive_int, help="total optimiser steps")
    budget.add_argument("--epochs", type=_positive_int, help="passes over the training data")
    budget.add_argument("--minutes", type=_positive_float, help="wall-clock budget")
    p.add_argument("--steps-per-epoch", type=_positive_int, help="steps between validation reports")
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--seq-len", type=_positive_int, default=100)
    p.add_argument("--units", type=_positive_int, default=512)
    p.add_argument("--layers", type=_positive_int, default=1)
    p.add_argument("--embedding-dim", type=_positive_int, default=64)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument(
        "--activation", default="tanh", choices=("tanh", "relu"), help="rnn_scratch nonlinearity"
    )
    p.add_argument("--recurrent-init", default="orthogonal", choices=("orthogonal", "identity", "glorot_uniform"),
                   help="rnn_scratch W_hh initializer ('identity' with relu: the IRNN trick)")  # fmt: skip
    p.add_argument("--heads", type=_positive_int, default=4, help="Transformer attention heads")
    p.add_argument("--context", type=_positive_int, default=256, help="Transformer context length")
    p.add_argument("--positional", default="sinusoidal", choices=("sinusoidal", "learned"))
    p.add_argument("--learning-rate", type=_positive_float, default=2e-3)
    p.add_argument(
        "--clipnorm", type=_positive_float, default=1.0, help="gradient clipping by norm"
    )
    p.add_argument("--no-clip", action="store_true", help="turn gradient clipping off")
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"))
    p.add_argument(
        "--warmup-steps", type=int, default=0, help="linear warm-up before the cosine decay"
    )
    p.add_argument("--early-stopping", type=_positive_int, metavar="PATIENCE",
                   help="stop when validation loss has not improved for this many epochs (keeps the best weights)")  # fmt: skip
    p.add_argument(
        "--save-every", type=_positive_int, default=200, help="steps between resumable checkpoints"
    )
    p.add_argument(
        "--restart", action="store_true", help="ignore an existing checkpoint and start fresh"
    )
    p.add_argument("--strategy", default="auto", choices=STRATEGIES, help="tf.distribute strategy")
    p.add_argument(
        "--precision", default="float32", choices=PRECISIONS, help="mixed precision (GPU/TPU)"
    )
    p.add_argument("--jit-compile", default="auto", choices=("auto", "on", "off"),
                   help="XLA for the train step (auto: on for the fused LSTM/GRU on CPU)")  # fmt: skip
    p.add_argument("--deterministic", action="store_true", help="TensorFlow op determinism")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard logs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("generate", help="generate tunes from a trained model")
    p.add_argument("model_dir", type=Path)
    p.add_argument(
        "--out", type=Path, required=True, help="directory for tune_NNN.abc (and .mid/.wav)"
    )
    p.add_argument("--num", type=_positive_int, default=4)
    p.add_argument(
        "--prime", default=None, help="ABC text every tune starts with (default 'X:1\\n')"
    )
    p.add_argument("--meter", help="build a header prime with this meter, e.g. 6/8")
    p.add_argument("--key", help="… and this key, e.g. Dmix, G, Ador (default D)")
    p.add_argument("--title", help="… and this title")
    p.add_argument("--length", help="… and this unit note length (default from the meter)")
    p.add_argument("--temperature", type=_positive_float, default=1.0)
    p.add_argument(
        "--top-k", type=_int, default=0, help="sample among the k likeliest characters (0: all)"
    )
    p.add_argument(
        "--top-p", type=float, default=1.0, help="nucleus sampling probability in (0, 1]"
    )
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument(
        "--max-len", type=_positive_int, default=1200, help="characters per tune (hard cap 100000)"
    )
    p.add_argument("--constrain", action="store_true",
                   help="constrained decoding: valid headers and exact bars by construction")  # fmt: skip
    p.add_argument("--render", action="store_true", help="also write MIDI and WAV")
    p.add_argument("--no-wav", action="store_true", help="with --render: MIDI only")

    p = sub.add_parser(
        "evaluate", help="held-out loss, validity and copying of generated tunes; report + plots"
    )
    p.add_argument("model_dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--data", type=Path, help="corpus dir or .abc file/dir (default: the model's training data)"
    )
    p.add_argument("--num", type=_positive_int, default=100, help="tunes to generate")
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--temperature", type=_positive_float, default=1.0)
    p.add_argument("--max-len", type=_positive_int, default=1200)
    p.add_argument(
        "--constrain", action="store_true", help="also generate with constrained decoding"
    )

    p = sub.add_parser(
        "inspect",
        help="interpretable hidden units (RNNs) or attention maps (Transformer) on a tune",
    )
    p.add_argument("model_dir", type=Path)
    p.add_argument("--tune", type=Path, required=True, help="an .abc file (its first tune is used)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--top", type=_positive_int, default=3, help="units drawn per feature")

    p = sub.add_parser(
        "export", help="write a TensorFlow SavedModel with generate/score signatures"
    )
    p.add_argument("model_dir", type=Path)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="SavedModel directory, e.g. saved_models/NAME/savedmodel",
    )

    p = sub.add_parser("render", help="render ABC files to MIDI and WAV")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--no-wav", action="store_true", help="MIDI only")
    return parser


def cmd_data(args) -> int:
    from musicseq import corpus

    if args.data is not None:
        files = corpus.find_abc_files(args.data)
        describe = {"source": str(args.data)}
    else:
        names = list(args.collections or corpus.DEFAULT_COLLECTIONS) + list(args.include)
        files = corpus.collection_files(names)
        describe = {"source": "music21 bundled corpus", "collections": names}
    built = corpus.build_corpus(files)
    manifest = corpus.write_corpus(built, args.out, describe)
    counts = ", ".join(f"{k} {v['tunes']}" for k, v in manifest["splits"].items())
    print(f"wrote {args.out}: {counts} tunes from {len(files)} files; {len(built.errors)} rejected")
    for error in built.errors if args.show_errors else built.errors[:5]:
        print(f"  {error}")
    if len(built.errors) > 5 and not args.show_errors:
        print(f"  … {len(built.errors) - 5} more (--show-errors, or see {args.out}/manifest.json)")
    return 0


def _training_data(path: Path | None) -> Path:
    from musicseq import corpus

    if path is not None:
        return path
    if not corpus.is_corpus_dir(DEFAULT_DATA):
        print(f"notice: no corpus at {DEFAULT_DATA}; building the default corpus there")
        built = corpus.build_corpus(corpus.collection_files(corpus.DEFAULT_COLLECTIONS))
        corpus.write_corpus(built, DEFAULT_DATA, {"source": "music21 bundled corpus"})
    return DEFAULT_DATA


def cmd_train(args) -> int:
    from musicseq.config import ModelConfig, TrainConfig

    if not 0.0 <= args.dropout < 1.0:
        raise UserError(f"--dropout must be in [0, 1), got {args.dropout}")
    model_config = ModelConfig(
        kind=args.model, units=args.units, num_layers=args.layers,
        embedding_dim=args.embedding_dim, dropout=args.dropout, vocab_size=1,
        activation=args.activation, recurrent_initializer=args.recurrent_init,
        num_heads=args.heads, context=args.context, positional=args.positional,
    )  # fmt: skip
    train_config = TrainConfig(
        seq_len=args.seq_len, batch_size=args.batch_size, learning_rate=args.learning_rate,
        clipnorm=None if args.no_clip else args.clipnorm, steps=args.steps,
        epochs=args.epochs or 1, minutes=args.minutes, steps_per_epoch=args.steps_per_epoch,
        seed=args.seed, lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps,
        early_stopping=args.early_stopping, save_every=args.save_every, strategy=args.strategy,
        precision=args.precision, jit_compile=args.jit_compile, deterministic=args.deterministic,
        tensorboard=not args.no_tensorboard,
    )  # fmt: skip
    train_config.validate()
    data = _training_data(args.data)
    from musicseq.train import train

    train(
        data,
        args.out,
        model_config,
        train_config,
        verbose=0 if args.quiet else "auto",
        restart=args.restart,
        command=args.invocation,
    )
    return 0


def cmd_generate(args) -> int:
    from musicseq.config import SampleConfig

    config = SampleConfig(
        num=args.num, max_len=args.max_len, temperature=args.temperature, seed=args.seed,
        top_k=args.top_k, top_p=args.top_p, prime=_prime(args),
    )  # fmt: skip
    config.validate()
    _check_writable(args.out)
    from musicseq.sampling import check_prime
    from musicseq.train import load_model_dir

    model, model_config, vocab = load_model_dir(args.model_dir)
    check_prime(config.prime, vocab)
    from musicseq.sampling import generate

    if args.constrain:
        from musicseq.sampling import generate_constrained

        fixed = {"T": args.title, "M": args.meter, "K": args.key, "L": args.length}
        config = (
            dataclasses.replace(config, prime=SampleConfig.prime) if any(fixed.values()) else config
        )
        tunes = generate_constrained(model, model_config, vocab, config, fixed=fixed)
    else:
        tunes = generate(model, model_config, vocab, config)
    from musicseq import fileio

    paths = []
    for number, text in enumerate(tunes, start=1):
        path = args.out / f"tune_{number:03d}.abc"  # named by number, never by generated text
        fileio.write_text(path, text if text.endswith("\n") else text + "\n")
        paths.append(path)
    print(f"wrote {len(paths)} tunes to {args.out}")
    if args.render:
        _render_and_report(paths, args.out, wav=not args.no_wav)
    return 0


def _prime(args) -> str:
    """The prime from --prime, or a header built from --meter/--key/--title/--length."""
    from musicseq.config import SampleConfig
    from musicseq.notation import make_header

    shortcuts = [
        f"--{n}" for n in ("meter", "key", "title", "length") if getattr(args, n) is not None
    ]
    if args.prime is not None and shortcuts:
        raise UserError(f"--prime cannot be combined with {', '.join(shortcuts)}")
    if args.prime is not None:
        return args.prime.replace("\\n", "\n")  # allow a literal \n on the command line
    if not shortcuts:
        return SampleConfig.prime
    return make_header(args.meter or "4/4", args.key or "D", args.title or "", args.length)


def cmd_evaluate(args) -> int:
    from musicseq.evaluate import evaluate_model

    evaluate_model(args.model_dir, args.out, data=args.data, num=args.num, seed=args.seed,
                   temperature=args.temperature, constrain=args.constrain, max_len=args.max_len)  # fmt: skip
    return 0


def cmd_inspect(args) -> int:
    from musicseq.visualize import inspect_model

    inspect_model(args.model_dir, args.tune, args.out, top=args.top)
    print(f"wrote {args.out}")
    return 0


def cmd_export(args) -> int:
    from musicseq.export import export_savedmodel
    from musicseq.train import load_model_dir

    model, model_config, vocab = load_model_dir(args.model_dir)
    path = export_savedmodel(model, model_config, vocab, args.out)
    print(f"wrote SavedModel to {path} (signatures: generate, score)")
    return 0


def cmd_render(args) -> int:
    from musicseq.notation import decode_bytes, parse_tunebook

    _check_writable(args.out)
    with tempfile.TemporaryDirectory(prefix="musicseq-render-") as tmp:
        paths = []
        for file in args.files:
            if file.is_dir():
                raise UserError(f"{file} is a directory; give .abc files")
            if not file.is_file():
                raise UserError(f"no such file: {file}")
            parsed = parse_tunebook(decode_bytes(file.read_bytes()), str(file))
            for error in parsed.errors:
                print(f"skipped: {error}", file=sys.stderr)
            for index, tune in enumerate(parsed.tunes, start=1):
                stem = file.stem if len(parsed.tunes) == 1 else f"{file.stem}-{index:03d}"
                path = Path(tmp) / f"{_safe_name(stem)}.abc"
                path.write_text(tune.text(), encoding="ascii")
                paths.append(path)
        if not paths:
            raise UserError("no renderable tunes in the given files")
        failures = _render_and_report(paths, args.out, wav=not args.no_wav)
    return 1 if failures == len(paths) else 0


def _safe_name(stem: str) -> str:
    """A file name stem with only letters, digits, '-', '_' and '.' (no path parts)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).lstrip(".")
    return cleaned[:80] or "tune"


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {out}: {exc.strerror}") from exc
    if not os.access(out, os.W_OK):
        raise UserError(f"output directory is not writable: {out}")


def _render_and_report(paths: list[Path], out: Path, wav: bool) -> int:
    """Render each ABC file into ``out``, print the table, return the number of failures."""
    from musicseq.notation import ABCError, count_bars, decode_bytes, parse_tune
    from musicseq.render import render_file

    rows = []
    failures = 0
    for index, path in enumerate(paths, start=1):
        try:
            tune = parse_tune(decode_bytes(path.read_bytes()), str(path))
            title, meter, key, bars = (
                tune.title,
                tune.get("M", "?"),
                tune.key,
                str(count_bars(tune)),
            )
        except ABCError as exc:
            title, meter, key, bars = f"(invalid: {exc.reason})", "?", "?", "?"
        result = render_file(path, out, wav=wav)
        if result.error:
            failures += 1
            print(f"render failed for {path.name}: {result.error}", file=sys.stderr)
        rows.append([
            str(index), title[:30], meter or "?", key or "?", bars,
            str(result.midi) if result.midi else "-", str(result.wav) if result.wav else "-",
            f"{result.seconds:.1f}" if result.seconds is not None else "-",
        ])  # fmt: skip
    print(_table(["tune", "title", "meter", "key", "bars", "MIDI", "WAV", "seconds"], rows))
    return failures


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


COMMANDS = {
    "data": cmd_data,
    "train": cmd_train,
    "generate": cmd_generate,
    "evaluate": cmd_evaluate,
    "inspect": cmd_inspect,
    "export": cmd_export,
    "render": cmd_render,
}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = build_parser().parse_args(argv)
        args.invocation = shlex.join(["musicseq", *(sys.argv[1:] if argv is None else argv)])
        if args.command in ("train", "generate", "export", "evaluate", "inspect"):
            from musicseq._tf import quiet_import

            # Multi-worker collectives must be configured before TensorFlow initialises devices.
            quiet_import(init_devices=getattr(args, "strategy", None) != "multi_worker")
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"musicseq: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # argument values rejected by the library's validators
        print(f"musicseq: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(
            f"musicseq: error: cannot read or write{where}: {exc.strerror or exc}", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print("musicseq: interrupted", file=sys.stderr)
        return 130
