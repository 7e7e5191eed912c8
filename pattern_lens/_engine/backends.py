"""joblib does the fan-out: resolving the parallel settings of a run and streaming task results

`n_jobs` and `backend` are parameters, and when not given the ambient `joblib.parallel_config`
decides; when that names no backend either, the run's workers are warm processes
(`pattern_lens._engine.warm`, joblib backend `"warm"`) on all the cores this process may use.
`backend="dask"` with a scheduler address runs the same tasks on a dask.distributed cluster. More
workers than usable cores (affinity, cgroup quota) are never started on this machine: the number
is capped, with one line on stderr saying so.

Faults: every way a task can end becomes a result. A task that raises (any `BaseException`:
`SystemExit`, `MemoryError`, ...) is split (`split`) and its parts run alone, down to the parts that
cannot be split, which `on_error` reports. A worker that dies (segfault, `os._exit`, the OOM killer)
breaks the pool: the tasks that were in flight run again one at a time on fresh workers, and one that
kills its worker again is split the same way; the run goes on. Worker processes
started here die with the run: each watches its parent and exits within `WATCHDOG_PERIOD` seconds of
the parent's death (even a SIGKILL), and ignores SIGINT (Ctrl-C is the parent's to handle), from
the moment it is started: loky starts it with SIGINT blocked (`_spawn_with_sigint_blocked`), and
its initializer ignores SIGINT before unblocking it, so a Ctrl-C during its start-up (imports)
never prints a traceback. Nothing is memory-mapped (tasks carry paths), so no
`joblib_memmapping_folder_*` is ever created.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import itertools
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import joblib
from joblib._parallel_backends import LokyBackend
from joblib.parallel import get_active_backend

from pattern_lens._errors import FigureFuncTransferError, PatternLensError, RunInterrupted
from pattern_lens._system import available_cpus, reuse_large_buffers

__all__ = ["ParallelSession", "parallel_session", "parallel_kwargs", "run_all", "describe_failure", "TaskRaised", "Settled", "WATCHDOG_PERIOD"]

WATCHDOG_PERIOD: float = 0.1
"seconds between a worker's checks that the process that started it is still alive"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ParallelSession:
    """the resolved parallel settings of a run

    # Fields:
     - `n_jobs : int` what is passed to `joblib.Parallel`
     - `n_workers : int` workers that will actually run tasks (`joblib.effective_n_jobs`)
     - `backend_name : str` e.g. `"loky"`, `"threading"`, `"dask"`
     - `in_process : bool` tasks run in this process (threads or sequential): nothing is pickled
     - `supports_generator : bool` the backend can hand back results as they complete
    """

    n_jobs: int
    n_workers: int
    backend_name: str
    in_process: bool
    supports_generator: bool

    @property
    def sequential(self) -> bool:
        """one worker in this process: tasks run here, one after the other, without joblib"""
        return self.in_process and self.n_workers == 1

    @property
    def local_processes(self) -> bool:
        """tasks run in worker processes of this machine (not threads, not a dask cluster): they can
        share files in this machine's RAM, and starting them costs ~20 ms each (warm) to ~1 s (loky)"""
        return not self.in_process and self.backend_name != "dask"

    def as_sequential(self) -> "ParallelSession":
        """the same run on one worker in this process (a run too small to pay for starting workers)"""
        return ParallelSession(self.n_jobs, 1, "sequential", True, self.supports_generator)

    def with_workers(self, n_workers: int) -> "ParallelSession":
        """the same backend with `n_workers` (fewer) workers; one worker: `as_sequential`"""
        if n_workers <= 1:
            return self.as_sequential()
        return ParallelSession(n_workers, n_workers, self.backend_name, self.in_process, self.supports_generator)


_BACKEND_NAMES: dict[str, str] = {
    "SequentialBackend": "sequential",
    "ThreadingBackend": "threading",
    "LokyBackend": "loky",
    "MultiprocessingBackend": "multiprocessing",
    "DaskDistributedBackend": "dask",
    "WarmBackend": "warm",
}

WARM_BACKEND: str = "warm"
"""the joblib name of the warm backend (`pattern_lens._engine.warm`, registered by the modules that
run a render: `run`, `stream`): the default when nothing names a backend"""


def _backend_named_by_caller() -> bool:
    """whether an ambient `joblib.parallel_config` / `parallel_backend` names a backend (then it decides)"""
    try:
        from joblib.parallel import _backend, _get_config_param, default_parallel_config

        config = getattr(_backend, "config", default_parallel_config)
        return _get_config_param(default_parallel_config["backend"], config, "backend") is not None
    except (ImportError, AttributeError, KeyError, TypeError):  # another joblib: leave it to joblib
        return True


@contextlib.contextmanager
def _dask_client(scheduler: str | None) -> Iterator[None]:
    try:
        import distributed
    except ImportError as e:
        raise PatternLensError(
            "backend 'dask' needs dask.distributed: pip install 'pattern_lens[dask]'"
        ) from e
    if scheduler is None:
        try:
            distributed.get_client()
        except ValueError:
            raise PatternLensError(
                "backend 'dask' needs a scheduler address (--scheduler tcp://HOST:8786, as printed by "
                "`dask scheduler`) or a distributed.Client already created in this process"
            ) from None
        yield
        return
    try:
        client = distributed.Client(scheduler, timeout="30s", set_as_default=True)
    except (OSError, TimeoutError) as e:
        raise PatternLensError(f"cannot connect to the dask scheduler at {scheduler!r}: {e}") from e
    try:
        yield
    finally:
        client.close()


@contextlib.contextmanager
def parallel_session(
    n_jobs: int | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
    profiles: tuple[str, ...] = ("exact", "fast"),
    announce: bool = True,
) -> Iterator[ParallelSession]:
    """enter the joblib configuration a run uses and say what it resolved to

    # Parameters:
     - `n_jobs : int | None`
       workers; `-1` all cores; `None`: the ambient `joblib.parallel_config`'s `n_jobs`, else `-1`
       (defaults to `None`)
     - `backend : str | None`
       a joblib backend name (`"loky"`, `"threading"`, `"multiprocessing"`, `"dask"`, or any
       registered one); `None`: the ambient `joblib.parallel_config`'s, else loky
       (defaults to `None`)
     - `scheduler : str | None`
       dask scheduler address, only with `backend="dask"`; a `distributed.Client` is opened for the
       run and closed after it
       (defaults to `None`)
     - `profiles : tuple[str, ...]` export profiles whose kernels warm workers get loaded
       (defaults to `("exact", "fast")`)
     - `announce : bool` print the line saying that `n_jobs` was capped to the usable cores
       (defaults to `True`)

    # Yields:
     - `ParallelSession`; a warm backend's pool is shut down when the session ends
    """
    if scheduler is not None and backend != "dask":
        raise PatternLensError(f"a scheduler address ({scheduler!r}) needs backend 'dask', not {backend!r}")
    with contextlib.ExitStack() as stack:
        if backend == "dask":
            stack.enter_context(_dask_client(scheduler))
        from joblib.parallel import BACKENDS

        if backend is None and not _backend_named_by_caller() and WARM_BACKEND in BACKENDS:
            backend = WARM_BACKEND  # the default: workers that start warm
        if backend is not None:
            params = {"profiles": profiles} if backend == WARM_BACKEND else {}
            try:
                stack.enter_context(joblib.parallel_config(backend=backend, **params))
            except ValueError as e:
                raise PatternLensError(f"unknown joblib backend {backend!r}: {e}") from e
        backend_obj, config_n_jobs = get_active_backend()
        if callable(end := getattr(backend_obj, "end_session", None)):
            stack.callback(end)  # a warm backend's pool ends with the run
        if n_jobs is None:
            n_jobs = config_n_jobs if config_n_jobs is not None else -1
        n_jobs = int(n_jobs)
        if n_jobs == 0:
            raise PatternLensError("n_jobs must be a positive number of workers or negative (-1: all cores), not 0")
        name: str = _BACKEND_NAMES.get(type(backend_obj).__name__, type(backend_obj).__name__)
        is_dask: bool = name == "dask"
        cores = available_cpus()
        if not is_dask and n_jobs > cores:
            if announce:
                print(f"{n_jobs} workers asked for, {cores} cores usable by this process (affinity, CPU quota): "
                      f"using {cores}", file=sys.stderr, flush=True)
            n_jobs = cores
        n_workers: int = max(1, int(joblib.effective_n_jobs(n_jobs)))
        in_process: bool = bool(getattr(backend_obj, "uses_threads", False)) or (n_workers == 1 and not is_dask)
        if n_workers == 1 and not is_dask:
            name = "sequential"
        if isinstance(backend_obj, LokyBackend):
            _spawn_with_sigint_blocked()
        if type(backend_obj) is LokyBackend and "initializer" not in backend_obj.backend_kwargs:
            # the same loky settings, plus workers that die with this process (see `_worker_start`)
            stack.enter_context(joblib.parallel_config(backend=LokyBackend(
                nesting_level=backend_obj.nesting_level,
                inner_max_num_threads=backend_obj.inner_max_num_threads,
                **backend_obj.backend_kwargs,
                initializer=_worker_start,
                initargs=(os.getpid(),),
            )))
        yield ParallelSession(
            n_jobs=n_jobs,
            n_workers=n_workers,
            backend_name=name,
            in_process=in_process,
            supports_generator=bool(getattr(backend_obj, "supports_return_generator", False)),
        )


def parallel_kwargs() -> dict:
    """the `joblib.Parallel` options of every pool of a run (a prestarted pool must use the same, or
    joblib would start another one)"""
    # nothing is memory-mapped (tasks carry paths): with max_nbytes=None and a temp_folder outside
    # /dev/shm joblib never creates its joblib_memmapping_folder_* (which a killed run would leave)
    return dict(batch_size=1, max_nbytes=None, temp_folder=tempfile.gettempdir())


# ---------------------------------------------------------------------------------------------------
# workers die with their parent

_watchdog_started: bool = False


def _spawn_with_sigint_blocked() -> None:
    """make loky start its worker processes with SIGINT blocked (once per process)

    A new process inherits the signal mask of the thread that starts it, through `exec`, and a
    Python started with SIGINT blocked keeps it blocked: a Ctrl-C sent to the process group while a
    worker imports (about a second) stays pending instead of raising `KeyboardInterrupt` there with
    a traceback; `_worker_start` then ignores it (which discards the pending one) and unblocks it.
    Only the spawning thread's mask changes, only for the fork: the run's own Ctrl-C handling is not
    touched. loky spawns from the thread that submits and from its manager thread, hence the wrap of
    its `fork_exec` rather than of a call here.
    """
    if not hasattr(signal, "pthread_sigmask"):
        return  # Windows: no signal masks (and no process groups to send Ctrl-C to the workers)
    try:
        from joblib.externals.loky.backend import fork_exec as module
    except ImportError:  # another loky layout: workers just start as loky starts them
        return
    original = module.fork_exec
    if getattr(original, "_pattern_lens_blocks_sigint", False):
        return

    @functools.wraps(original)
    def fork_exec(*args, **kwargs):
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return original(*args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    fork_exec._pattern_lens_blocks_sigint = True  # type: ignore[attr-defined]
    module.fork_exec = fork_exec


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(WATCHDOG_PERIOD)
        if os.getppid() != parent_pid:  # re-parented: the run is gone, stop writing now
            os._exit(1)


def _worker_start(parent_pid: int, started_by_run: bool = True) -> None:
    """in a worker process started by the run's process `parent_pid`: die with it, leave Ctrl-C to it

    loky's worker initializer (`started_by_run=True`): the worker is the run's child, so a parent
    that is already gone (killed while this worker was starting) ends it at once. Before each task
    (`started_by_run=False`, other process backends): does nothing in the run's own process or in a
    process the run did not start (a dask worker).
    """
    global _watchdog_started
    if _watchdog_started or os.getpid() == parent_pid:
        return
    if os.getppid() != parent_pid:
        if started_by_run:
            os._exit(1)  # orphaned before the first task: nobody will read what this worker does
        return
    _watchdog_started = True
    reuse_large_buffers()  # each layer inflated into the last one's pages
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run and its workers
        if hasattr(signal, "pthread_sigmask"):  # started blocked (`_spawn_with_sigint_blocked`): ignored now
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="pattern_lens-watchdog", daemon=True).start()


# ---------------------------------------------------------------------------------------------------
# every way a task can end becomes a result

_EXIT_CODES: re.Pattern = re.compile(r"exit codes of the workers are \{([^}]*)\}")


def describe_failure(exc: BaseException) -> str:
    """one line for an exception a task ended with, in the worker or in the pool

    a dead worker reads `worker process died (SIGSEGV(-11)): ...` rather than joblib's paragraph
    """
    if isinstance(exc, TaskRaised):
        return str(exc)  # described in the worker already
    if type(exc).__name__ in ("TerminatedWorkerError", "BrokenProcessPool"):
        m = _EXIT_CODES.search(str(exc))
        codes = f" ({m.group(1)})" if m else ""
        return f"worker process died{codes}: a crash, os._exit or the memory limit"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _must_propagate(exc: BaseException) -> bool:
    # the user stopping the run, or a function that cannot reach the workers at all (says what to do)
    return isinstance(exc, (RunInterrupted, FigureFuncTransferError))


@dataclass(frozen=True)
class Settled:
    """a part `split` returns whose result is known without running it (e.g. counting a head once)"""

    result: object


class TaskRaised(Exception):
    """a task ended with an exception in its worker: `str()` is that exception's one-line description"""


class _Raised:
    """what a guarded task returns instead of its result when it raised (picklable: only a string)"""

    def __init__(self, description: str) -> None:
        self.description = description


class _Guarded:
    """`func(task)`, or a `_Raised` when it ends with any exception; picklable for workers"""

    def __init__(self, func: Callable, on_error: Callable | None, parent_pid: int) -> None:
        self.func = func
        self.on_error = on_error
        self.parent_pid = parent_pid

    def __call__(self, index: int, task):
        _worker_start(self.parent_pid, started_by_run=False)
        if os.getpid() != self.parent_pid and faulthandler.is_enabled():
            # a crash is reported by the parent in one line naming the head and function; the
            # faulthandler loky enables (after the initializer) would add a page of traceback per crash
            faulthandler.disable()
        if self.on_error is None:
            return index, self.func(task)
        try:
            return index, self.func(task)
        except BaseException as e:  # noqa: BLE001 -- SystemExit, MemoryError...: this task's failure
            if _must_propagate(e):
                raise
            return index, _Raised(describe_failure(e))


def run_all(
    session: ParallelSession,
    func: Callable[[T], R],
    tasks: Iterable[T],
    *,
    on_error: Callable[[T, BaseException], R] | None = None,
    split: Callable[[T], list[T]] | None = None,
    rerun: Callable[[T], T] | None = None,
) -> Iterator[R]:
    """`func(task)` for every task on the session's workers, yielding results as they complete

    `tasks` is consumed lazily (joblib pulls a few ahead of the workers), so a planner can size later
    tasks from earlier results. With one worker the tasks run here, without a joblib round trip.

    A task that raises (anything but `RunInterrupted` / `FigureFuncTransferError`) is split and its
    parts run alone, down to parts that cannot be split, which `on_error` reports: the failure costs
    only the part that fails. A worker that dies takes the tasks in flight with it: each runs again
    alone, and one that fails again is split the same way.

    # Parameters:
     - `session : ParallelSession`
     - `func : Callable[[T], R]` runs one task (module-level, so that it pickles by reference)
     - `tasks : Iterable[T]`
     - `on_error : Callable[[T, BaseException], R] | None`
       the result of a task that cannot be split and raised (`TaskRaised`) or killed its worker
       (joblib's `TerminatedWorkerError`); `None`: exceptions propagate (defaults to `None`)
     - `split : Callable[[T, BaseException], list[T | Settled]] | None`
       smaller tasks covering a task that failed with the given exception (a part may be a
       `Settled` result instead); `None` or a one-element list: the task cannot be split
       (defaults to `None`)
     - `rerun : Callable[[T], T] | None`
       a task that was in flight when a worker died, as it runs again (what the lost workers wrote
       before they were stopped is this run's work: it is done and counted again); `None`: as it
       was (defaults to `None`)

    # Raises:
     - `RunInterrupted` and `FigureFuncTransferError` from a task, always; with `on_error=None`,
       whatever a task raised
    """
    tasks = iter(tasks)
    guarded = _Guarded(func, on_error, os.getpid())
    if session.sequential:
        def alone(t):
            return guarded(0, t)[1]

        for t in tasks:
            yield from _settle(t, alone(t), alone, on_error, split)
        return
    parallel_kw = parallel_kwargs()

    def alone(t):  # on a fresh or idle pool, nothing else running: a death is this task's
        return joblib.Parallel(n_jobs=session.n_jobs, **parallel_kw)([joblib.delayed(guarded)(0, t)])[0][1]

    while True:
        inflight: dict[int, T] = {}
        counter = itertools.count()

        feed_error: list[BaseException] = []

        def feed() -> Iterator:
            try:
                for t in tasks:
                    i = next(counter)
                    inflight[i] = t
                    yield joblib.delayed(guarded)(i, t)
            except BaseException as e:  # the caller's iterator failed: that error, not a dead pool
                feed_error.append(e)
                raise

        stream = _stream(session, feed(), parallel_kw)
        try:
            for i, r in stream:
                yield from _settle(inflight.pop(i), r, alone, on_error, split)
            if feed_error:
                raise feed_error[0]
            return
        except BaseException as e:
            if feed_error:  # joblib reports it as a task's failure: it is the tasks' own error
                raise feed_error[0] from None
            if on_error is None or _must_propagate(e) or not isinstance(e, Exception):
                raise
            # a worker died (or joblib could not move a task or result): the pool is gone, and with it
            # every task in flight; each runs again alone, then the run goes on with the rest
            lost = [inflight[i] for i in sorted(inflight)]
            for t in lost:
                yield from _run_alone(rerun(t) if rerun is not None else t, alone, on_error, split)
        finally:
            stream.close()  # stopped early (Ctrl-C, an error): joblib aborts and stops its workers now


def _stream(session: ParallelSession, jobs: Iterator, parallel_kw: dict) -> Iterator:
    if session.supports_generator:
        yield from joblib.Parallel(n_jobs=session.n_jobs, return_as="generator_unordered", **parallel_kw)(jobs)
        return
    # backends without result streaming (e.g. "multiprocessing"): waves of a few tasks per worker
    wave_size: int = 2 * session.n_workers
    with joblib.Parallel(n_jobs=session.n_jobs, **parallel_kw) as parallel:  # one pool for every wave
        while wave := list(itertools.islice(jobs, wave_size)):
            yield from parallel(wave)


def _run_alone(task, alone: Callable, on_error, split) -> Iterator:
    try:
        outcome = alone(task)
    except Exception as e:  # its worker died again: this task (or a part of it) kills workers
        if _must_propagate(e):
            raise
        yield from _split_up(task, e, alone, on_error, split)
        return
    yield from _settle(task, outcome, alone, on_error, split)


def _settle(task, outcome, alone: Callable, on_error, split) -> Iterator:
    """the result of `task`, or, when it raised, the results of its parts"""
    if isinstance(outcome, _Raised):
        yield from _split_up(task, TaskRaised(outcome.description), alone, on_error, split)
    else:
        yield outcome


def _split_up(task, failure: BaseException, alone: Callable, on_error, split) -> Iterator:
    """`task` failed with `failure`: its parts one at a time, alone, down to what cannot be split
    (a single part that is another task, e.g. a batch falling back to its `.npz`, runs alone too)"""
    parts = split(task, failure) if split is not None else [task]
    if not parts or (len(parts) == 1 and parts[0] is task):
        yield on_error(task, failure)
        return
    for part in parts:
        if isinstance(part, Settled):
            yield part.result
        else:
            yield from _run_alone(part, alone, on_error, split)
