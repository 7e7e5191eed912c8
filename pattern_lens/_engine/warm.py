"""warm workers: a joblib backend whose worker processes start already warm

A fresh loky worker spends ~1.1-1.3 s of CPU before its first head (the interpreter, numpy, numba,
matplotlib's colormaps, then numba's first load of the cached kernels). The run's own process has
paid that already, or will, so `WarmBackend` starts its workers from a process that is warm:

- **fork** of this process, once it has imported the render path and loaded the kernels
  (`warm_here`): a worker is ready in milliseconds. Only while this process has no thread that
  could hold a lock at the fork (threads of its own beyond tqdm's idle monitor), and never once it
  has imported torch (`run` holds torch and its threads: a forked child of it can deadlock).
- otherwise a **forkserver** that preloads `pattern_lens._engine.preload` (the same imports and
  kernels): a fresh interpreter started by fork + exec, which forks the workers on request.

It is loky's executor underneath (`loky.ProcessPoolExecutor` with a fork or forkserver context),
so everything joblib's loky backend does for a run holds: a worker that dies breaks the pool with
`TerminatedWorkerError` naming its exit code, and the next call starts a new pool. One pool serves
every `joblib.Parallel` call of a run and is shut down when the run's `parallel_session` ends
(`close_pool`), so a run never meets a worker forked before its own imports or `sys.path`.

Registered with joblib as `"warm"` (`register`): a run uses it when neither the caller
(`backend=...`, `--backend`) nor an ambient `joblib.parallel_config` names a backend; loky,
threading, multiprocessing and dask stay selectable.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from joblib import register_parallel_backend
from joblib._parallel_backends import FallbackToBackend, LokyBackend, SequentialBackend
from joblib.externals.loky.process_executor import ProcessPoolExecutor

from pattern_lens._engine import backends
from pattern_lens._engine.warmup import warm_worker
from pattern_lens._system import reuse_large_buffers

__all__ = [
    "WarmBackend", "BACKEND_NAME", "register", "close_pool", "close_worker_pools", "warm_here", "start_method", "pool_method",
]

BACKEND_NAME: str = backends.WARM_BACKEND
"the name `WarmBackend` is registered under with joblib (`--backend warm`)"

PRELOAD_MODULE: str = "pattern_lens._engine.preload"
"imported by the forkserver before it forks any worker: it warms the render path"

_pool: ProcessPoolExecutor | None = None
_pool_key: tuple | None = None
_warmed: set[str] = set()
last_method: str | None = None
"how the last pool started its workers (fork or forkserver): for tests and benchmarks"
_forkserver_preloaded: bool = False


def warm_here(profiles: Sequence[str] = ("exact", "fast"), modules: Sequence[str] = ()) -> None:
    """import the render path in this process and load its kernels for `profiles` (once each)"""
    todo = [p for p in profiles if p not in _warmed]
    if todo or modules:
        warm_worker(todo, modules)
        _warmed.update(todo)


def _idle_thread(thread: threading.Thread) -> bool:
    """threads known to hold no lock a forked child could need: tqdm's monitor (it sleeps on an Event)"""
    return type(thread).__name__ == "TMonitor"


def start_method() -> str:
    """`"fork"` when forking this process is safe now, else `"forkserver"`"""
    if "torch" in sys.modules:
        return "forkserver"  # torch's thread pools and allocator state must not be forked
    if threading.current_thread() is not threading.main_thread():
        return "forkserver"
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not _idle_thread(t)]
    return "forkserver" if others else "fork"


def _context(method: str):
    global _forkserver_preloaded
    ctx = multiprocessing.get_context(method)
    if method == "forkserver" and not _forkserver_preloaded:
        # added to, not replaced: a caller's own preload list stays (before the server first starts)
        from multiprocessing import forkserver

        preload = list(getattr(forkserver._forkserver, "_preload_modules", []))
        if PRELOAD_MODULE not in preload:
            ctx.set_forkserver_preload([*preload, PRELOAD_MODULE])
        _forkserver_preloaded = True
    return ctx


def _broken(pool: ProcessPoolExecutor) -> bool:
    flags = getattr(pool, "_flags", None)
    return flags is None or flags.broken is not None or flags.shutdown


def _get_pool(n_workers: int, profiles: Sequence[str]) -> ProcessPoolExecutor:
    """the run's pool of `n_workers` warm workers: the current one while it works, else a new one"""
    global _pool, _pool_key
    key = (n_workers, os.getpid())
    if _pool is not None and _pool_key is not None and _pool_key[:2] == key and not _broken(_pool):
        return _pool
    close_pool(kill=True)
    global last_method
    method = last_method = start_method()  # after the old pool's threads have ended
    if method == "fork":
        warm_here(profiles)  # what the workers inherit: imports and kernels, loaded once, here
    parent = os.getpid() if method == "fork" else None
    _pool = ProcessPoolExecutor(
        max_workers=n_workers, context=_context(method), initializer=_worker_start, initargs=(parent,)
    )
    _pool._temp_folder_manager = _NoTempFolders()  # what joblib asks of its own executors
    _pool_key = (*key, method)
    return _pool


class _NoTempFolders:
    """joblib's per-call temporary folders, for a pool that memory-maps nothing (tasks carry paths)"""

    def set_current_context(self, context_id) -> None:
        pass

    def _clean_temporary_resources(self, *args, **kwargs) -> None:
        pass


def pool_method() -> str | None:
    """how the current pool's workers were started (`"fork"`, `"forkserver"`), `None` without one"""
    return _pool_key[2] if _pool is not None and _pool_key is not None else None


def close_pool(kill: bool = False) -> None:
    """shut the pool down (its workers exit; with `kill`, at once)"""
    global _pool, _pool_key
    pool, _pool, _pool_key = _pool, None, None
    if pool is not None:
        pool.shutdown(wait=True, kill_workers=kill)


def close_worker_pools(kill: bool = False) -> None:
    """shut down every pool of worker processes this process holds: the warm pool and joblib's loky
    executor (when the process's own command ends, `_command.as_process`: their threads are gone
    before the interpreter exits, where loky would join them itself and a Ctrl-C in that join printed
    a traceback and exited 0)"""
    close_pool(kill=kill)
    loky = sys.modules.get("joblib.externals.loky.reusable_executor")  # joblib's, whoever started it: the process is ending
    executor = getattr(loky, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=kill)


def _watch(parent_pid: int) -> None:
    while True:
        time.sleep(0.1)
        if os.getppid() != parent_pid:  # re-parented: the run (or its forkserver) is gone
            os._exit(1)


def _worker_start(parent_pid: int | None) -> None:
    """in a new worker: leave Ctrl-C and SIGTERM to the run, and die with the process that started it

    A forked worker inherits the run's signal handlers (which raise `RunInterrupted`): SIGINT is
    ignored (the run stops its workers) and SIGTERM is the default again. `parent_pid`: the run, for a
    forked worker (gone already: exit now); `None` for a forkserver's worker, which watches the
    server, and the server exits when the run does.
    """
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
    reuse_large_buffers()  # each layer inflated into the last one's pages
    # what the worker inherited is the run's: never collected here. loky collects after a worker's
    # first task (its memory check), and a collection writes to every object it visits: a forked
    # worker then copied the parent's whole heap, 0.17 s before its second task (freeze moves the
    # objects to the permanent generation without visiting them)
    gc.freeze()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if hasattr(signal, "pthread_sigmask"):  # forked with SIGINT blocked (`WarmBackend.submit`)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    backends._watchdog_started = True  # `_Guarded` starts no second one
    watched = parent_pid if parent_pid is not None else os.getppid()
    threading.Thread(target=_watch, args=(watched,), name="pattern_lens-watchdog", daemon=True).start()


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def _main_kept_home() -> Iterator[None]:
    """while a forkserver's worker is started: the caller's `__main__` not named to it

    multiprocessing has a spawned or forkserver child run the parent's main module again (as
    `__mp_main__`); a script that calls `run_main` without `if __name__ == "__main__":` would then
    start again in every worker (loky, the default before, did not do that). Figure functions
    defined in `__main__` travel by value (`transfer`), so the workers never need that module.
    """
    main = sys.modules.get("__main__")
    if pool_method() != "forkserver" or main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__dict__["__spec__"] = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class WarmBackend(LokyBackend):
    """joblib's loky backend, with workers forked from a warm process (see the module's doc)

    # Parameters:
     - `profiles : Sequence[str]` export profiles whose kernels the workers get loaded
       (defaults to `("exact", "fast")`)
    """

    def __init__(self, *args, profiles: Sequence[str] = ("exact", "fast"), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.profiles = tuple(profiles)

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, idle_worker_timeout=None, **kwargs):
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self._workers = _get_pool(n_jobs, self.profiles)
        self.parallel = parallel
        return n_jobs

    def submit(self, func, callback=None):
        # the pool starts its workers inside a submit: with SIGINT blocked, so that a Ctrl-C during a
        # worker's first milliseconds is not raised there (its initializer ignores it), and without
        # the caller's main module run again in a forkserver's worker (`_main_kept_home`)
        with _main_kept_home(), _sigint_blocked():
            return super().submit(func, callback)

    def terminate(self):
        self._workers = None  # the pool stays for the run's next call; `close_pool` ends it
        self.reset_batch_stats()

    def end_session(self) -> None:
        """the run is over: its pool's workers exit (`parallel_session` calls this)"""
        close_pool()

    def abort_everything(self, ensure_ready=True):
        close_pool(kill=True)
        self._workers = None
        if ensure_ready:
            self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel)


_registered: bool = False


def register() -> None:
    """make `"warm"` a joblib backend name (once per process)"""
    global _registered
    if not _registered:
        register_parallel_backend(BACKEND_NAME, WarmBackend)
        _registered = True
