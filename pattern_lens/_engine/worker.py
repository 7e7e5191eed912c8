"""the task a worker runs: render some heads of some layers, reading each layer once

A task carries only paths and indices. The worker lists each head folder once, skips heads whose
outputs all exist, and reads a layer from the `.npz` only when one of its heads has work left: a
worker holds one layer at a time and drops it when the task ends. (Keeping it for the worker's next
task was measured and dropped: loky restarts a worker whose memory stays 300 MB above its size after
its first task, so a kept 512 MiB layer cost a worker restart. The planner instead gives each worker
at most one batch of a split layer.) A stored member is memory-mapped: a batch of heads reads only
its heads' pages (and the CRC check reads the rest once).

An `InMemoryTask` brings its layer with it, as an array or a hand-over file in RAM
(`pattern_lens._input.handover`): the layers `run` computes, and those `render` splits into three
or more batches and reads once, in the parent, for all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pattern_lens._layout import ACTIVATIONS_FILE, error_file_name, figure_names, head_dir, layer_key
from pattern_lens._input.inputs import leaves_root
from pattern_lens._summaries import summaries
from pattern_lens._engine.backends import describe_failure
from pattern_lens._input.npz import ActivationsError, ActivationsFile, nonfinite_heads
from pattern_lens._output.outputs import figure_func_name, list_head_dir, pending_funcs, run_figure_funcs
from pattern_lens._engine.planner import Item
from pattern_lens._summaries.stats import HeadSummary
from pattern_lens._summaries.summary import TaskResult
from pattern_lens._engine.transfer import FigureFuncs
from pattern_lens._system import peak_rss_bytes
from pattern_lens.profile import export_profile

__all__ = ["Task", "run_task", "InMemoryTask", "run_in_memory_task", "run_job"]


@dataclass(frozen=True)
class Task:
    """what one worker call renders: `items` with `funcs` in `profile`; `estimate` seconds (prior)"""

    funcs: FigureFuncs
    force: bool
    profile: str
    n_heads: int
    items: tuple[Item, ...]
    estimate: float
    timeout: float | None = None
    "seconds one figure function may take on one head (`None`: no limit)"
    root: str | None = None
    "the save path, resolved: head folders that lead outside it (symlinks) are refused"
    summaries: summaries.SummarySpec | None = None
    "statistics and previews to compute for every head rendered (`None`: none)"
    counts_heads: bool = True
    """`False` for a part of a head that the recovery runs again after its worker died: it counts its
    files, failures and summaries, and the recovery counts the head once (`recovery.split_task`)"""


class _InMemoryLayer:
    """stands in for an `ActivationsFile` when a layer's patterns come with the task: an array, or
    the path of a hand-over `.npy`, memory-mapped only when a head needs it (`where`: what messages
    name)"""

    def __init__(self, where: str, patterns: np.ndarray | str) -> None:
        self.path: str = where
        self._patterns = patterns

    def read_layer(self, layer: int) -> np.ndarray:
        if isinstance(self._patterns, str):
            self._patterns = np.asarray(np.load(self._patterns, mmap_mode="r"))
        return self._patterns


def _render_item(
    task: Task,
    prompt_dir: str,
    layer: int,
    heads: tuple[int, ...],
    acts_cache: dict[str, ActivationsFile | ActivationsError],
    res: TaskResult,
    in_memory: _InMemoryLayer | None = None,
) -> None:
    t_read = time.perf_counter()
    if task.counts_heads:
        res.n_heads += len(heads)
        res.heads_covered[prompt_dir] = res.heads_covered.get(prompt_dir, 0) + len(heads)
    todo: list[tuple[int, Path, set[str], list[Callable], bool]] = []
    for h in heads:
        d: Path = head_dir(prompt_dir, layer, h)
        if (outside := leaves_root(d, task.root)) is not None:
            res.add_input_error(outside, 1)
            continue
        try:
            listing: set[str] = list_head_dir(d)
        except OSError as e:  # e.g. permissions: this head is lost, not the run
            res.add_input_error(f"{d}: cannot list the head folder ({type(e).__name__}: {e})", 1)
            continue
        funcs = pending_funcs(task.funcs, d, listing, task.force, broken=res.repaired)
        summarise = summaries.summary_needed(task.summaries, res, prompt_dir, layer, h, d, listing, task.force)
        if funcs or summarise:
            todo.append((h, d, listing, funcs, summarise))
        elif task.counts_heads:
            res.n_skipped += 1
    if not todo:
        res.read_seconds += time.perf_counter() - t_read
        return  # resumed: nothing to do here, and the layer is never read

    # one open archive per prompt and task (items arrive grouped by prompt)
    acts = acts_cache.get(prompt_dir) if in_memory is None else in_memory
    if acts is None:
        for old in acts_cache.values():
            if isinstance(old, ActivationsFile):
                old.close()
        acts_cache.clear()
        try:
            acts = ActivationsFile(Path(prompt_dir) / ACTIVATIONS_FILE, n_heads=task.n_heads)
        except ActivationsError as e:
            acts = e
        acts_cache[prompt_dir] = acts
    if isinstance(acts, ActivationsError):
        res.add_input_error(str(acts), len(todo))
        res.read_seconds += time.perf_counter() - t_read
        return
    try:
        patterns = acts.read_layer(layer)
    except ActivationsError as e:
        res.add_input_error(str(e), len(todo))
        return
    finally:
        res.read_seconds += time.perf_counter() - t_read

    layer_dir = head_dir(prompt_dir, layer, 0).parent
    try:
        layer_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only output folder: one line for the layer, not one per head
        res.add_input_error(
            f"{layer_dir}: cannot create the layer folder ({type(e).__name__}: {e.strerror or e}); "
            f"its {len(todo)} heads are not rendered",
            len(todo),
        )
        return
    for h, d, listing, funcs, summarise in todo:
        t_render = time.perf_counter()
        # the summaries' pass first where the figures leave the pattern as it is: it finds the min
        # and max that `raw` normalises with (`summaries.first_pass`), and that tell that every value
        # is finite; else after the figures
        with summaries.first_pass(task.summaries if summarise else None, patterns[h], funcs) as early:
            n_bad = _nonfinite_values(patterns[h], early)
            if n_bad:
                res.add_input_error(
                    f"{acts.path}: key {layer_key(layer)!r} head {h} has {n_bad} non-finite values "
                    "(NaN or inf); expected finite attention patterns",
                    1,
                )
                continue
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                res.add_input_error(f"{d}: cannot create the head folder ({type(e).__name__}: {e})", 1)
                continue
            status = run_figure_funcs(patterns[h], d, funcs, listing, force_overwrite=task.force, timeout=task.timeout, pending=funcs)
        if summarise:
            summaries.add_head(task.summaries, res, prompt_dir, layer, h, d, patterns[h], early)
        res.render_seconds += time.perf_counter() - t_render
        res.n_rendered += task.counts_heads
        for func in funcs:
            name = figure_func_name(func)
            st = status[name]
            if st is True:
                res.n_outputs += len(figure_names(func))  # files: a multi-figure function writes several
            else:
                res.add_failure(name, describe_failure(st), str(d / error_file_name(name)))


def _nonfinite_values(pattern: np.ndarray, early: HeadSummary | Exception | None) -> int:
    """how many NaN or infinite values one head holds (0: every value finite)

    Without a pass of its own where the summaries' pass came first (`early`): its minimum and maximum
    are the pattern's (numpy's `min()` and `max()`, which a NaN makes NaN and an inf infinite), so
    both finite means every value is. Otherwise (no summary, or one that failed) one numpy pass.
    """
    if isinstance(early, HeadSummary) and np.isfinite(early.minimum) and np.isfinite(early.maximum):
        return 0
    return nonfinite_heads(pattern[None]).get(0, 0)


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
    res.peak_rss = peak_rss_bytes()
    res.task_seconds = time.perf_counter() - t0
    return res


@dataclass(frozen=True)
class InMemoryTask:
    """a task whose patterns come with it: `patterns[i]` is `task.items[i]`'s layer, `(n_heads, n, n)`

    Each is an array (workers in this process, or a cluster that ships it), or the path of a `.npy`
    file that the worker process memory-maps and the run deletes when the result is back
    (`recovery.release_handover`): streaming from a model
    hands layers over this way, without an `.npz`. (Arrays given to joblib's loky backend would be
    memory-mapped too, but joblib keeps those files until the whole run ends.)
    """

    task: Task
    patterns: tuple[np.ndarray | str, ...]
    from_npz: bool = False
    "the task's `.npz` holds the same layers (`render` read them once for several batches): a task that fails can fall back to it"


def run_in_memory_task(job: InMemoryTask) -> TaskResult:
    """render the heads of one in-memory task; runs in a worker (module-level so it pickles by reference)"""
    t0 = time.perf_counter()
    task = job.task
    res = TaskResult(task_estimate=task.estimate)
    with export_profile(task.profile):
        for (prompt_dir, layer, heads), patterns in zip(task.items, job.patterns, strict=True):
            # a batch of a layer `render` read for it names the .npz its patterns came from
            where = str(Path(prompt_dir) / ACTIVATIONS_FILE) if job.from_npz else f"{prompt_dir} (patterns in memory)"
            layer_source = _InMemoryLayer(where, patterns)
            _render_item(task, prompt_dir, layer, heads, {}, res, layer_source)
            del layer_source  # its mapping, before the file goes
            if isinstance(patterns, str):
                # rendered: the parent deletes it when this result is back, not this worker: a result
                # lost with a pool that died (another worker's crash) leaves the file for the task's
                # rerun. After a failure it stays too, for the parent's recovery to split or delete
                res.handed_over.append(patterns)
    res.peak_rss = peak_rss_bytes()
    res.task_seconds = time.perf_counter() - t0
    return res


def run_job(job: Task | InMemoryTask) -> TaskResult:
    """`run_task` or `run_in_memory_task`, by the job's kind: `render` hands out both when it reads
    split layers once for all their batches (`pattern_lens._input.handover`)"""
    return run_in_memory_task(job) if isinstance(job, InMemoryTask) else run_task(job)
