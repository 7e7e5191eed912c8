"""figure functions that misbehave on chosen heads, for tests/test_faults.py (imported by worker processes
with `--import fault_funcs`, `tests/` on PYTHONPATH)

`misbehave` renders a PNG except on the heads of the prompt whose hash is in `$FAULT_HASH`, where it
ends the way `$FAULTS` (JSON, head -> fault name) says; `$FAULT_SKIP` is a comma list of fault names
to leave out (those that kill the process they run in, with one job).
"""

import ctypes
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from pattern_lens.attn_figure_funcs import register_attn_figure_func
from pattern_lens.figure_util import save_matrix_wrapper

def _faults() -> dict[str, str]:
    """head (relative to the prompt folder, e.g. `L0/H1`) -> how `misbehave` ends there, from `$FAULTS` (JSON)"""
    return json.loads(os.environ.get("FAULTS", "{}"))


def _fault_for(save_dir: Path) -> str | None:
    save_dir = Path(save_dir)
    if save_dir.parent.parent.name != os.environ.get("FAULT_HASH"):
        return None
    fault = _faults().get(f"{save_dir.parent.name}/{save_dir.name}")
    return None if fault in os.environ.get("FAULT_SKIP", "").split(",") else fault


def _end(fault: str) -> None:
    if fault == "exit0":
        sys.exit(0)
    if fault == "exit3":
        sys.exit(3)
    if fault == "keyboard_interrupt":
        raise KeyboardInterrupt
    if fault == "memory_error":
        raise MemoryError("simulated: cannot allocate")
    if fault == "hang":
        while True:
            time.sleep(0.05)
    if fault == "os_exit":
        os._exit(0)
    if fault == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV


def _png_writer():
    @save_matrix_wrapper(fmt="png")
    def misbehave(attn):  # the name of the file it writes: misbehave.png
        return np.asarray(attn)

    return misbehave


_write_png = _png_writer()


@register_attn_figure_func
def misbehave(attn, save_dir):
    """a viridis PNG of the pattern, except on the heads of `$FAULTS`"""
    fault = _fault_for(save_dir)
    if fault is not None:
        _end(fault)
    _write_png(attn, save_dir)


misbehave.figure_save_fmt = "png"


@register_attn_figure_func
def slow(attn, save_dir):
    """a viridis PNG of the pattern after 0.1 s: a run long enough to interrupt"""
    time.sleep(0.1)
    _write_slow_png(attn, save_dir)


def _slow_png_writer():
    @save_matrix_wrapper(fmt="png")
    def slow(attn):
        return np.asarray(attn)

    return slow


_write_slow_png = _slow_png_writer()
slow.figure_save_fmt = "png"


def _steady_png_writer():
    @save_matrix_wrapper(fmt="png")
    def steady(attn):
        return np.asarray(attn)

    return steady


_write_steady_png = _steady_png_writer()


@register_attn_figure_func
def steady(attn, save_dir):
    """a viridis PNG of the pattern, always: a function that runs after one that crashes"""
    _write_steady_png(attn, save_dir)


steady.figure_save_fmt = "png"
