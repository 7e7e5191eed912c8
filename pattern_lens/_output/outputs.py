"""what a figure function writes into a head folder, and running the functions on one head

A head folder is `<prompt_dir>/L<L>/H<H>/`. A figure function `f` with `f.figure_save_fmt` writes
`<figure>.<fmt>` for each of its figure names (`pattern_lens._layout.figure_names`: `<f.__name__>`, or
`<f.__name__>.<name>` for each figure of a multi-figure one); a failure writes `<f.__name__>.error.txt`.

Resuming needs to know which outputs exist: the folder is listed once (one `os.scandir`) and every
function is checked against that listing, where the reference globs the disk once per function.
The listing also removes temporary files left by a killed run (`.<name>.pl<pid>@<host>.XXXX.tmp` of a
process that is gone, see `pattern_lens._output.atomic.is_stale_temp`), so a rerun leaves no debris
behind, and never touches those of another run that is writing the same folder now.

An output counts as done only if it is complete (`output_problem`): a regular file (not a link or a
folder), not empty, and for the formats that have one, with its end marker (PNG's `IEND` chunk, a
whole gzip stream for `.svgz`, `</svg>`). A broken output is deleted, redone and reported.

A figure function ends in one of two ways on a head: done, or a failure written to
`<func>.error.txt`, whatever it raises (`SystemExit` and `KeyboardInterrupt` included), when it
runs past the run's time limit (`FigureTimeout`), or when it returns without its outputs complete
(`MissingOutputs`). Only the run's own `RunInterrupted` stops the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
import traceback
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from pattern_lens._errors import PatternLensError, RunInterrupted
from pattern_lens._layout import FIGURE_NAMES_ATTR, error_file_name, figure_file_name, figure_names, is_temp_name
from pattern_lens._export.png_fast import PNG_IEND, PNG_SIGNATURE
from pattern_lens._output.atomic import atomic_write_text, remove_stale_temp

__all__ = [
    "pending_funcs",
    "figure_func_name",
    "expected_outputs",
    "is_complete",
    "output_problem",
    "discard_broken",
    "check_output_names",
    "list_head_dir",
    "run_figure_funcs",
    "time_limit",
    "FigureTimeout",
    "MissingOutputs",
    "missing_outputs",
]


class FigureTimeout(BaseException):
    """a figure function ran past the run's time limit on one head

    A `BaseException`, so that a function's own `except Exception` cannot swallow it.
    """


class MissingOutputs(Exception):
    """a figure function returned normally without writing its outputs, or left them broken"""


def figure_func_name(func: Callable) -> str:
    """the name a figure function's outputs start with: its `__name__`"""
    return getattr(func, "__name__", "<unknown>")


def expected_outputs(func: Callable) -> tuple[str, ...] | None:
    """file names a figure function writes into a head folder

    # Parameters:
     - `func : Callable`
       a figure function; reads `func.figure_save_fmt` and `func._figure_names`

    # Returns:
     - `tuple[str, ...]`
       `("<func>.<fmt>",)` or, for a multi-figure function, `("<func>.<fig>.<fmt>", ...)`
     - `None` when the function does not declare `figure_save_fmt` (a plain user function): then
       any file named `<name>.*` other than its error file counts as its output, like the reference
    """
    fmt: str | None = getattr(func, "figure_save_fmt", None)
    if fmt is None:
        return None
    return tuple(figure_file_name(name, fmt) for name in figure_names(func))


_UNSAFE_IN_NAME: tuple[str, ...] = tuple(c for c in ("/", "\\", "\0", os.sep, os.altsep) if c)


def check_output_names(figure_funcs: Iterable[Callable]) -> None:
    """refuse figure functions whose file names would not be plain names inside the head folder

    # Raises:
     - `PatternLensError` naming the function, when its name, format or a figure name is empty or
       holds a path separator or NUL (a name like `../../x` would write outside the save path)
    """
    for func in figure_funcs:
        name = figure_func_name(func)
        parts = [("name", name)]
        fmt = getattr(func, "figure_save_fmt", None)
        if fmt is not None:
            parts.append(("figure_save_fmt", str(fmt)))
        parts.extend(("figure name", str(f)) for f in getattr(func, FIGURE_NAMES_ATTR, None) or ())
        for what, part in parts:
            if not part.strip() or part in (".", "..") or any(c in part for c in _UNSAFE_IN_NAME):
                raise PatternLensError(
                    f"figure function {name!r}: its {what} {part!r} is not a plain file name (no '/', "
                    "'\\', NUL, '.', '..' or empty name): its files would land outside the head folder"
                )


def _gzip_problem(path: Path) -> str | None:
    d = zlib.decompressobj(wbits=31)  # gzip container: checks the trailer's CRC and size
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                while chunk and not d.eof:
                    d.decompress(chunk, 1 << 22)
                    chunk = d.unconsumed_tail
                if d.eof:
                    break
    except zlib.error as e:
        return f"not a valid gzip stream ({e})"
    return None if d.eof else "truncated gzip stream (no trailer)"


def _read_ends(path: Path, n_head: int, n_tail: int, size: int) -> tuple[bytes, bytes]:
    """the first `n_head` and last `n_tail` bytes of a regular file of `size` bytes

    Two `pread`s on a raw descriptor: a third of the cost of a buffered `open` + `seek` (~15 against
    ~45 us), which counts, as every output is checked after its function returns and on resume.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        if not hasattr(os, "pread"):  # Windows
            head = os.read(fd, n_head)
            os.lseek(fd, max(0, size - n_tail), os.SEEK_SET)
            return head, os.read(fd, n_tail)
        return os.pread(fd, n_head, 0), os.pread(fd, n_tail, max(0, size - n_tail))
    finally:
        os.close(fd)


def output_problem(path: Path | str, whole_gzip: bool = True) -> str | None:
    """why an existing output is not a complete file, or `None` when it is

    Cheap checks: a regular file (not a symbolic link, a folder, ...), not empty; `.png`: the PNG
    signature and the `IEND` chunk at the end; `.svgz`: a whole gzip stream (decompressed, CRC
    checked; with `whole_gzip=False` only its magic bytes); `.svg`: ends with `</svg>`. Other
    formats: only the first two.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"cannot be read ({type(e).__name__}: {e})"
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a folder?)"
    if st.st_size == 0:
        return "empty (0 bytes)"
    suffix = path.suffix.lower()
    try:
        if suffix == ".png":
            head, tail = _read_ends(path, len(PNG_SIGNATURE), len(PNG_IEND), st.st_size)
            if head != PNG_SIGNATURE:
                return "not a PNG (bad signature)"
            if tail != PNG_IEND:
                return "truncated PNG (no IEND chunk at the end)"
        elif suffix in (".svgz", ".gz"):
            if not whole_gzip:
                return None if _read_ends(path, 2, 0, st.st_size)[0] == b"\x1f\x8b" else "not a gzip file (bad magic bytes)"
            return _gzip_problem(path)
        elif suffix == ".svg":
            if not _read_ends(path, 0, 64, st.st_size)[1].rstrip().endswith(b"</svg>"):
                return "truncated SVG (no closing </svg>)"
    except OSError as e:
        return f"cannot be read ({type(e).__name__}: {e})"
    return None


def _remove_broken(path: Path) -> None:
    # a folder where a file should be is left (and reported): it may hold someone's data
    with contextlib.suppress(OSError):
        if not os.path.isdir(path) or os.path.islink(path):
            os.unlink(path)


def discard_broken(save_dir: Path, name: str, listing: set[str], broken: list[str] | None) -> bool:
    """check one output; a broken one is deleted (not a folder), dropped from `listing` and reported"""
    problem = output_problem(save_dir / name)
    if problem is None:
        return False
    listing.discard(name)
    if broken is not None:
        broken.append(f"{save_dir / name}: {problem}")
    _remove_broken(save_dir / name)
    return True


def is_complete(
    func: Callable, listing: set[str] | frozenset[str], save_dir: Path | None = None, broken: list[str] | None = None
) -> bool:
    """whether every output of `func` is in a head folder's `listing` (from `list_head_dir`)

    With `save_dir`, each output must also be a complete file (`output_problem`); broken ones are
    deleted, dropped from `listing` (a `set`) and described in `broken`.
    """
    name_ = figure_func_name(func)
    expected: tuple[str, ...] | None = expected_outputs(func)
    if expected is None:
        prefix: str = name_ + "."
        error_name: str = error_file_name(name_)
        candidates = [n for n in listing if n.startswith(prefix) and n != error_name]
    else:
        if not all(name in listing for name in expected):
            return False
        candidates = list(expected)
    if save_dir is None:
        return bool(candidates)
    ok = [n for n in candidates if not discard_broken(Path(save_dir), n, listing, broken)]  # type: ignore[arg-type]
    return len(ok) == len(candidates) if expected is not None else bool(ok)


def missing_outputs(func: Callable, save_dir: Path) -> str | None:
    """what a figure function that has just returned failed to write into `save_dir`, or `None`

    Each declared output (`expected_outputs`) must be a complete file (`output_problem`; an `.svgz`
    only starts like gzip here: inflating every one just written would cost more than writing it,
    and a resume checks the whole stream); a function without `figure_save_fmt` must have left some
    `<name>.*` file, the reference's rule (any such file, checked by name only: such a function may
    write anything, an empty marker included). A broken declared output is deleted, so that it is not
    taken for a figure (the viewer, a resume).

    # Returns:
     - `str | None` one line, e.g. `"did not write raw.png (missing)"`; `None` when complete
    """
    expected = expected_outputs(func)
    if expected is None:
        if is_complete(func, list_head_dir(save_dir, clean_temp=False)):
            return None
        return f"did not write any {figure_func_name(func)}.* file"
    problems: list[str] = []
    for name in expected:
        problem = output_problem(save_dir / name, whole_gzip=False)
        if problem is not None:
            problems.append(f"{name} ({problem})")
            if problem != "missing":
                _remove_broken(save_dir / name)
    return f"did not write {', '.join(problems)}" if problems else None


def pending_funcs(
    figure_funcs: Iterable[Callable],
    save_dir: Path,
    listing: set[str] | frozenset[str],
    force: bool,
    broken: list[str] | None = None,
) -> list[Callable]:
    """the functions still to run in a head folder: all with `force`, else those missing outputs

    An output that is there but not a complete file (see `output_problem`) is missing: it is
    deleted, dropped from `listing` and described in `broken` (when given).
    A function whose outputs are all there but that also has an `error.txt` (a forced rerun failed
    after an earlier success) is done: its stale error file is removed.
    """
    if force:
        return list(figure_funcs)
    pending = []
    for func in figure_funcs:
        if not is_complete(func, listing, save_dir, broken):
            pending.append(func)
        elif (error := error_file_name(figure_func_name(func))) in listing:
            (save_dir / error).unlink(missing_ok=True)
    return pending


def list_head_dir(path: Path | str, clean_temp: bool = True) -> set[str]:
    """list a head folder once, dropping (and by default deleting) leftover temporary files

    # Parameters:
     - `path : Path | str`
       the head folder; a missing folder lists as empty
     - `clean_temp : bool`
       delete the temporary files of processes that are gone (`atomic.is_stale_temp`); those of a
       run writing the same folder now are left alone
       (defaults to `True`)

    # Returns:
     - `set[str]`
       names of the entries, temporary files excluded
    """
    names: set[str] = set()
    try:
        with os.scandir(path) as it:
            for entry in it:
                if is_temp_name(entry.name):
                    if clean_temp:
                        remove_stale_temp(entry.path)
                    continue
                names.add(entry.name)
    except FileNotFoundError:
        pass
    return names


def _error_text(exc: BaseException) -> str:
    """`<func>.error.txt`: one line (as in the summary: whitespace collapsed), then the traceback"""
    from pattern_lens._engine.backends import describe_failure  # imports joblib: only once something failed

    return describe_failure(exc) + "\n\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _record_failure(save_dir: Path, name: str, exc: BaseException) -> None:
    try:
        atomic_write_text(save_dir / error_file_name(name), _error_text(exc))
    except OSError:
        pass  # the failure is still reported in the returned status


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """raise `FigureTimeout` in this thread when the body runs longer than `seconds`

    Uses SIGALRM, so only in a process's main thread on POSIX; elsewhere (threads, Windows) and with
    `None` it does nothing. Code stuck in C without returning to Python is stopped when it returns.
    """
    if seconds is None or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise FigureTimeout(f"took longer than the time limit of {seconds:g} s (--timeout)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_figure_funcs(
    attn_pattern: np.ndarray,
    save_dir: Path,
    figure_funcs: Iterable[Callable],
    listing: set[str],
    force_overwrite: bool = False,
    timeout: float | None = None,
    *,
    pending: Sequence[Callable] | None = None,
) -> dict[str, bool | BaseException]:
    """run figure functions on one head, skipping those whose outputs are all in `listing`

    A function that raises anything (`SystemExit`, `KeyboardInterrupt` included), runs past
    `timeout`, or returns without its outputs complete (`missing_outputs`: a `MissingOutputs`)
    leaves `<name>.error.txt` (message and traceback, written atomically) and the others still run.
    A function that succeeds removes a stale error file of an earlier run. The run's own
    `RunInterrupted` (Ctrl-C, SIGTERM) is not caught.

    # Parameters:
     - `attn_pattern : np.ndarray`
       the head's pattern, `(n_ctx, n_ctx)`
     - `save_dir : Path`
       the head folder, which must exist
     - `figure_funcs : Iterable[Callable]`
       functions `f(attn_pattern, save_dir) -> None`
     - `listing : set[str]`
       the folder's entries (from `list_head_dir`)
     - `force_overwrite : bool`
       run every function even when its outputs exist
       (defaults to `False`)
     - `timeout : float | None`
       seconds each function may take (see `time_limit`)
       (defaults to `None`: no limit)
     - `pending : Sequence[Callable] | None`
       the functions still to run, when the caller already has them from `pending_funcs`
       (defaults to `None`: computed here)

    # Returns:
     - `dict[str, bool | BaseException]`
       function name -> `True` (done or already there) or the exception it ended with
    """
    figure_funcs = list(figure_funcs)
    if pending is None:
        pending = pending_funcs(figure_funcs, Path(save_dir), listing, force_overwrite)
    status: dict[str, bool | BaseException] = {}
    for func in figure_funcs:
        name: str = figure_func_name(func)
        if func not in pending:
            status[name] = True
            continue
        try:
            with time_limit(timeout):
                func(attn_pattern, save_dir)
        except RunInterrupted:
            raise
        except BaseException as e:  # noqa: BLE001 -- SystemExit, KeyboardInterrupt...: this function's failure
            status[name] = e
            _record_failure(save_dir, name, e)
        else:
            # returning is not enough: "done" means its files are there, whole (exit 0 promises it)
            if (missing := missing_outputs(func, Path(save_dir))) is not None:
                status[name] = MissingOutputs(missing)
                _record_failure(save_dir, name, status[name])
                continue
            status[name] = True
            if error_file_name(name) in listing:
                (save_dir / error_file_name(name)).unlink(missing_ok=True)
    return status
