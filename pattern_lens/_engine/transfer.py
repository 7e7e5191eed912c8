"""shipping figure functions to joblib / dask workers, once per worker

Worker processes get the figure functions by pickling (cloudpickle, as joblib's loky and dask
backends do): a function defined at module level in an importable module travels as a reference
(`module.qualname`) and the worker imports that module, which registers the function there too.
Functions from `__main__`, lambdas and closures travel by value when cloudpickle can serialise them.

The functions are pickled once in the parent into one blob; each task carries the blob (a few
hundred bytes for references) and a worker unpickles a given blob once (`functools.lru_cache`), so
imports and kernel loading happen once per worker, not once per task. Failures either way raise
`FigureFuncTransferError` with what to do about it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence

import cloudpickle  # a dependency of its own: joblib >= 1.6 no longer vendors it

from pattern_lens._errors import FigureFuncTransferError
from pattern_lens._output.outputs import figure_func_name

__all__ = ["FigureFuncs", "TRANSFER_ADVICE"]

TRANSFER_ADVICE: str = (
    "Worker processes receive figure functions by pickling. Define the function at module level "
    "in an importable module (a .py file on sys.path or in your package, not inside another "
    "function or a notebook cell), register it there with @register_attn_figure_func, and import "
    "that module before rendering (CLI: `pattern-lens render --import my_module ...`). Do not close "
    "over unpicklable objects (locks, open files, figures, clients). Or render in this process "
    "with n_jobs=1 (--jobs 1) or backend='threading'."
)
"how to make a figure function usable in worker processes; part of every transfer error"


class FigureFuncs:
    """an ordered, picklable bundle of figure functions

    Pickles as one cloudpickle blob, made once. In a worker the blob is turned back into
    functions on first use (inside the task, so a failure is an ordinary exception carrying advice
    rather than a broken process pool), and that is cached per process.

    # Parameters:
     - `funcs : Sequence[Callable]`
       the figure functions, in the order they run on each head
    """

    def __init__(
        self, funcs: Sequence[Callable] | None, blob: bytes | None = None, sys_path: tuple[str, ...] = ()
    ) -> None:
        self._funcs: tuple[Callable, ...] | None = tuple(funcs) if funcs is not None else None
        self._blob: bytes | None = blob
        # the parent's import path when it pickled them: a reused worker started before a folder was
        # added to it (a second run in one Python session) finds the module there
        self._sys_path: tuple[str, ...] = sys_path or tuple(sys.path)

    @property
    def funcs(self) -> tuple[Callable, ...]:
        """the functions (unpickled from the blob on first use in a worker)

        # Raises:
         - `FigureFuncTransferError` when this process cannot load them (module not importable)
        """
        if self._funcs is None:
            assert self._blob is not None
            self._funcs = _load_figure_funcs(self._blob, self._sys_path)
        return self._funcs

    def __iter__(self):
        return iter(self.funcs)

    def __len__(self) -> int:
        return len(self.funcs)

    @property
    def names(self) -> list[str]:
        """the functions' names"""
        return [figure_func_name(f) for f in self.funcs]

    def blob(self) -> bytes:
        """the pickled functions (made on first use)

        # Raises:
         - `FigureFuncTransferError` naming the function that cannot be pickled
        """
        if self._blob is None:
            try:
                self._blob = cloudpickle.dumps(self.funcs)
            except Exception as e:  # noqa: BLE001 -- any pickling failure gets the same advice
                raise self._pickle_error(e) from e
        return self._blob

    def _pickle_error(self, exc: Exception) -> FigureFuncTransferError:
        culprit: str = "one of the figure functions"
        for func in self.funcs:
            try:
                cloudpickle.dumps(func)
            except Exception as e:  # noqa: BLE001
                culprit = (
                    f"figure function {figure_func_name(func)!r} "
                    f"(module {getattr(func, '__module__', '?')!r})"
                )
                exc = e
                break
        return FigureFuncTransferError(
            f"{culprit} cannot be sent to worker processes: {type(exc).__name__}: {exc}\n{TRANSFER_ADVICE}"
        )

    def __reduce__(self):
        return (FigureFuncs, (None, self.blob(), self._sys_path))


@functools.lru_cache(maxsize=8)
def _load_figure_funcs(blob: bytes, parent_sys_path: tuple[str, ...] = ()) -> tuple[Callable, ...]:
    try:
        try:
            return tuple(cloudpickle.loads(blob))
        except ModuleNotFoundError:
            # a worker reused from an earlier run of this session: the module's folder may have
            # joined the parent's sys.path since this worker started
            missing = [p for p in parent_sys_path if p not in sys.path]
            if not missing:
                raise
            sys.path.extend(missing)
            return tuple(cloudpickle.loads(blob))
    except Exception as e:  # noqa: BLE001 -- typically ModuleNotFoundError in the worker
        raise FigureFuncTransferError(
            f"a worker process (pid {os.getpid()}) cannot load the figure functions: "
            f"{type(e).__name__}: {e}\nThe worker imports each function's module by name, so that "
            f"module must be importable there too (same sys.path / installed package; for dask, on "
            f"every worker machine).\n{TRANSFER_ADVICE}"
        ) from e
