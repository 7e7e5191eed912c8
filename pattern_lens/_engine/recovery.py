"""what the parent does with a task that ended badly: split it to find the culprit, report it

`run_all` (backends) runs a task again alone when its worker died, and splits it with `split_task`
into single heads to find the one that kills a worker; a head that kills its worker is split once
more, into one part per figure function and one for its summaries, each run alone on a fresh worker,
so that a crash costs only the function that crashes: the others and the head's preview and
statistics are made, and the files they write are counted (the head itself is counted once, by a
`Settled` part). `task_failed` turns a part that still fails (or a task that raised outside the
figure functions) into a `TaskResult` so the run goes on. On a head the figure functions run in
order, so the culprit is the first one whose outputs are not there.
`split_in_memory_task` and `in_memory_task_failed` do the same for the tasks of `run` (patterns
handed over with the task, `worker.InMemoryTask`), down to one function on one head.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pattern_lens._layout import error_file_name, head_dir
from pattern_lens._output.atomic import atomic_write_text
from pattern_lens._engine.backends import ParallelSession, Settled, describe_failure, run_all
from pattern_lens._input.handover import add_name
from pattern_lens._output.outputs import figure_func_name, list_head_dir, pending_funcs
from pattern_lens._summaries.summary import TaskResult
from pattern_lens._engine.transfer import FigureFuncs
from pattern_lens._engine.worker import InMemoryTask, Task

__all__ = [
    "split_task", "split_head", "task_failed", "split_in_memory_task", "in_memory_task_failed", "split_job", "job_failed",
    "redo_job", "release_handover", "results_of",
]


def split_task(task: Task, failure: BaseException | None = None) -> list[Task | Settled]:
    """one task per head of `task`; a single head whose worker died (`failure`), one part per figure
    function and one for its summaries (`split_head`); `[task]` when it cannot be split further

    Straight to heads, not items first: every part that kills its worker again costs a new worker,
    while a part that does not costs only its own time. The heads run with `force` (`_redo`).
    """
    heads = [(prompt_dir, layer, (h,)) for prompt_dir, layer, hs in task.items for h in hs]
    if len(heads) <= 1:
        return split_head(task) if failure is not None and _worker_died(failure) else [task]
    n = len(heads)
    return [_redo(task, items=(item,), estimate=task.estimate / n) for item in heads]


def _redo(task: Task, **changes) -> Task:
    """a part of a failed task (or a task lost with its pool, `redo_job`), with `force`: the heads
    the failed worker rendered before it died are rendered and counted again, since its result (what
    it wrote) was lost with it; without `force` they would count as skipped while this run wrote
    their files"""
    return dataclasses.replace(task, force=True, **changes)


def split_head(task: Task) -> list[Task | Settled]:
    """the parts of a one-head task whose worker died: each figure function alone, then the summaries
    alone, each redoing its files (`force`: what the dead worker wrote is written again and counted),
    and last the head, counted once as rendered; `[task]` when it is a single part already"""
    funcs = list(task.funcs.funcs)
    if not task.counts_heads or len(funcs) + (task.summaries is not None) <= 1:
        return [task]
    part = functools.partial(dataclasses.replace, task, force=True, counts_heads=False, estimate=task.estimate / (len(funcs) + 1))
    parts: list[Task | Settled] = [part(funcs=FigureFuncs([f]), summaries=None) for f in funcs]
    if task.summaries is not None:
        parts.append(part(funcs=FigureFuncs([])))
    (prompt_dir, _, heads), = task.items
    head = TaskResult(task_estimate=task.estimate, n_heads=len(heads), n_rendered=len(heads), heads_covered={prompt_dir: len(heads)})
    return [*parts, Settled(head)]  # the head last: its prompt's statistics file waits for the rows above


def _worker_died(exc: BaseException) -> bool:
    return type(exc).__name__ in ("TerminatedWorkerError", "BrokenProcessPool")


def _culprits(task: Task, d: Path) -> tuple[list[Callable], list[Callable]]:
    """(functions to blame, functions that never ran) on a head whose worker died"""
    funcs = list(task.funcs.funcs)
    if task.force:
        return funcs, []  # every output may be an old one: cannot tell which function was running
    pending = pending_funcs(funcs, d, list_head_dir(d, clean_temp=False), force=False)
    if not pending:
        return funcs, []
    return pending[:1], pending[1:]


def task_failed(task: Task, exc: BaseException) -> TaskResult:
    """the result of a task that ended with `exc` instead of its own result (one head, by then)

    A dead worker: the task is one head by then (see `split_task`); the failure is the first figure
    function there without its outputs (functions run in order; with `force`, all of them), with
    `<func>.error.txt` written; functions after it did not run and fail with a message saying so. Any
    other exception (`TaskRaised`: raised outside the figure functions, e.g. a `MemoryError` reading a
    layer) is bad input for the task's heads, one message per layer. Either way the message is one line.
    """
    res = TaskResult(task_estimate=task.estimate)
    message: str = describe_failure(exc)
    dead: bool = _worker_died(exc)
    for prompt_dir, layer, heads in task.items:
        res.n_heads += len(heads) if task.counts_heads else 0
        if not dead:
            res.add_input_error(f"{prompt_dir}: layer {layer}: {message}", len(heads))
            continue
        for h in heads:
            d: Path = head_dir(prompt_dir, layer, h)
            try:
                blamed, skipped = _culprits(task, d)
            except Exception:  # noqa: BLE001 -- functions not loadable here, folder unreadable
                blamed, skipped = list(task.funcs.funcs), []
            names = [figure_func_name(f) for f in blamed]
            why = message if len(names) == 1 else f"{message} (running one of {names})"
            for func in blamed:
                _report(res, d, figure_func_name(func), why)
            for func in skipped:
                _report(res, d, figure_func_name(func), f"not run: the worker died in {names[0]} before it on this head")
    return res


def _report(res: TaskResult, d: Path, name: str, message: str) -> None:
    where = d / error_file_name(name)
    if d.is_dir() and not d.is_symlink():
        try:
            atomic_write_text(where, f"{message}\n\nwhile running {name} on {d}\n")
        except OSError:
            pass  # still reported in the summary
    res.add_failure(name, message, str(where))


# ---------------------------------------------------------------------------------------------------
# tasks whose patterns come with them (`run`)


def _own_copy(path: str, part: int | str) -> str:
    """a name of its own for one part (a head, or one function on a head) of a hand-over file: a hard
    link, else a copy"""
    return add_name(path, f"{os.path.splitext(path)[0]}.h{part}.npy", copy=True)


def split_in_memory_task(job: InMemoryTask, failure: BaseException | None = None) -> list[InMemoryTask | Settled]:
    """one in-memory task per head of `job`; a single head whose worker died (`failure`), one part per
    figure function and one for its summaries, as `split_head`; `[job]` when it cannot be split

    A task's hand-over file is deleted when its result is back (`release_handover`), and stays when
    the task failed, so each part gets a file of its own (`_own_copy`), and `job`'s file, which no
    worker will read again, is deleted. A task whose file is gone cannot be split and is reported whole.
    """
    heads = [(item, patterns, h) for item, patterns in zip(job.task.items, job.patterns, strict=True) for h in item[2]]
    if len(heads) > 1:
        splits = [
            (_redo(job.task, items=((prompt_dir, layer, (h,)),), estimate=job.task.estimate / len(heads)), patterns, h)
            for (prompt_dir, layer, _), patterns, h in heads
        ]
    elif failure is not None and _worker_died(failure) and len(pieces := split_head(job.task)) > 1:
        (_, patterns, h), = heads
        splits = [piece if isinstance(piece, Settled) else (piece, patterns, f"{h}f{k}") for k, piece in enumerate(pieces)]
    else:
        return [job]
    parts: list[InMemoryTask | Settled] = []
    try:
        for split in splits:
            if isinstance(split, Settled):
                parts.append(split)
                continue
            task, patterns, name = split
            mine = _own_copy(patterns, name) if isinstance(patterns, str) else patterns
            parts.append(InMemoryTask(task, (mine,)))
    except OSError:  # the file is gone, or no room for the parts' files (the disk, /dev/shm): reported whole
        for part in parts:
            if isinstance(part, InMemoryTask):
                _delete_files(part)
        return [job]
    _delete_files(job)
    return parts


def results_of(
    session: ParallelSession,
    func: Callable,
    jobs: Iterable[Task | InMemoryTask],
    on_error: Callable,
    split: Callable,
) -> Iterator[TaskResult]:
    """`backends.run_all` with this module's recovery, as `render` and `run` use it: a job lost with
    its pool runs again with force (`redo_job`), and each result's hand-over files are deleted as it
    comes back (`release_handover`). Closing this closes the run (joblib stops its workers)."""
    results = run_all(session, func, jobs, on_error=on_error, split=split, rerun=redo_job)
    try:
        for res in results:
            release_handover(res)
            yield res
    finally:
        results.close()


def release_handover(res: TaskResult) -> None:
    """delete the hand-over files a task rendered from, now that its result is back (in the parent)"""
    _unlink_all(res.handed_over)


def _delete_files(job: InMemoryTask) -> None:
    _unlink_all(p for p in job.patterns if isinstance(p, str))


def _unlink_all(paths: Iterable[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):  # gone already (another part, a rerun): nothing left to free
            os.unlink(path)


def in_memory_task_failed(job: InMemoryTask, exc: BaseException) -> TaskResult:
    """`task_failed` for an in-memory task; its hand-over files, which no worker will read, are deleted"""
    _delete_files(job)
    return task_failed(job.task, exc)


# ---------------------------------------------------------------------------------------------------
# both kinds in one run (`render` with split layers read once: `pattern_lens._input.handover`)


def redo_job(job: Task | InMemoryTask) -> Task | InMemoryTask:
    """a job that was in flight when a worker died, to run again with `force` (`_redo`): the heads
    its worker had rendered before the pool was stopped are written again and counted as rendered
    (without it they counted as skipped, although this run wrote them). Its cost: heads of those
    tasks that an earlier run had rendered are rendered again and counted as rendered (at most the
    few tasks in flight, once per worker death)"""
    if isinstance(job, InMemoryTask):
        return dataclasses.replace(job, task=_redo(job.task))
    return _redo(job)


def split_job(job: Task | InMemoryTask, failure: BaseException | None = None) -> list[Task | InMemoryTask | Settled]:
    """`split_task` or `split_in_memory_task` by the job's kind; a batch of a layer `render` read
    for it falls back to its `.npz`, split like any task (its hand-over file is deleted)"""
    if not isinstance(job, InMemoryTask):
        return split_task(job, failure)
    if job.from_npz:
        _delete_files(job)
        return split_task(job.task, failure)
    return split_in_memory_task(job, failure)


def job_failed(job: Task | InMemoryTask, exc: BaseException) -> TaskResult:
    """`task_failed` or `in_memory_task_failed` by the job's kind"""
    return in_memory_task_failed(job, exc) if isinstance(job, InMemoryTask) else task_failed(job, exc)
