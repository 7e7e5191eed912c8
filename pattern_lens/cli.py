"""the `pattern-lens` command: `render` a model's heads, a synthetic `demo`, or `bench` the export

Each subcommand is one entry of `COMMANDS`: a help line, a function adding its arguments and a
function running it (returning the exit code). Adding a subcommand is adding one entry.

Exit codes: 0 everything rendered; 1 a figure function failed, input was bad, or another
`PatternLensError`; 2 bad command line (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pattern_lens._errors import PatternLensError
from pattern_lens.consts import DATA_DIR
from pattern_lens.profile import EXPORT_PROFILES

__all__ = ["main", "render_main", "build_parser", "COMMANDS", "Command", "parse_index_list", "parse_bool"]


# ---------------------------------------------------------------------------------------------------
# argument types


def parse_bool(text: str) -> bool:
    """`true/false`, `yes/no`, `1/0`, `on/off` (any case) -> bool; for `--force [BOOL]`"""
    value = text.strip().lower()
    if value in {"1", "true", "yes", "y", "on"}:
        return True
    if value in {"0", "false", "no", "n", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_index_list(text: str) -> list[int]:
    """`"0,2,5-7"` -> `[0, 2, 5, 6, 7]`; for `--layers` / `--heads`"""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError(part)
                out.extend(range(lo_i, hi_i + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected indices like '0,2,5-7', got {text!r}"
        ) from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one index, got {text!r}")
    return out


def _int_arg(text: str, valid: Callable[[int], bool], expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _int_arg(text, lambda v: v >= 1, "a positive integer")


def _jobs(text: str) -> int:
    return _int_arg(text, lambda v: v != 0, "a number of workers (-1: all cores), not 0")


def _figure_funcs_select(text: str | None) -> set[str] | str | None:
    """the reference's `--figure-funcs`: absent or 'none' -> all, 'a,b' -> set, else a glob"""
    if text is None or text.strip().lower() == "none":
        return None
    if "," in text:
        return {x.strip() for x in text.split(",") if x.strip()}
    return text.strip()


# ---------------------------------------------------------------------------------------------------
# shared options


def _add_selection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--figure-funcs", type=str, default=None,
        help="figure functions to run: a glob ('raw*'), a comma list ('raw,diag'), or 'none' for all (default: all)",
    )
    p.add_argument(
        "--force", "-f", nargs="?", const=True, default=False, type=parse_bool, metavar="BOOL",
        help="redo figures that already exist (a flag; '--force false' also accepted)",
    )
    p.add_argument("--layers", type=parse_index_list, default=None, help="layers to render, e.g. '0,2,5-7' (default: all)")
    p.add_argument("--heads", type=parse_index_list, default=None, help="heads to render in each layer (default: all)")
    p.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import MODULE first (repeatable): a module registering figure functions; it must be "
        "importable by the worker processes too",
    )


def _add_execution_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", "-j", type=_jobs, default=None, help="worker processes (default: all cores; 1: this process)")
    p.add_argument(
        "--backend", type=str, default=None,
        help="joblib backend: loky (default), threading, multiprocessing, dask",
    )
    p.add_argument("--scheduler", type=str, default=None, metavar="ADDRESS", help="dask scheduler address, with --backend dask")
    p.add_argument("--profile", choices=EXPORT_PROFILES, default=None, help="export profile (default: exact)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no preamble")


def _import_modules(names: Sequence[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise PatternLensError(
                f"cannot import figure-function module {name!r}: {e} (it must be on sys.path, e.g. "
                "installed or in the current folder / PYTHONPATH)"
            ) from e


# ---------------------------------------------------------------------------------------------------
# render


def add_render_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens render` and `python -m pattern_lens.figures`"""
    p.add_argument("--model", "-m", type=str, required=True, help="model name(s), comma separated without spaces")
    p.add_argument("--save-path", "-s", type=str, default=DATA_DIR, help=f"root folder (default: {DATA_DIR})")
    p.add_argument("--n-samples", "-n", type=_positive_int, default=None, help="only the first N prompts (default: all)")
    _add_selection_arguments(p)
    _add_execution_arguments(p)


def _run_options(args: argparse.Namespace) -> dict:
    """the `figures_main` keywords that `render` and `demo` share: selection and execution options"""
    return dict(
        force=args.force,
        figure_funcs_select=_figure_funcs_select(args.figure_funcs),
        n_jobs=args.jobs,
        backend=args.backend,
        scheduler=args.scheduler,
        profile=args.profile,
        layers=args.layers,
        heads=args.heads,
        progress=not args.quiet,
    )


def run_render(args: argparse.Namespace) -> int:
    """render every model named in `args.model`; a model that fails does not stop the others"""
    from pattern_lens._pipeline.prestart import prestart_workers

    prestart_workers(args.jobs, args.backend, args.profile, args.imports)  # warm while we import and plan
    from pattern_lens.figures import figures_main

    _import_modules(args.imports)
    models = [m for m in args.model.split(",") if m]
    options = _run_options(args)
    code = 0
    for i, model in enumerate(models, start=1):
        if not args.quiet and len(models) > 1:
            print(f"model {i} / {len(models)}: {model}")
        try:
            summary = figures_main(
                model_name=model,
                save_path=args.save_path,
                n_samples=args.n_samples,
                verbose=not args.quiet,
                **options,
            )
        except PatternLensError as e:
            print(f"error: {e}", file=sys.stderr)
            code = 1
            continue
        if args.quiet:
            print(summary.format())
        if not summary.ok:
            code = 1
    return code


# ---------------------------------------------------------------------------------------------------
# demo


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens demo`"""
    from pattern_lens.synthetic import DEFAULT_SHAPE, SHAPES

    p.add_argument("--out", "-o", type=str, default="pattern_lens_demo", help="folder to write into (default: ./pattern_lens_demo)")
    p.add_argument(
        "--shape", choices=sorted(SHAPES), default=DEFAULT_SHAPE,
        help=f"model shape (default: {DEFAULT_SHAPE}: " + ", ".join(
            f"{k} {s.n_layers}x{s.n_heads} ctx {s.n_ctx}" for k, s in SHAPES.items()
        ) + ")",
    )
    p.add_argument("--n-layers", type=_positive_int, default=None, help="override the shape's layers")
    p.add_argument("--n-heads", type=_positive_int, default=None, help="override the shape's heads")
    p.add_argument("--n-ctx", type=_positive_int, default=None, help="override the shape's context length")
    p.add_argument("--n-prompts", type=_positive_int, default=2, help="prompts (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _add_selection_arguments(p)
    _add_execution_arguments(p)


def run_demo(args: argparse.Namespace) -> int:
    """write a synthetic model into `args.out` (unless there already) and render every head"""
    from pattern_lens.figures import figures_main
    from pattern_lens.synthetic import SHAPES, write_synthetic_model

    _import_modules(args.imports)
    shape = SHAPES[args.shape]
    n_layers = args.n_layers or shape.n_layers
    n_heads = args.n_heads or shape.n_heads
    n_ctx = args.n_ctx or shape.n_ctx
    out = Path(args.out)
    model_dir = write_synthetic_model(
        out, n_layers=n_layers, n_heads=n_heads, n_ctx=n_ctx, n_prompts=args.n_prompts, seed=args.seed
    )
    if not args.quiet:
        print(f"synthetic model {model_dir.name}: {args.n_prompts} prompts, {n_layers} layers x {n_heads} heads, n_ctx {n_ctx}")
    summary = figures_main(
        model_name=model_dir.name,
        save_path=out,
        n_samples=None,
        verbose=False,
        **_run_options(args),
    )
    print(summary.format())
    print(f"figures: {model_dir / 'prompts'}/<hash>/L<layer>/H<head>/")
    print(f"indexes: {out / 'figures.jsonl'}, {out / 'models.jsonl'}, {model_dir / 'prompts.jsonl'}")
    print(f"speed: {summary.heads_per_s:.1f} heads/s on {summary.n_jobs} workers")
    return 0 if summary.ok else 1


# ---------------------------------------------------------------------------------------------------
# the command table


@dataclass(frozen=True)
class Command:
    """one subcommand: `help` line, `add_arguments(parser)`, `run(args) -> exit code`"""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _bench():
    from pattern_lens import bench  # imported when used: `render` needs none of it

    return bench


COMMANDS: dict[str, Command] = {
    "render": Command("render every head of saved attention patterns", add_render_arguments, run_render),
    "demo": Command("write a synthetic model and render every head", add_demo_arguments, run_demo),
    "bench": Command(
        "measure export throughput: reference algorithm vs exact and fast profiles",
        lambda p: _bench().add_arguments(p),
        lambda args: _bench().run_from_args(args),
    ),
}
"subcommands by name; add an entry to add a subcommand"


def build_parser(prog: str = "pattern-lens") -> argparse.ArgumentParser:
    """the `pattern-lens` parser, one subparser per entry of `COMMANDS`"""
    parser = argparse.ArgumentParser(prog=prog, description="render every attention head of a transformer into image files")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def _run(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return run(args)
    except PatternLensError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def render_main(argv: Sequence[str] | None = None, prog: str = "pattern-lens render") -> int:
    """parse render options alone (for `python -m pattern_lens.figures`) and run them"""
    parser = argparse.ArgumentParser(prog=prog, description=COMMANDS["render"].help)
    add_render_arguments(parser)
    return _run(run_render, parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """entry point of the `pattern-lens` console script

    # Parameters:
     - `argv : Sequence[str] | None` arguments without the program name (defaults to `None`: `sys.argv[1:]`)

    # Returns:
     - `int` exit code (0 success, 1 failures or bad input, 2 bad command line)
    """
    args = build_parser().parse_args(argv)
    return _run(args._run, args)


if __name__ == "__main__":
    sys.exit(main())
