"""start the worker processes while the parent is still importing and planning

A fresh worker spends about a second before its first head: the interpreter, numpy, joblib, numba
and matplotlib's colormaps (~0.9 s of imports), then numba's first load of the cached kernels
(~0.3 s, it initialises numba's typing and target contexts). Started only when the first task
arrives, that second adds to the parent's own imports and planning. `prestart_workers` starts the
pool at once from a background thread with a warm-up task per worker (the same imports and a tiny
render through the kernels, no file written); the run's `joblib.Parallel` then finds the same
reusable pool (joblib keeps one loky executor per set of arguments) already warm, after
`wait_prestarted()`.

Only for the loky backend asked for by name (`--backend loky`) and an explicit number of workers
above one: the default backend's workers start warm from the run's own process
(`pattern_lens._engine.warm`), and a run that may turn out small enough for one process (the
default's choice) should not pay for workers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pattern_lens._engine.warmup import warm_worker

__all__ = ["prestart_workers", "wait_prestarted", "warm_worker"]

_thread: threading.Thread | None = None


def _start(n_jobs: int, profiles: tuple[str, ...], modules: tuple[str, ...]) -> None:
    import joblib

    from pattern_lens._engine.backends import parallel_kwargs, parallel_session

    try:
        # the run's own settings (workers that die with this process, no memmapping), so that its
        # `joblib.Parallel` reuses this very pool
        with parallel_session(n_jobs, "loky", announce=False) as session:
            jobs = (joblib.delayed(warm_worker)(profiles, modules) for _ in range(session.n_workers))
            joblib.Parallel(n_jobs=session.n_jobs, **parallel_kwargs())(jobs)
    except Exception:  # noqa: BLE001, S110 (an optimisation only: the run starts its own workers)
        pass


def prestart_workers(
    n_jobs: int | None, backend: str | None, profile: str | None = None, modules: Sequence[str] = ()
) -> bool:
    """start and warm the worker pool in the background, if the run will use loky workers

    # Parameters:
     - `n_jobs : int | None` the run's explicit number of workers (`None`: the default's choice, no
       prestart; 1: none)
     - `backend : str | None` the run's backend (prestarted only when it is `"loky"`)
     - `profile : str | None` the run's export profile (defaults to `None`: `"exact"`)
     - `modules : Sequence[str]` the user's figure-function modules, imported in the workers too
       (defaults to `()`)

    # Returns:
     - `bool` whether a prestart began
    """
    global _thread
    if n_jobs is None or n_jobs == 1 or backend != "loky" or _thread is not None:
        return False
    _thread = threading.Thread(
        target=_start, args=(n_jobs, (profile or "exact",), tuple(modules)), name="pattern_lens-prestart", daemon=True
    )
    _thread.start()
    return True


def wait_prestarted() -> None:
    """wait until a prestart has finished (before the run's own `joblib.Parallel` uses the pool)"""
    global _thread
    if _thread is not None:
        _thread.join()
        _thread = None
