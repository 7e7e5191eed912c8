"""what the parent does with a task that ended badly: split it to find the culprit, report it

`run_all` (backends) runs a task again alone when its worker died, and splits it with `split_task`
until the part that kills a worker is one head and one figure function; `task_failed` turns that part
(or a task that raised outside the figure functions) into a `TaskResult` so the run goes on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pattern_lens._layout import error_file_name, head_dir
from pattern_lens._pipeline.atomic import atomic_write_text
from pattern_lens._pipeline.backends import describe_failure
from pattern_lens._pipeline.summary import TaskResult
from pattern_lens._pipeline.transfer import FigureFuncs
from pattern_lens._pipeline.worker import Task

__all__ = ["split_task", "task_failed"]


def split_task(task: Task) -> list[Task]:
    """smaller tasks covering `task`: its items, else its heads, else its figure functions; `[task]` when atomic"""
    if len(task.items) > 1:
        n = len(task.items)
        return [dataclasses.replace(task, items=(item,), estimate=task.estimate / n) for item in task.items]
    (prompt_dir, layer, heads), = task.items
    if len(heads) > 1:
        n = len(heads)
        return [dataclasses.replace(task, items=((prompt_dir, layer, (h,)),), estimate=task.estimate / n) for h in heads]
    funcs = task.funcs.funcs
    if len(funcs) > 1:
        n = len(funcs)
        return [dataclasses.replace(task, funcs=FigureFuncs([f]), estimate=task.estimate / n) for f in funcs]
    return [task]


def _worker_died(exc: BaseException) -> bool:
    return type(exc).__name__ in ("TerminatedWorkerError", "BrokenProcessPool")


def task_failed(task: Task, exc: BaseException) -> TaskResult:
    """the result of a task that ended with `exc` instead of its own result

    A dead worker counts as a failure of each figure function on each head of the task (by then the
    task is one head and one function: see `split_task`), with `<func>.error.txt` written when the
    head folder exists; any other exception (raised outside the figure functions, e.g. a
    `MemoryError` reading a layer) is bad input for the task's heads. Either way the message is one line.
    """
    res = TaskResult(task_estimate=task.estimate)
    message: str = describe_failure(exc)
    dead: bool = _worker_died(exc)
    try:
        names = task.funcs.names
    except Exception:  # noqa: BLE001 -- the functions themselves could not be loaded here
        names = ["<figure functions>"]
    for prompt_dir, layer, heads in task.items:
        res.n_heads += len(heads)
        if not dead:
            res.add_input_error(f"{prompt_dir}: layer {layer} heads {list(heads)}: {message}", len(heads))
            continue
        for h in heads:
            d: Path = head_dir(prompt_dir, layer, h)
            for name in names:
                where = d / error_file_name(name)
                if d.is_dir() and not d.is_symlink():
                    try:
                        atomic_write_text(where, f"{message}\n\nwhile running {name} on {d}\n")
                    except OSError:
                        pass  # still reported in the summary
                res.add_failure(name, message, str(where))
    return res
