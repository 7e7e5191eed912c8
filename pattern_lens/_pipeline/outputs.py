"""what a figure function writes into a head folder, and running the functions on one head

A head folder is `<prompt_dir>/L<L>/H<H>/`. A figure function `f` with `f.figure_save_fmt` writes
`<figure>.<fmt>` for each of its figure names (`pattern_lens._layout.figure_names`: `<f.__name__>`, or
`<f.__name__>.<name>` for each figure of a multi-figure one); a failure writes `<f.__name__>.error.txt`.

Resuming needs to know which outputs exist: the folder is listed once (one `os.scandir`) and every
function is checked against that listing, where the reference globs the disk once per function.
The listing also removes temporary files left by a killed run (`.<name>.XXXX.tmp`, see
`pattern_lens._pipeline.atomic`), so a rerun leaves no debris behind.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from pattern_lens._layout import error_file_name, figure_file_name, figure_names, is_temp_name
from pattern_lens._pipeline.atomic import atomic_write_text

__all__ = [
    "pending_funcs",
    "figure_func_name",
    "expected_outputs",
    "is_complete",
    "list_head_dir",
    "run_figure_funcs",
]

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


def is_complete(func: Callable, listing: set[str] | frozenset[str]) -> bool:
    """whether every output of `func` is in a head folder's `listing` (from `list_head_dir`)"""
    expected: tuple[str, ...] | None = expected_outputs(func)
    if expected is not None:
        return all(name in listing for name in expected)
    prefix: str = figure_func_name(func) + "."
    error_name: str = error_file_name(figure_func_name(func))
    return any(n.startswith(prefix) and n != error_name for n in listing)


def pending_funcs(
    figure_funcs: Iterable[Callable], save_dir: Path, listing: set[str] | frozenset[str], force: bool
) -> list[Callable]:
    """the functions still to run in a head folder: all with `force`, else those missing outputs

    A function whose outputs are all there but that also has an `error.txt` (a forced rerun failed
    after an earlier success) is done: its stale error file is removed.
    """
    if force:
        return list(figure_funcs)
    pending = []
    for func in figure_funcs:
        if not is_complete(func, listing):
            pending.append(func)
        elif (error := error_file_name(figure_func_name(func))) in listing:
            (save_dir / error).unlink(missing_ok=True)
    return pending


def list_head_dir(path: Path | str) -> set[str]:
    """list a head folder once, deleting the temporary files a killed run left behind

    Two runs writing the same folder at the same time are not supported: one could delete the
    other's temporary file in flight.

    # Parameters:
     - `path : Path | str`
       the head folder; a missing folder lists as empty

    # Returns:
     - `set[str]`
       names of the entries, temporary files excluded
    """
    names: set[str] = set()
    try:
        with os.scandir(path) as it:
            for entry in it:
                if is_temp_name(entry.name):
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        pass
                    continue
                names.add(entry.name)
    except FileNotFoundError:
        pass
    return names


def _error_text(exc: BaseException) -> str:
    return (
        f"{type(exc).__name__}: {exc}\n\n"
        + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    )


def run_figure_funcs(
    attn_pattern: np.ndarray,
    save_dir: Path,
    figure_funcs: Iterable[Callable],
    listing: set[str],
    force_overwrite: bool = False,
    *,
    pending: Sequence[Callable] | None = None,
) -> dict[str, bool | Exception]:
    """run figure functions on one head, skipping those whose outputs are all in `listing`

    A function that raises leaves `<name>.error.txt` (message and traceback, written atomically)
    and the others still run. A function that succeeds removes a stale error file of an earlier run.

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
     - `pending : Sequence[Callable] | None`
       the functions still to run, when the caller already has them from `pending_funcs`
       (defaults to `None`: computed here)

    # Returns:
     - `dict[str, bool | Exception]`
       function name -> `True` (done or already there) or the exception it raised
    """
    figure_funcs = list(figure_funcs)
    if pending is None:
        pending = pending_funcs(figure_funcs, Path(save_dir), listing, force_overwrite)
    status: dict[str, bool | Exception] = {}
    for func in figure_funcs:
        name: str = figure_func_name(func)
        if func not in pending:
            status[name] = True
            continue
        try:
            func(attn_pattern, save_dir)
        except Exception as e:  # noqa: BLE001 -- one bad function must not stop the others
            status[name] = e
            try:
                atomic_write_text(save_dir / error_file_name(name), _error_text(e))
            except OSError:
                pass  # the failure is still reported in the returned status
        else:
            status[name] = True
            if error_file_name(name) in listing:
                (save_dir / error_file_name(name)).unlink(missing_ok=True)
    return status
