"""the task a worker runs: render some heads of some layers, reading each layer once

A task carries only paths and indices. The worker lists each head folder once, skips heads whose
outputs all exist, and reads a layer from the `.npz` only when one of its heads has work left: a
worker holds one layer at a time, the parent none. When the planner splits layers into batches of
heads (`Task.keep_layer`), the last layer read stays in the worker between tasks, so a worker that
runs several batches of a layer inflates it once (a stored member is memory-mapped: each batch reads
only its heads' pages); otherwise it is dropped at the end of the task. In threads (the threading
backend) the cache is shared and only ever saves a read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pattern_lens._layout import error_file_name, head_dir, layer_key
from pattern_lens._pipeline.npz import ActivationsError, ActivationsFile, nonfinite_heads
from pattern_lens._pipeline.outputs import list_head_dir, pending_funcs, run_figure_funcs
from pattern_lens._pipeline.planner import Item
from pattern_lens._pipeline.summary import TaskResult
from pattern_lens._pipeline.transfer import FigureFuncs
from pattern_lens._system import peak_rss_bytes
from pattern_lens.profile import export_profile

__all__ = ["Task", "run_task", "forget_layers"]

_last_layer: dict[tuple[str, str, int, int, int, int | None], tuple[np.ndarray, dict[int, int]]] = {}
"the last layer this process read, `(run_id, path, layer, mtime_ns, size, n_heads) -> (array, nonfinite_heads)`"


def forget_layers() -> None:
    """drop the layer this process kept (the end of a run that ran tasks in this process)"""
    _last_layer.clear()


def _read_layer_once(acts: ActivationsFile, layer: int, run_id: str) -> tuple[np.ndarray, dict[int, int]]:
    """`acts.read_layer(layer)` and its `nonfinite_heads`, or those this process read last in the
    same run when the file is unchanged"""
    st = acts.path.stat()
    key = (run_id, str(acts.path), layer, st.st_mtime_ns, st.st_size, acts.n_heads)
    found = _last_layer.get(key)
    if found is None:
        _last_layer.clear()  # one layer at a time: drop the old one before reading the new one
        patterns = acts.read_layer(layer)
        found = _last_layer[key] = (patterns, nonfinite_heads(patterns))
    return found


@dataclass(frozen=True)
class Task:
    """what one worker call renders: `items` with `funcs` in `profile`; `estimate` seconds (prior);
    `keep_layer`: more batches of the task's last layer follow (the planner split layers into
    batches of heads): keep it for them, else drop it when the task ends; `run_id`: the run's, so
    that a layer is kept only for the run that read it"""

    funcs: FigureFuncs
    force: bool
    profile: str
    n_heads: int
    items: tuple[Item, ...]
    estimate: float
    keep_layer: bool = False
    run_id: str = ""


def _render_item(
    task: Task,
    prompt_dir: str,
    layer: int,
    heads: tuple[int, ...],
    acts_cache: dict[str, ActivationsFile | ActivationsError],
    res: TaskResult,
) -> None:
    t_read = time.perf_counter()
    res.n_heads += len(heads)
    todo: list[tuple[int, Path, set[str], list[Callable]]] = []
    for h in heads:
        d: Path = head_dir(prompt_dir, layer, h)
        try:
            listing: set[str] = list_head_dir(d)
        except OSError as e:  # e.g. permissions: this head is lost, not the run
            res.add_input_error(f"{d}: cannot list the head folder ({type(e).__name__}: {e})", 1)
            continue
        funcs = pending_funcs(task.funcs, d, listing, task.force)
        if funcs:
            todo.append((h, d, listing, funcs))
        else:
            res.n_skipped += 1
    if not todo:
        res.read_seconds += time.perf_counter() - t_read
        return  # resumed: nothing to do here, and the layer is never read

    # one open archive per prompt and task (items arrive grouped by prompt)
    acts = acts_cache.get(prompt_dir)
    if acts is None:
        for old in acts_cache.values():
            if isinstance(old, ActivationsFile):
                old.close()
        acts_cache.clear()
        try:
            acts = ActivationsFile(Path(prompt_dir) / "activations.npz", n_heads=task.n_heads)
        except ActivationsError as e:
            acts = e
        acts_cache[prompt_dir] = acts
    if isinstance(acts, ActivationsError):
        res.add_input_error(str(acts), len(todo))
        res.read_seconds += time.perf_counter() - t_read
        return
    try:
        patterns, bad = _read_layer_once(acts, layer, task.run_id)
    except (ActivationsError, OSError) as e:
        res.add_input_error(str(e), len(todo))
        return
    finally:
        res.read_seconds += time.perf_counter() - t_read

    for h, d, listing, funcs in todo:
        if h in bad:
            res.add_input_error(
                f"{acts.path}: key {layer_key(layer)!r} head {h} has {bad[h]} non-finite values "
                "(NaN or inf); expected finite attention patterns",
                1,
            )
            continue
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            res.add_input_error(f"{d}: cannot create the head folder ({type(e).__name__}: {e})", 1)
            continue
        t_render = time.perf_counter()
        status = run_figure_funcs(patterns[h], d, funcs, listing, force_overwrite=task.force)
        res.render_seconds += time.perf_counter() - t_render
        res.n_rendered += 1
        for name, st in status.items():
            if st is True:
                res.n_outputs += 1
            else:
                res.add_failure(name, f"{type(st).__name__}: {st}", str(d / error_file_name(name)))


def run_task(task: Task) -> TaskResult:
    """render the heads of one task; runs in a worker (module-level so it pickles by reference)"""
    t0 = time.perf_counter()
    res = TaskResult(task_estimate=task.estimate)
    acts_cache: dict[str, ActivationsFile | ActivationsError] = {}
    # worker processes start with the default export profile: set the run's one for this task
    with export_profile(task.profile):
        try:
            for prompt_dir, layer, heads in task.items:
                _render_item(task, prompt_dir, layer, heads, acts_cache, res)
        finally:
            for acts in acts_cache.values():
                if isinstance(acts, ActivationsFile):
                    acts.close()
            if not task.keep_layer:
                forget_layers()
    res.peak_rss = peak_rss_bytes()
    res.task_seconds = time.perf_counter() - t0
    return res
