"""what every subcommand shares, below the CLI and the public modules that run commands

Argument types, the option groups that `render`, `demo` and `run` share, `--import`, running over
several models, and `run_command`: the one place where errors and Ctrl-C become exit codes. The
`pattern-lens` dispatcher (`pattern_lens.cli`) and each public module's `main` (`python -m
pattern_lens.figures`, `.server`, ...) both run their command through it, so neither imports the other.

Exit codes: 0 everything rendered; 1 a figure function failed, input was bad, or another
`PatternLensError`; 2 bad command line (argparse); 130 / 143 interrupted by Ctrl-C / SIGTERM (one line
says what was done; a rerun resumes).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# light imports only (no numpy): a Ctrl-C while this module imports could not be caught by `run_guarded`
from pattern_lens._errors import PatternLensError, RunInterrupted
from pattern_lens._system import reuse_large_buffers
from pattern_lens.profile import EXPORT_PROFILES

HELP: dict[str, str] = {
    "render": "render every head of saved attention patterns",
    "demo": "write a synthetic model and render every head",
    "gallery": "write the offline gallery (index.html) into a data folder",
    "serve": "serve a data folder and its gallery on http://127.0.0.1:8000",
    "activations": "compute a model's attention patterns on prompts and save them as .npz (needs pattern_lens[model])",
    "run": "run a model on prompts and render every head as each layer is computed (needs pattern_lens[model])",
    "bench": "measure export throughput: reference algorithm vs exact and fast profiles",
    "stats": "rank heads by a statistic of their patterns (entropy, prev_token, ...), averaged over prompts",
}
"each subcommand's help line (`pattern-lens COMMAND --help` and `python -m pattern_lens.<module> --help`)"


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


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def jobs_arg(text: str) -> int:
    return _int_arg(text, lambda v: v != 0, "a positive number of workers, or -1 for all cores (-2 all but one, ...)")


def parse_figure_funcs(text: str | None) -> set[str] | str | None:
    """the reference's `--figure-funcs`: absent or 'none' -> all, 'a,b' -> set, else a glob"""
    if text is None or text.strip().lower() == "none":
        return None
    if "," in text:
        return {x.strip() for x in text.split(",") if x.strip()}
    return text.strip()


# ---------------------------------------------------------------------------------------------------
# shared options


def add_selection_arguments(p: argparse.ArgumentParser) -> None:
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


def add_execution_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs", "-j", type=jobs_arg, default=None,
        help="worker processes, at most the cores this process may use (default: as many as the estimated work "
        "pays for; 1: this process)",
    )
    p.add_argument(
        "--backend", type=str, default=None,
        help="joblib backend: warm (default: workers forked warm from this process), loky, threading, multiprocessing, dask",
    )
    p.add_argument("--scheduler", type=str, default=None, metavar="ADDRESS", help="dask scheduler address, with --backend dask")
    p.add_argument("--profile", choices=EXPORT_PROFILES, default=None, help="export profile (default: exact)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no preamble")
    p.add_argument(
        "--timeout", type=seconds_arg, default=None, metavar="SECONDS",
        help="time limit of one figure function on one head: past it, that head fails for that function "
        "and the run goes on (default: none; process workers or --jobs 1 only)",
    )


def add_gallery_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-index-html", dest="index_html", action="store_false",
        help="do not write or refresh the gallery (index.html + pattern_lens_gallery/) in the data folder",
    )


def search_current_folder(names: Sequence[str]) -> None:
    """with `--import` modules, put the current folder first on `sys.path`, as `python -m` does

    The console script, unlike `python -m`, does not. Worker processes get the parent's `sys.path`
    as it is when they start (loky, multiprocessing): so this comes before any worker is started.
    """
    if not names:
        return
    cwd = os.getcwd()
    if not any(p in ("", cwd) or (p and os.path.abspath(p) == cwd) for p in sys.path):
        sys.path.insert(0, cwd)


def import_modules(names: Sequence[str]) -> None:
    """import the `--import` modules, looked up in the current folder first (`search_current_folder`)"""
    if not names:
        return
    search_current_folder(names)
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
# running over models


def run_options(args: argparse.Namespace) -> dict:
    """the `figures_main` keywords that `render` and `demo` share: selection and execution options"""
    return dict(
        force=args.force,
        figure_funcs_select=parse_figure_funcs(args.figure_funcs),
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


def model_names(text: str) -> list[str]:
    """the names in `--model` (comma separated, spaces around each dropped)

    # Raises:
     - `PatternLensError` when there is none (`-m ""`, `-m ","`): nothing asked for is not a success
    """
    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise PatternLensError(f"no model name in --model {text!r}: expected a name, or several separated by commas")
    return models


def each_model(args: argparse.Namespace, run_one: Callable[[str], Any]) -> int:
    """`run_one(model)` for every model in `args.model` (comma separated); one that fails does not
    stop the others. Exit code 0 only when every summary is `.ok`."""
    models = model_names(args.model)
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
        code = max(code, refresh_gallery(args.save_path, args.quiet))
    return code


def refresh_gallery(save_path: str | Path, quiet: bool) -> int:
    """write the gallery into `save_path` after a run; returns 0, or 1 with the error printed"""
    from pattern_lens._view.gallery import write_gallery_after_run

    error = write_gallery_after_run(save_path, quiet)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------------
# errors and interruptions -> exit codes


def run_guarded(run: Callable[[], int]) -> int:
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
    except (KeyboardInterrupt, Exception) as e:
        # Ctrl-C before or after the rendering (nothing was being written); or one that CPython turned
        # into an import's "ImportError: initialization failed" (raised from the KeyboardInterrupt)
        # while a C extension initialised (matplotlib's ft2font, as the CLI imports)
        if not _caused_by_ctrl_c(e):
            raise
        return _interrupted()
    finally:
        sys.unraisablehook = previous_hook
        while _resent:
            _resent.pop().cancel()


def _interrupted() -> int:
    """a Ctrl-C outside the rendering: the one line "interrupted", and its exit code"""
    _forget_interrupt()
    print("interrupted", file=sys.stderr)
    return 130


def _caused_by_ctrl_c(error: BaseException) -> bool:
    """whether a `KeyboardInterrupt` is among the causes (`raise ... from`) or contexts of `error`"""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def as_process(main: Callable[[], int]) -> int:
    """`main()` as the command of this process, which exits with the code returned: the console
    script and `python -m pattern_lens.<module>` (a caller of `main()` in its own process keeps its
    pools and its Ctrl-C)

    The command's worker pools are stopped here (a Ctrl-C while they stop: the one line
    "interrupted", exit 130), then Ctrl-C is ignored until the process has exited: while it exits
    loky and threading join their threads, and a Ctrl-C there printed a traceback and exited 0
    whatever the command's code. Ignored rather than handled: the interpreter puts back the default
    action of a signal with a Python handler before its last steps (a Ctrl-C there killed the
    process, exit -2), not of an ignored one; nothing can hang there, the pools are stopped. Then,
    where this interpreter was started for this command alone, the process ends here with the code
    (`_end_process`); otherwise the code is returned. argparse's `SystemExit` (`--help`, a bad command
    line) becomes its code here, so those end the same way.
    """
    reuse_large_buffers()  # this process is ours: a run with one job inflates its layers here
    try:
        code = main()
    except SystemExit as e:  # argparse's (--help: 0, a bad command line: 2): the same quick end
        code = _exit_code(e)
    try:
        _close_worker_pools(kill=code != 0)
    except KeyboardInterrupt:
        code = _interrupted()
    except Exception:  # noqa: BLE001 -- a pool that will not stop cleanly: the work is over; its workers die with this process
        pass
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if _started_for_this_command():
            _end_process(code)
    return code


def _exit_code(e: SystemExit) -> int:
    """the process's exit code for `SystemExit(e.code)`, as the interpreter makes it (a message is
    printed to stderr and is code 1)"""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1


def _started_for_this_command() -> bool:
    """whether this interpreter runs this command and nothing else, and nothing watches it

    From `sys.orig_argv`: `python [options] -m pattern_lens.<module> ...` or the console script
    (the interpreter's first argument is `sys.argv[0]`). Not under `python -i` (the prompt comes
    after the command), a profiler or tracer (`python -m cProfile -o F -m pattern_lens.cli`, coverage,
    pdb, IPython's `%run -m`: their own `-m` or process comes first, or, on Python 3.12+,
    `sys.monitoring` names a tool), since those go on after the command returns.
    """
    if sys.flags.inspect or os.environ.get("PYTHONINSPECT") or sys.gettrace() is not None or sys.getprofile() is not None:
        return False
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None and any(monitoring.get_tool(i) is not None for i in range(6)):
        return False
    args = list(getattr(sys, "orig_argv", ())[1:])
    while args:
        arg = args.pop(0)
        if arg == "-m" or (arg.startswith("-m") and len(arg) > 2):
            module = args.pop(0) if arg == "-m" and args else arg[2:]
            return module.split(".")[0] == "pattern_lens"
        if arg in ("-X", "-W", "--check-hash-based-pycs"):
            args = args[1:]  # the option's value
        elif arg == "-" or arg.startswith("-c"):
            return False  # a program from standard input or a string: someone else's
        elif not arg.startswith("-"):  # a script: ours only if it is the console script
            return arg == sys.argv[0] and Path(arg).name in _CONSOLE_SCRIPTS
    return False


_CONSOLE_SCRIPTS: frozenset[str] = frozenset({"pattern-lens", "pattern-lens.exe", "pattern-lens-script.py"})
"file names of the console script (`[project.scripts]`), as installers write it"


def _end_process(code: int) -> None:
    """end this process with `code` as the interpreter's exit would, less its teardown of every object

    After a render the interpreter spent 0.3-0.45 s of CPU freeing numba's, numpy's and matplotlib's
    objects and modules one by one (a cold 1-head run: 0.93 -> 0.60 s wall). What its exit does that
    anyone sees is done here, in its order: non-daemon threads joined with threading's exit hooks
    (`threading._shutdown`: concurrent.futures' and loky's threads end there), the `atexit` functions
    (multiprocessing's finalizers, logging's flush, an `--import` module's own), the standard streams
    flushed (a stream that cannot be flushed is reported and turns a 0 into 120, as the interpreter
    does); then `os._exit`. Where this Python lacks either private hook: the normal exit (returns).
    """
    shutdown = getattr(threading, "_shutdown", None)
    exit_functions = getattr(atexit, "_run_exitfuncs", None)
    if shutdown is None or exit_functions is None:
        return
    try:
        shutdown()
    except BaseException:  # noqa: BLE001 -- reported as the interpreter reports it; the exit goes on
        import traceback

        print("Exception ignored on threading shutdown:", file=sys.stderr)
        traceback.print_exc()
    exit_functions()
    for stream in (sys.stdout, sys.stderr):
        if stream is None or getattr(stream, "closed", False):
            continue
        try:
            stream.flush()
        except (OSError, ValueError) as e:  # e.g. a full disk, a closed pipe: the output is incomplete
            code = code or 120
            with contextlib.suppress(Exception):
                print(f"Exception ignored while flushing {getattr(stream, 'name', 'a stream')}: {e!r}", file=sys.__stderr__)
    os._exit(code)


def _close_worker_pools(kill: bool) -> None:
    """the command's worker processes stopped, where it started any (looked up, not imported: a
    command that started none, such as `stats`, does not load the engine for this)"""
    warm = sys.modules.get("pattern_lens._engine.warm")
    if warm is not None:
        warm.close_worker_pools(kill=kill)


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
    """make the exit code the one `run_guarded` returns after a caught Ctrl-C

    CPython marks a `KeyboardInterrupt` that passed through code run by `exec` of a string
    (`dataclasses` and `namedtuple` make their methods so, while modules import) as unhandled even
    once caught, and under `python -m` the interpreter then ends by SIGINT instead of exiting 130 (a
    shell sees 130 either way, a parent process -2). Each `exec` of a string clears that mark.
    """
    exec("None")  # noqa: S102 -- a constant: only its side effect on the interpreter's mark matters



def run_command(
    name: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
) -> int:
    """parse one subcommand's options alone and run it (`python -m pattern_lens.<module>`)"""

    def parse_and_run() -> int:
        parser = argparse.ArgumentParser(prog=prog or f"pattern-lens {name}", description=HELP.get(name))
        add_arguments(parser)
        return run(parser.parse_args(argv))

    return run_guarded(parse_and_run)
