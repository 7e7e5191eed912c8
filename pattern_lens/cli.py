"""the `pattern-lens` command: `render` a model's heads, a synthetic `demo`, `bench` the export, rank heads
(`stats`), look at the heads in a `gallery` (also from disk) or `serve` it

Each subcommand is one entry of `COMMANDS`: a help line, a function adding its arguments and a
function running it (returning the exit code). Adding a subcommand is adding one entry.

Exit codes: 0 everything rendered; 1 a figure function failed, input was bad, or another
`PatternLensError`; 2 bad command line (argparse); 130 / 143 interrupted by Ctrl-C / SIGTERM (one line
says what was done; a rerun resumes).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from pathlib import Path

# light imports only (no numpy): a Ctrl-C while this module imports could not be caught by `main`
from pattern_lens._errors import PatternLensError, RunInterrupted
from pattern_lens.profile import EXPORT_PROFILES

__all__ = ["main", "render_main", "command_main", "build_parser", "COMMANDS", "Command", "parse_index_list", "parse_bool", "positive_int"]


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
                    where = "" if part == text.strip() else f" in {text!r}"
                    raise argparse.ArgumentTypeError(
                        f"range {part!r}{where} is reversed: write it low to high, '{hi_i}-{lo_i}'"
                    )
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
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (`ArgumentTypeError` naming the value otherwise)"""
    return _int_arg(text, lambda v: v >= 1, "a positive integer")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _jobs(text: str) -> int:
    return _int_arg(text, lambda v: v != 0, "a positive number of workers, or -1 for all cores (-2 all but one, ...)")


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
        help="figure functions to run: a glob ('raw*') or comma-separated names ('raw,diag') "
        "(default: every registered function; 'none' also means all, as in the reference)",
    )
    p.add_argument(
        "--force", "-f", nargs="?", const=True, default=False, type=parse_bool, metavar="BOOL",
        help="redo figures that already exist (a flag; '--force false' also accepted)",
    )
    p.add_argument("--layers", type=parse_index_list, default=None, help="layers to render, e.g. '0,2,5-7' (default: all)")
    p.add_argument("--heads", type=parse_index_list, default=None, help="heads to render in each layer (default: all)")
    p.add_argument(
        "--no-summaries", dest="summaries", action="store_false",
        help="skip the head summaries (statistics in prompts/<hash>/head_stats.json, L*/H*/preview.png)",
    )
    p.add_argument("--summaries-only", action="store_true", help="only the head summaries, no figures (a quick look at a huge run)")
    p.add_argument("--preview-size", type=positive_int, default=64, metavar="S", help="largest preview side, pixels (default: 64)")
    p.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import MODULE first (repeatable): a module registering figure functions, looked up in the "
        "current folder first (as `python -m` does), then on sys.path",
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
    p.add_argument(
        "--timeout", type=_seconds, default=None, metavar="SECONDS",
        help="time limit of one figure function on one head: past it, that head fails for that function "
        "and the run goes on (default: none; process workers or --jobs 1 only)",
    )


def _search_current_folder(names: Sequence[str]) -> None:
    """with `--import` modules, put the current folder first on `sys.path`, as `python -m` does

    The console script, unlike `python -m`, does not. Worker processes get the parent's `sys.path`
    as it is when they start (loky, multiprocessing): so this comes before any worker is started.
    """
    if not names:
        return
    cwd = os.getcwd()
    if not any(p in ("", cwd) or (p and os.path.abspath(p) == cwd) for p in sys.path):
        sys.path.insert(0, cwd)


def _import_modules(names: Sequence[str]) -> None:
    """import the `--import` modules, looked up in the current folder first (`_search_current_folder`)"""
    if not names:
        return
    _search_current_folder(names)
    cwd = os.getcwd()
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise PatternLensError(
                f"cannot import figure-function module {name!r}: {e} (looked in the current folder "
                f"{cwd} and on sys.path: run from the folder holding {name.replace('.', '/')}.py, add "
                "its folder to PYTHONPATH, or install it)"
            ) from e


# ---------------------------------------------------------------------------------------------------
# render


def add_render_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens render` and `python -m pattern_lens.figures`"""
    p.add_argument("--model", "-m", type=str, required=True, help="model name(s), comma separated without spaces")
    from pattern_lens.consts import DATA_DIR

    p.add_argument("--save-path", "-s", type=str, default=DATA_DIR, help=f"root folder (default: {DATA_DIR})")
    p.add_argument("--n-samples", "-n", type=positive_int, default=None, help="only the first N prompts (default: all)")
    _add_selection_arguments(p)
    _add_execution_arguments(p)
    _add_gallery_argument(p)


def _add_gallery_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-index-html", dest="index_html", action="store_false",
        help="do not write or refresh the gallery (index.html + pattern_lens_gallery/) in the data folder",
    )


def _refresh_gallery(save_path: str | Path, quiet: bool) -> int:
    """write the gallery into `save_path` after a run; returns 0, or 1 with the error printed"""
    from pattern_lens._view.gallery import write_gallery_after_run

    error = write_gallery_after_run(save_path, quiet)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


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
        timeout=args.timeout,
        summaries=args.summaries,
        summaries_only=args.summaries_only,
        preview_size=args.preview_size,
    )


def run_render(args: argparse.Namespace) -> int:
    """render every model named in `args.model`; a model that fails does not stop the others"""
    from pattern_lens._pipeline.prestart import prestart_workers

    _search_current_folder(args.imports)  # before the workers start: they take sys.path as it is then
    prestart_workers(args.jobs, args.backend, args.profile, args.imports)  # warm while we import and plan
    from pattern_lens.figures import figures_main

    _import_modules(args.imports)
    options = _run_options(args)
    return _each_model(
        args,
        lambda model: figures_main(
            model_name=model, save_path=args.save_path, n_samples=args.n_samples, verbose=not args.quiet, **options
        ),
    )


def _each_model(args: argparse.Namespace, run_one: Callable[[str], Any]) -> int:
    """`run_one(model)` for every model in `args.model` (comma separated); one that fails does not
    stop the others. Exit code 0 only when every summary is `.ok`."""
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    if not models:  # `-m ""`, `-m ","`: nothing asked for is not a success
        raise PatternLensError(f"no model name in --model {args.model!r}: expected a name, or several separated by commas")
    code = 0
    rendered_any = False  # a run refused before any work (bad model name, ...) writes nothing at all
    for i, model in enumerate(models, start=1):
        if not args.quiet and len(models) > 1:
            print(f"model {i} / {len(models)}: {model}")
        try:
            summary = run_one(model)
        except PatternLensError as e:
            print(f"error: {e}", file=sys.stderr)
            code = 1
            continue
        rendered_any = True
        if args.quiet:
            print(summary.format())
        if not summary.ok:
            code = 1
    if args.index_html and rendered_any and Path(args.save_path).is_dir():
        code = max(code, _refresh_gallery(args.save_path, args.quiet))
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
    p.add_argument("--n-layers", type=positive_int, default=None, help="override the shape's layers")
    p.add_argument("--n-heads", type=positive_int, default=None, help="override the shape's heads")
    p.add_argument("--n-ctx", type=positive_int, default=None, help="override the shape's context length")
    p.add_argument("--n-prompts", type=positive_int, default=2, help="prompts (default: 2)")
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
    if args.summaries or args.summaries_only:
        print(
            f"summaries: {model_dir / 'prompts'}/<hash>/head_stats.json and L<layer>/H<head>/preview.png;"
            f" rank heads: pattern-lens stats -m {model_dir.name} -s {out}"
        )
    print(f"indexes: {out / 'figures.jsonl'}, {out / 'models.jsonl'}, {model_dir / 'prompts.jsonl'}")
    print(f"speed: {summary.heads_per_s:.1f} heads/s on {summary.n_jobs} workers")
    gallery_code = _refresh_gallery(out, quiet=True)
    if not gallery_code:
        from pattern_lens._view.gallery import gallery_url

        print(f"look at them: open {gallery_url(out)} in a browser, or run: pattern-lens serve {out}")
    return 1 if gallery_code or not summary.ok else 0


# ---------------------------------------------------------------------------------------------------
# gallery


def add_gallery_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens gallery`"""
    from pattern_lens.consts import DATA_DIR

    p.add_argument("data", nargs="?", default=DATA_DIR, metavar="DATA", help=f"the data folder (default: {DATA_DIR})")


def run_gallery(args: argparse.Namespace) -> int:
    """write the gallery into the data folder and say how to open it"""
    from pattern_lens._view.gallery import write_gallery

    info = write_gallery(args.data)
    print(f"gallery of {info.n_models} models, {info.n_prompts} prompts: {info.file_url()}")
    print(f"(opened from disk it shows everything but .svgz figures and hover values; for those: pattern-lens serve {args.data})")
    return 0


# ---------------------------------------------------------------------------------------------------
# bench (the measuring itself is the library `pattern_lens.bench`)


def _list_of(parse: Callable[[str], object], what: str) -> Callable[[str], tuple]:
    """an argparse type: a comma-separated list, each item converted by `parse` (an argparse type)"""

    def convert(text: str) -> tuple:
        try:
            items = tuple(parse(v.strip()) for v in text.split(",") if v.strip())
        except argparse.ArgumentTypeError as err:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} ({err})") from None
        if not items:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return items

    return convert


def _one_of(allowed: Sequence[str]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {tuple(allowed)}")
        return text

    return check


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens bench` and `python -m pattern_lens.bench`"""
    from pattern_lens.bench import FORMATS, METHODS, BenchConfig

    jobs = ",".join(map(str, BenchConfig().jobs))
    p.add_argument("--n-ctx", type=_list_of(positive_int, "positive integers like 128,512"), default=None, help="comma-separated context lengths (default: 128,512,1024,2048)")
    p.add_argument("--jobs", type=_list_of(positive_int, "positive integers like 1,4"), default=None, help=f"comma-separated job counts (default: {jobs})")
    p.add_argument("--formats", type=_list_of(_one_of(FORMATS), "formats from png,svg,svgz"), default=None, help="comma-separated, of png,svg,svgz (default: png,svgz)")
    p.add_argument("--methods", type=_list_of(_one_of(METHODS), "methods from reference,exact,fast"), default=None, help="comma-separated, of reference,exact,fast (default: all)")
    p.add_argument("--repeat", type=positive_int, default=None, help="timed rounds per configuration, median counts (default: 3)")
    p.add_argument("--heads", type=positive_int, default=None, help="distinct synthetic heads per n_ctx (default: 8)")
    p.add_argument("--backend", default=None, help="joblib backend for jobs > 1 (default: joblib's, or joblib.parallel_config's)")
    p.add_argument("--quick", action="store_true", help="a small run: n_ctx 128,512, png, 2 rounds (options given explicitly still apply); about 6 s on 2 cores")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    p.add_argument("--plot", type=Path, default=None, metavar="PATH", help="also write a PNG chart of throughput against n_ctx")
    p.add_argument(
        "--pipeline", action="store_true",
        help="instead: the whole pipeline on a synthetic 12 x 12 model (2 prompts, .npz read from disk), its heads/s and "
        "where the time goes: read, render, other, idle, index (n_ctx: the first of --n-ctx, default 512)",
    )
    p.add_argument("--stored", action="store_true", help="with --pipeline: uncompressed .npz (np.savez) instead of deflated")


def bench_config_from_args(args: argparse.Namespace):
    """the `BenchConfig` the options ask for: explicit options, else `--quick`'s, else the defaults"""
    from pattern_lens.bench import QUICK, BenchConfig

    fields = ("n_ctx", "jobs", "formats", "methods", "repeat", "heads", "backend")
    given = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    return BenchConfig(**{**(QUICK if args.quick else {}), **given})


def _run_pipeline_bench(args: argparse.Namespace) -> int:
    """`bench --pipeline`: see `pattern_lens._pipeline.stagebench`"""
    import dataclasses
    import json

    from pattern_lens._pipeline.stagebench import format_stages, run_stage_bench
    from pattern_lens._system import available_cpus

    jobs = tuple(args.jobs) if args.jobs else tuple(sorted({1, available_cpus()}))
    results = run_stage_bench(
        n_ctx=args.n_ctx[0] if args.n_ctx else 512, jobs=jobs, stored=args.stored, repeat=args.repeat or 2,
        progress=lambda line: print(f"  measuring {line}", file=sys.stderr, flush=True),
    )
    print(format_stages(results))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
        print(f"results written to {args.json}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    """measure, then print the table, the estimates and a recommendation; 1 if an output was wrong"""
    import json
    import time

    from pattern_lens import bench
    from pattern_lens._system import available_cpus

    if args.pipeline:
        return _run_pipeline_bench(args)
    config = bench_config_from_args(args)
    started = time.perf_counter()
    try:
        results = bench.run_benchmark(config, progress=lambda line: print(f"  measuring {line}", file=sys.stderr, flush=True))
    except AssertionError as err:  # an output differed from the reference: no timing is worth showing
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(bench.format_table(results))
    print()
    for line in bench.model_estimate(results):
        print(line)
    print(bench.recommendation(results))
    print(
        f"({len(results)} configurations in {time.perf_counter() - started:.0f} s on {available_cpus()} cores; "
        "every output verified against the reference algorithm first)"
    )
    if args.json:
        args.json.write_text(json.dumps(bench.results_json(config, results), indent=2))
        print(f"results written to {args.json}")
    if args.plot:
        bench.plot(results, args.plot)
        print(f"chart written to {args.plot}")
    return 0


# ---------------------------------------------------------------------------------------------------
# the command table


@dataclass(frozen=True)
class Command:
    """one subcommand: `help` line, `add_arguments(parser)`, `run(args) -> exit code`"""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------------------------------------
# activations and run (need the `model` extra: torch, transformers; imported only when used)


def add_activations_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens activations` (those of `python -m pattern_lens.activations`)"""
    from pattern_lens.activations import add_activations_arguments as add

    add(p)


def run_activations(args: argparse.Namespace) -> int:
    """compute and save attention patterns (`activations_main`) for every model in `args.model`"""
    from pattern_lens.activations import run_from_args

    return run_from_args(args)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens run`: model and prompts as `activations`, then those of `render`"""
    from pattern_lens._pipeline.stream import DEFAULT_BATCH_SIZE
    from pattern_lens.activations import DEFAULT_COMPRESS_LEVEL, _compress_level, add_arguments

    add_arguments(p, batch_size=DEFAULT_BATCH_SIZE)
    p.add_argument(
        "--save-activations", action="store_true",
        help="also write each prompt's activations.npz (default: figures only, no .npz)",
    )
    p.add_argument(
        "--compress-level", type=_compress_level, default=DEFAULT_COMPRESS_LEVEL,
        help="deflate level of activations.npz with --save-activations: 0 stored (fastest, largest) to 9; 6 the reference's (default: 6)",
    )
    _add_selection_arguments(p)
    _add_execution_arguments(p)


def run_run(args: argparse.Namespace) -> int:
    """run each model in `args.model` on the prompts and render its heads as the layers are computed"""
    from pattern_lens._pipeline.stream import run_main

    _import_modules(args.imports)
    return _each_model(
        args,
        lambda model: run_main(
            model,
            args.prompts,
            args.save_path,
            raw_prompts=args.raw_prompts,
            min_chars=args.min_chars,
            max_chars=args.max_chars,
            shuffle=args.shuffle,
            n_samples=args.n_samples,
            batch_size=args.batch_size,
            device=args.device,
            save_activations=args.save_activations,
            compress_level=args.compress_level,
            verbose=not args.quiet,
            **_run_options(args),
        ),
    )


def _server():
    from pattern_lens import server  # imported when used: `render` needs no http server

    return server


def _head_stats():
    from pattern_lens import head_stats  # imported when used

    return head_stats


COMMANDS: dict[str, Command] = {
    "render": Command("render every head of saved attention patterns", add_render_arguments, run_render),
    "demo": Command("write a synthetic model and render every head", add_demo_arguments, run_demo),
    "gallery": Command("write the offline gallery (index.html) into a data folder", add_gallery_arguments, run_gallery),
    "serve": Command(
        "serve a data folder and its gallery on http://127.0.0.1:8000",
        lambda p: importlib.import_module("pattern_lens._view.serve_args").add_arguments(p, positional=True),  # no http server to build --help
        lambda args: _server().run_from_args(args),
    ),
    "activations": Command(
        "compute a model's attention patterns on prompts and save them as .npz (needs pattern_lens[model])",
        add_activations_arguments,
        run_activations,
    ),
    "run": Command(
        "run a model on prompts and render every head as each layer is computed (needs pattern_lens[model])",
        add_run_arguments,
        run_run,
    ),
    "bench": Command(
        "measure export throughput: reference algorithm vs exact and fast profiles",
        add_bench_arguments,
        run_bench,
    ),
    "stats": Command(
        "rank heads by a statistic of their patterns (entropy, prev_token, ...), averaged over prompts",
        lambda p: _head_stats().add_arguments(p),
        lambda args: _head_stats().run_from_args(args),
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


def _run(run: Callable[[], int]) -> int:
    """`run()` (parse the command line and run it), with every error and interruption made an exit code

    The parsing is inside: building the parser imports modules, and a Ctrl-C then must not print
    a traceback either. (`SystemExit` from argparse passes through: exit code 2 and its message.)
    """
    previous_hook = sys.unraisablehook
    sys.unraisablehook = functools.partial(_unraisable, previous_hook)
    try:
        return run()
    except PatternLensError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except RunInterrupted as e:  # one line, no traceback: what was done, and that a rerun resumes
        _forget_interrupt()
        print(str(e), file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:  # Ctrl-C before or after the rendering: nothing was being written
        _forget_interrupt()
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        sys.unraisablehook = previous_hook
        while _resent:
            _resent.pop().cancel()


_resent: list[threading.Timer] = []
"Ctrl-Cs `_unraisable` is about to send again: cancelled when the command has ended (nothing to stop then)"


def _unraisable(previous: Callable, unraisable: Any) -> None:
    """`sys.unraisablehook` while a command runs: a Ctrl-C that Python could not raise (it came in a
    weakref callback or `__del__`, e.g. importlib's module locks) is sent again, to stop the command
    where it can, instead of a printed "Exception ignored" and a command that goes on

    Only while SIGINT has Python's own handler (start-up, end, or after a first Ctrl-C): during a
    run the run's handler decides, and a figure function's own `KeyboardInterrupt` is its failure.
    """
    if (
        isinstance(unraisable.exc_value, KeyboardInterrupt)
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        and hasattr(signal, "pthread_kill")
    ):
        # not from here: any signal raised now is handled (and swallowed) before this hook returns
        again = threading.Timer(0.01, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
        again.daemon = True
        _resent.append(again)
        again.start()
        return
    previous(unraisable)


def _forget_interrupt() -> None:
    """make the exit code the one `_run` returns after a caught Ctrl-C

    CPython marks a `KeyboardInterrupt` that passed through code run by `exec` of a string
    (`dataclasses` and `namedtuple` make their methods so, while modules import) as unhandled even
    once caught, and under `python -m` the interpreter then ends by SIGINT instead of exiting 130 (a
    shell sees 130 either way, a parent process -2). Each `exec` of a string clears that mark.
    """
    exec("None")  # noqa: S102 -- a constant: only its side effect on the interpreter's mark matters


def command_main(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """parse one subcommand's options alone and run it (for `python -m pattern_lens.<module>`)"""
    cmd = COMMANDS[name]

    def parse_and_run() -> int:
        parser = argparse.ArgumentParser(prog=prog or f"pattern-lens {name}", description=cmd.help)
        cmd.add_arguments(parser)
        return cmd.run(parser.parse_args(argv))

    return _run(parse_and_run)


def render_main(argv: Sequence[str] | None = None, prog: str = "pattern-lens render") -> int:
    """parse render options alone (for `python -m pattern_lens.figures`) and run them"""
    return command_main("render", argv, prog)


def main(argv: Sequence[str] | None = None) -> int:
    """entry point of the `pattern-lens` console script

    # Parameters:
     - `argv : Sequence[str] | None` arguments without the program name (defaults to `None`: `sys.argv[1:]`)

    # Returns:
     - `int` exit code (0 success, 1 failures or bad input, 2 bad command line, 130 / 143 interrupted)
    """

    def parse_and_run() -> int:
        args = build_parser().parse_args(argv)
        return args._run(args)

    return _run(parse_and_run)


if __name__ == "__main__":
    sys.exit(main())
