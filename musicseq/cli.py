"""The ``musicseq`` command: argparse subcommands over the library's functions.

The only module that reads ``sys.argv``. Options that set a configuration field are derived
from the dataclasses in :mod:`musicseq.config` (their defaults, choices and help text live
there); each subcommand builds its configs, validates them and calls the library. A user's
mistake ends in one line on stderr and exit status 2; an internal error prints its traceback,
asks to be reported and exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import tempfile
import typing
import warnings
from pathlib import Path

from musicseq import __version__
from musicseq.config import DEFAULT_CORPUS, ModelConfig, RenderConfig, SampleConfig, TrainConfig
from musicseq.errors import MusicseqWarning, UserError

DEFAULT_DATA = Path(DEFAULT_CORPUS)

# Each subcommand's help ends with these.
EXAMPLES = {
    "data": """\
  musicseq data                                   # music21's tunebooks into data/abc
  musicseq data --include essenFolksong           # and the Essen collection
  musicseq data --data my_tunes/ --out data/mine  # your own .abc files, split 90/5/5""",
    "train": """\
  musicseq train --model gru --out models/my-gru --minutes 30 --seed 1
  musicseq train --model transformer --units 256 --layers 4 --heads 4 --out models/tf --steps 2000
  musicseq train --data my_tunes.abc --init-from folk-gru --learning-rate 5e-4 \\
      --minutes 5 --out models/my-folk-gru              # fine-tune a shipped model
  musicseq generate my-folk-gru --out out/mine          # models/NAME is found by name""",
    "generate": """\
  musicseq generate folk-transformer --num 4 --seed 7 --out out/tunes
  musicseq generate folk-gru --constrain --meter 6/8 --key Ador --form AABB --tempo 116 --out -
  musicseq generate folk-gru --title "The New Reel" --render --audio ogg --mono --out out/reels
  musicseq generate models/lstm --prime $'X:1\\nT:My Reel\\nM:4/4\\nL:1/8\\nK:D\\n' --out out/x""",
    "evaluate": """\
  musicseq evaluate folk-gru --out out/eval                  # the test split of its corpus
  musicseq evaluate folk-gru --data my_test.abc --out out/mine  # every tune of your file
  musicseq evaluate models/lstm --num 100 --constrain --out out/eval""",
    "inspect": """\
  musicseq inspect folk-gru --tune tests/data/three.abc --out out/units
  musicseq inspect folk-transformer --tune my_tune.abc --out out/attention""",
    "export": """\
  musicseq export folk-gru --out out/folk-gru-savedmodel
  saved_model_cli show --dir out/folk-gru-savedmodel --all""",
    "render": """\
  musicseq render tune.abc other.abc --out out/audio
  musicseq render tunebook.abc --audio ogg --mono --sample-rate 22050 --out out/small
  musicseq render tunebook.abc --no-wav --out out/midi""",
    "models": """\
  musicseq models
  MUSICSEQ_MODELS=~/my-models musicseq models""",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse would also print usage)
        raise UserError(f"{message} (see {self.prog} --help)")


def _number(kind: type):
    """An argparse type for ``int``/``float`` with a one-line message; ranges are checked by
    the config's ``validate``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            name = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None
        if kind is float and value != value:  # NaN
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _base_type(hint) -> type:
    """``int``, ``float``, ``str`` or ``bool`` from a field's type (``int | None`` → int)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def add_config_options(parser, cls, only: tuple[str, ...] | None = None, defaults=None) -> None:
    """Add one option per field of the dataclass ``cls`` that its metadata puts on the
    command line (``only`` narrows them; ``defaults`` overrides a default for this command)."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    defaults = defaults or {}
    for spec in dataclasses.fields(cls):
        meta = spec.metadata
        if not meta.get("cli", True) or (only is not None and spec.name not in only):
            continue
        target = parser
        if meta.get("group"):
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_mutually_exclusive_group()
            target = groups[meta["group"]]
        flag = meta.get("flag") or "--" + spec.name.replace("_", "-")
        default = defaults.get(spec.name, spec.default)
        kind = _base_type(hints[spec.name])
        if kind is bool:
            if default:
                target.add_argument(
                    "--no-" + flag[2:],
                    dest=spec.name,
                    action="store_false",
                    default=True,
                    help=f"do not {meta['help']}",
                )
            else:
                target.add_argument(flag, dest=spec.name, action="store_true", help=meta["help"])
            continue
        # A command may default a field to None to see whether it was given: show the
        # config's own default, which then applies.
        shown_default = spec.default if default is None else default
        shown = "" if shown_default is None else f" (default {shown_default!r})"
        shown = shown.replace("\n", "\\n")
        target.add_argument(
            flag,
            dest=spec.name,
            type=_number(kind) if kind in (int, float) else str,
            default=default,
            choices=meta.get("choices"),
            metavar=meta.get("metavar")
            or (
                flag[2:].upper().replace("-", "_")
                if meta.get("flag") and not meta.get("choices")
                else None
            ),
            help=meta["help"] + shown,
        )


def config_from_args(cls, args, **overrides):
    """The dataclass ``cls`` from the parsed options it added, validated (a bad value is a
    user's mistake: :class:`UserError`)."""
    values = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)
    }
    config = cls(**{**values, **overrides})
    try:
        config.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return config


def _command(sub, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose help ends with its :data:`EXAMPLES`."""
    return sub.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog="examples:\n" + EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


MODEL_HELP = "a model name (`musicseq models` lists them) or a model directory"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="musicseq",
        description="Music generation from ABC notation.",
        epilog="`musicseq COMMAND --help` shows each command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"musicseq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = _command(sub, "data", "build the training corpus (train/validation/test .abc files)")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_DATA, help="corpus directory (default data/abc)"
    )
    p.add_argument(
        "--data",
        type=Path,
        help="an .abc file or directory to build the corpus from (default: music21's "
        "bundled tunebooks)",
    )
    p.add_argument(
        "--collections", nargs="+", help="music21 collections (default: the Irish/Scottish four)"
    )
    p.add_argument(
        "--include",
        nargs="+",
        default=[],
        help="extra collections, e.g. essenFolksong (non-commercial licence) (default: none)",
    )
    p.add_argument(
        "--show-errors",
        action="store_true",
        help="list every rejected tune (default: the first five)",
    )

    p = _command(sub, "train", "train a model, or fine-tune one (--init-from)")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="model directory to write; models/NAME is then found by NAME",
    )
    p.add_argument(
        "--data", type=Path, help="corpus dir or .abc file/dir (default data/abc, built if missing)"
    )
    p.add_argument(
        "--init-from",
        metavar="MODEL",
        help="fine-tune: start from this model's weights (a name or directory), keeping its "
        "model settings and vocabulary (default: new random weights)",
    )
    add_config_options(p, ModelConfig)
    add_config_options(p, TrainConfig)
    p.add_argument("--no-clip", action="store_true", help="turn gradient clipping off")
    p.add_argument(
        "--restart", action="store_true", help="ignore an existing checkpoint and start fresh"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, "generate", "generate tunes from a trained model")
    p.description += (
        " Sampling options left out take the model's own settings when it has them "
        '(musicseq.json "sampling"; the shipped folk-transformer: top-p 0.9 free, repeat bias '
        "1.15625 constrained), else the defaults shown; an option given always wins."
    )
    p.add_argument("model_dir", type=Path, metavar="MODEL", help=MODEL_HELP)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="directory for tune_NNN.abc (and .mid and audio with --render), or - to print "
        "the tunes",
    )
    add_config_options(p, SampleConfig, defaults={"prime": None})
    p.add_argument(
        "--meter",
        help="header: this meter, e.g. 6/8 (default: the model's choice; 4/4 in a header "
        "made for --key, --title or --length without --constrain)",
    )
    p.add_argument(
        "--key",
        help="header: this key, e.g. Dmix, G, Ador (default: the model's choice; D in a "
        "header made for --meter, --title or --length without --constrain)",
    )
    p.add_argument("--title", help="header: this title (default: the model's)")
    p.add_argument(
        "--length",
        help="header: this unit note length, e.g. 1/8 (default: the meter's, 1/16 below 3/4)",
    )
    p.add_argument(
        "--tempo",
        type=_number(int),
        metavar="BPM",
        help="write Q:BEAT=BPM into every header, the beat from the meter (1/4; 3/8 in 6/8, "
        "9/8, 12/8; 1/2 in 2/2) (default: none; players then take 120 quarter notes a minute)",
    )
    p.add_argument(
        "--constrain",
        action="store_true",
        help="constrained decoding: valid headers and exact bars by construction",
    )
    p.add_argument("--render", action="store_true", help="also write MIDI and audio (--audio)")
    p.add_argument("--no-wav", action="store_true", help="with --render: MIDI only, no audio")
    add_config_options(p, RenderConfig)
    p.add_argument(
        "--html",
        action="store_true",
        help="also write index.html: each tune's score (typeset by abcm2ps), audio player "
        "(with --render) and ABC text; works offline",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress line (tunes done, characters/s, time left)",
    )

    p = _command(
        sub, "evaluate", "held-out loss, validity and copying of generated tunes; report + plots"
    )
    p.add_argument("model_dir", type=Path, metavar="MODEL", help=MODEL_HELP)
    p.add_argument(
        "--out", type=Path, required=True, help="directory for report.json, report.md and plots"
    )
    p.add_argument(
        "--data",
        type=Path,
        help="the test set: every tune of an .abc file or directory, or the test split of a "
        "corpus directory (musicseq data) (default: the test split of the model's training data; "
        "the default corpus, data/abc, is built when missing)",
    )
    add_config_options(
        p,
        SampleConfig,
        only=("num", "seed", "temperature", "top_k", "top_p", "max_len"),
        defaults={"num": 100},
    )
    p.add_argument(
        "--constrain", action="store_true", help="also generate with constrained decoding"
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress line (tunes done, characters/s, time left)",
    )

    p = _command(
        sub,
        "inspect",
        "interpretable hidden units (RNNs) or attention maps (Transformer) on a tune",
    )
    p.add_argument("model_dir", type=Path, metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--tune", type=Path, required=True, help="an .abc file (its first tune is used)")
    p.add_argument(
        "--out", type=Path, required=True, help="directory for units.json and the pictures"
    )
    p.add_argument(
        "--top", type=_number(int), default=3, help="units drawn per feature (default 3)"
    )

    p = _command(sub, "export", "write a TensorFlow SavedModel with generate/score signatures")
    p.add_argument("model_dir", type=Path, metavar="MODEL", help=MODEL_HELP)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="SavedModel directory, e.g. saved_models/NAME/savedmodel",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "model"),
        default="float32",
        help="what the SavedModel computes in: float32 (default: full speed on any CPU), or "
        "model: the policy the model loads in (a mixed_bfloat16 model keeps bfloat16 on a CPU "
        "with AVX-512 BF16 or AMX and on a GPU; it is emulated, and slower, on other CPUs)",
    )

    p = _command(sub, "render", "render ABC files to MIDI and audio")
    p.add_argument(
        "files", nargs="+", type=Path, help="ABC files (every tune of a tunebook is rendered)"
    )
    p.add_argument("--out", type=Path, required=True, help="directory for .mid and audio files")
    p.add_argument("--no-wav", action="store_true", help="MIDI only, no audio")
    add_config_options(p, RenderConfig)

    _command(sub, "models", "list the models that commands find by name")
    return parser


def cmd_data(args) -> int:
    from musicseq import corpus

    manifest, built, files = corpus.build_and_write(
        args.out, args.data, args.collections, args.include
    )
    counts = ", ".join(f"{k} {v['tunes']}" for k, v in manifest["splits"].items())
    print(f"wrote {args.out}: {counts} tunes from {len(files)} files; {len(built.errors)} rejected")
    for error in built.errors if args.show_errors else built.errors[:5]:
        print(f"  {error}")
    if len(built.errors) > 5 and not args.show_errors:
        print(f"  … {len(built.errors) - 5} more (--show-errors, or see {args.out}/manifest.json)")
    return 0


def cmd_train(args) -> int:
    from musicseq import corpus

    model_config = config_from_args(ModelConfig, args, vocab_size=1)
    if args.init_from is not None:
        changed = [
            f.name
            for f in dataclasses.fields(ModelConfig)
            if f.metadata.get("cli", True) and getattr(model_config, f.name) != f.default
        ]
        if changed:
            flags = _flags(changed, ModelConfig)
            _warn(f"{flags} {_has(changed)} no effect with --init-from (its model is kept)")
    clip = {"clipnorm": None} if args.no_clip else {}
    train_config = config_from_args(TrainConfig, args, **clip)
    data = args.data
    if data is None:
        data = DEFAULT_DATA
        if not corpus.is_corpus_dir(DEFAULT_DATA):
            print(f"notice: no corpus at {DEFAULT_DATA}; building the default corpus there")
            corpus.ensure_default(DEFAULT_DATA)
    model_config, train_config = _apply_recipe(args, data, model_config, train_config)
    from musicseq.train import train

    train(
        data,
        args.out,
        model_config,
        train_config,
        verbose=0 if args.quiet else "auto",
        restart=args.restart,
        command=args.invocation,
        init_from=args.init_from,
    )
    return 0


def _apply_recipe(args, data, model_config, train_config):
    """``--minutes`` with no model or optimiser option: the recipe for the corpus and the time
    (:func:`musicseq.recipe.apply`), printed with its reasons."""
    from musicseq import recipe

    if args.init_from is not None:  # fine-tuning keeps the model it starts from
        return model_config, train_config
    chosen = recipe.apply(data, model_config, train_config, getattr(args, "given", set()))
    if chosen is None:
        return model_config, train_config
    model_config, train_config, plan = chosen
    print(plan.describe())
    for reason in plan.reasons:
        print(f"  because {reason}")
    print("  (give any model or optimiser option to choose yourself)")
    return model_config, train_config


def _given_options(argv) -> set[str]:
    """The destinations of the options given on the command line (not left at defaults)."""
    parser = build_parser()
    parsers = [parser]
    while parsers:
        current = parsers.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            elif action.dest != "help":
                action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(argv))
    return {name for name in given if name != "command"}


def cmd_generate(args) -> int:
    from musicseq import api
    from musicseq.modeldir import resolve

    header = {"meter": args.meter, "key": args.key, "title": args.title, "length": args.length}
    given = [f"--{name}" for name, value in header.items() if value is not None]
    if args.prime is not None and given:
        raise UserError(f"--prime cannot be combined with {', '.join(given)}")
    if args.prime is not None:
        args.prime = args.prime.replace("\\n", "\n")  # allow a literal \n on the command line
    to_stdout = str(args.out) == "-"
    if to_stdout and (args.render or getattr(args, "html", False)):
        raise UserError("--render and --html write files: give --out a directory, not -")
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(SampleConfig)}
    options = {name: value for name, value in options.items() if value is not None}
    config_from_args(SampleConfig, argparse.Namespace(**options))  # checked before loading
    render_config = config_from_args(RenderConfig, args)
    # The API gets the options given on the command line, as a caller would pass them; the
    # rest come from the model's own sampling settings (if it has them) or the defaults.
    given = getattr(args, "given", None)
    options = {
        k: v
        for k, v in options.items()
        if (k in given if given is not None else v != getattr(SampleConfig, k))
    }
    shaping = [k for k in api.CONSTRAINED_ONLY if k in options]
    if shaping and not args.constrain:
        _warn(f"{_flags(shaping)} {_has(shaping)} no effect without --constrain")
        options = {k: v for k, v in options.items() if k not in shaping}
    _warn_audio_options(args, render_config, needs_render=True)
    fixed = {"M": args.meter, "K": args.key, "T": args.title, "L": args.length}
    api.check_header({k: v for k, v in fixed.items() if v}, args.tempo)
    model = resolve(args.model_dir)  # a wrong name fails before anything is written
    if not to_stdout:
        _check_writable(args.out)
    loaded = api.load_model(model)
    from musicseq.progress import Progress

    reporter = None if args.quiet else Progress("generating", unit=loaded.vocab.unit)
    tunes = api.generate(
        loaded,
        constrain=args.constrain,
        tempo=args.tempo,
        progress=reporter,
        **header,
        **options,
    )
    if reporter:
        reporter.finish()
    if to_stdout:
        sys.stdout.write(tunes.to_abc())
        return 0
    paths = tunes.save(args.out)
    print(f"wrote {len(paths)} tunes to {args.out}")
    if args.render:
        _render_and_report(paths, args.out, wav=not args.no_wav, config=render_config)
    if args.html:
        from musicseq.page import write_page

        page = write_page(
            paths,
            args.out,
            heading=f"Tunes from {args.model_dir.resolve().name}",
            command=getattr(args, "invocation", None),
        )
        print(f"wrote {page}")
    return 0


def _warn(message: str) -> None:
    """An option that does nothing in the combination given: one line on stderr."""
    print(f"musicseq: warning: {message}", file=sys.stderr)


def _flags(names: list[str], cls=None) -> str:
    """``--a/--b`` for field names (of ``cls``, whose metadata may rename the flag)."""
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
    return "/".join(
        (fields[n].metadata.get("flag") if n in fields else None) or "--" + n.replace("_", "-")
        for n in names
    )


def _has(names: list[str]) -> str:
    return "has" if len(names) == 1 else "have"


def _warn_audio_options(args, config: RenderConfig, needs_render: bool) -> None:
    """``--audio``, ``--sample-rate`` and ``--mono`` do nothing without audio."""
    changed = [
        f.name for f in dataclasses.fields(RenderConfig) if getattr(config, f.name) != f.default
    ]
    if needs_render and not args.render:
        if args.no_wav:
            _warn("--no-wav has no effect without --render")
        if changed:
            _warn(f"{_flags(changed)} {_has(changed)} no effect without --render")
    elif args.no_wav and changed:
        _warn(f"{_flags(changed)} {_has(changed)} no effect with --no-wav (no audio is written)")


def cmd_evaluate(args) -> int:
    from musicseq.evaluate import evaluate_model

    sample = config_from_args(SampleConfig, args)
    given = getattr(args, "given", {"temperature", "top_k", "top_p"})
    # Not given: the model's own sampling settings, else SampleConfig's defaults.
    chosen = {f: getattr(sample, f) for f in ("temperature", "top_k", "top_p") if f in given}
    evaluate_model(
        args.model_dir,
        args.out,
        data=args.data,
        num=sample.num,
        seed=sample.seed,
        **chosen,
        constrain=args.constrain,
        max_len=sample.max_len,
        progress=not args.quiet,
    )
    return 0


def cmd_inspect(args) -> int:
    from musicseq.visualize import inspect_model

    if args.top <= 0:
        raise UserError(f"--top must be a positive integer, got {args.top}")
    inspect_model(args.model_dir, args.tune, args.out, top=args.top)
    print(f"wrote {args.out}")
    return 0


def cmd_export(args) -> int:
    from musicseq.export import export_savedmodel
    from musicseq.modeldir import ModelDir

    loaded = ModelDir.load(args.model_dir)
    path = export_savedmodel(
        loaded.model, loaded.config, loaded.vocab, args.out, precision=args.precision
    )
    print(f"wrote SavedModel to {path} (signatures: generate, score)")
    return 0


def cmd_render(args) -> int:
    from musicseq.notation import decode_bytes, parse_tunebook

    config = config_from_args(RenderConfig, args)
    _warn_audio_options(args, config, needs_render=False)
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
                path.write_text(tune.text, encoding="ascii")
                paths.append(path)
        if not paths:
            raise UserError("no renderable tunes in the given files")
        failures = _render_and_report(paths, args.out, wav=not args.no_wav, config=config)
    return 1 if failures == len(paths) else 0


def cmd_models(args) -> int:
    from musicseq.modeldir import MODELS_ENV, list_models, search_path, show_place

    search = search_path()
    rows = []
    for info in list_models(search):
        held = "-" if info.held_out is None else f"{info.held_out:.3f} ({info.held_out_source})"
        rows.append(
            [
                info.name + (" (shadowed)" if info.shadowed else ""),
                info.kind,
                "-" if info.parameters is None else f"{info.parameters:,}",
                f"{info.bytes_on_disk / 1e6:.1f} MB",
                held,
                show_place(info.path),
            ]
        )
    header = ["name", "kind", "parameters", "size", "held-out nats/char", "path"]
    print(_table(header, rows) if rows else "no models found")
    places = ", ".join(show_place(folder) for folder in search)
    print(f"\nsearched in this order: {places} (more with {MODELS_ENV}=DIR{os.pathsep}DIR)")
    return 0


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


def _render_and_report(
    paths: list[Path], out: Path, wav: bool, config: RenderConfig | None = None
) -> int:
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
        result = render_file(path, out, wav=wav, config=config)
        if result.error:
            failures += 1
            print(f"render failed for {path.name}: {result.error}", file=sys.stderr)
        rows.append(
            [
                str(index),
                title[:30],
                meter or "?",
                key or "?",
                bars,
                str(result.midi) if result.midi else "-",
                str(result.audio) if result.audio else "-",
                f"{result.seconds:.1f}" if result.seconds is not None else "-",
            ]
        )
    print(_table(["tune", "title", "meter", "key", "bars", "MIDI", "audio", "seconds"], rows))
    return failures


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


COMMANDS = {
    "data": cmd_data,
    "train": cmd_train,
    "generate": cmd_generate,
    "evaluate": cmd_evaluate,
    "inspect": cmd_inspect,
    "export": cmd_export,
    "render": cmd_render,
    "models": cmd_models,
}


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """The library's :class:`MusicseqWarning` as one line; other warnings as Python shows them."""
    if issubclass(category, MusicseqWarning):
        _warn(str(message))
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = build_parser().parse_args(argv)
        args.invocation = shlex.join(["musicseq", *(sys.argv[1:] if argv is None else argv)])
        if args.command in ("train", "generate", "evaluate"):
            args.given = _given_options(sys.argv[1:] if argv is None else argv)
        if args.command in ("train", "generate", "export", "evaluate", "inspect"):
            from musicseq._tf import quiet_import

            # Multi-worker collectives must be configured before TensorFlow initialises devices.
            quiet_import(init_devices=getattr(args, "strategy", None) != "multi_worker")
        with warnings.catch_warnings():
            warnings.simplefilter("always", MusicseqWarning)
            warnings.showwarning = _show_warning
            return COMMANDS[args.command](args)
    except UserError as exc:
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
    except Exception:
        import traceback

        traceback.print_exc()
        print(
            "musicseq: internal error (a bug in musicseq, not a problem with your input); "
            "please report it to the musicseq developers with the traceback above",
            file=sys.stderr,
        )
        return 1
