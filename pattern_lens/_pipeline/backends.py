"""joblib does the fan-out: resolving the parallel settings of a run and streaming task results

`n_jobs` and `backend` are parameters, and when not given the ambient `joblib.parallel_config`
decides (default: loky processes on all cores). `backend="dask"` with a scheduler address runs the
same tasks on a dask.distributed cluster.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import joblib
from joblib.parallel import get_active_backend

from pattern_lens._errors import PatternLensError

__all__ = ["ParallelSession", "parallel_session", "run_all"]

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

    def as_sequential(self) -> "ParallelSession":
        """the same run on one worker in this process (a run too small to pay for starting workers)"""
        return ParallelSession(self.n_jobs, 1, "sequential", True, self.supports_generator)


_BACKEND_NAMES: dict[str, str] = {
    "SequentialBackend": "sequential",
    "ThreadingBackend": "threading",
    "LokyBackend": "loky",
    "MultiprocessingBackend": "multiprocessing",
    "DaskDistributedBackend": "dask",
}


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

    # Yields:
     - `ParallelSession`
    """
    if scheduler is not None and backend != "dask":
        raise PatternLensError(f"a scheduler address ({scheduler!r}) needs backend 'dask', not {backend!r}")
    with contextlib.ExitStack() as stack:
        if backend == "dask":
            stack.enter_context(_dask_client(scheduler))
        if backend is not None:
            try:
                stack.enter_context(joblib.parallel_config(backend=backend))
            except ValueError as e:
                raise PatternLensError(f"unknown joblib backend {backend!r}: {e}") from e
        backend_obj, config_n_jobs = get_active_backend()
        if n_jobs is None:
            n_jobs = config_n_jobs if config_n_jobs is not None else -1
        n_jobs = int(n_jobs)
        if n_jobs == 0:
            raise PatternLensError("n_jobs must be a positive number of workers or negative (-1: all cores), not 0")
        n_workers: int = max(1, int(joblib.effective_n_jobs(n_jobs)))
        name: str = _BACKEND_NAMES.get(type(backend_obj).__name__, type(backend_obj).__name__)
        is_dask: bool = name == "dask"
        in_process: bool = bool(getattr(backend_obj, "uses_threads", False)) or (n_workers == 1 and not is_dask)
        if n_workers == 1 and not is_dask:
            name = "sequential"
        yield ParallelSession(
            n_jobs=n_jobs,
            n_workers=n_workers,
            backend_name=name,
            in_process=in_process,
            supports_generator=bool(getattr(backend_obj, "supports_return_generator", False)),
        )


def run_all(session: ParallelSession, func: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
    """`func(task)` for every task on the session's workers, yielding results as they complete

    `tasks` is consumed lazily (joblib pulls a few ahead of the workers), so a planner can size later
    tasks from earlier results. With one worker the tasks run here, without a joblib round trip.
    """
    tasks = iter(tasks)
    if session.sequential:
        for t in tasks:
            yield func(t)
        return
    if session.supports_generator:
        parallel = joblib.Parallel(n_jobs=session.n_jobs, batch_size=1, return_as="generator_unordered")
        yield from parallel(joblib.delayed(func)(t) for t in tasks)
        return
    # backends without result streaming (e.g. "multiprocessing"): waves of a few tasks per worker
    wave_size: int = 2 * session.n_workers
    with joblib.Parallel(n_jobs=session.n_jobs, batch_size=1) as parallel:  # one pool for every wave
        while wave := list(itertools.islice(tasks, wave_size)):
            yield from parallel(joblib.delayed(func)(t) for t in wave)
