"""the one jit decorator every kernel uses

nopython (no silent object-mode fallback), error_model="numpy" (x / 0 is inf or NaN as in numpy, not
a ZeroDivisionError: a constant matrix normalises to 0 / 0), nogil (joblib's threading backend and dask workers can run
kernels concurrently), cache (compile once per machine, not once per worker process). No
`parallel=True`: parallelism comes from joblib across heads, and numba threads inside joblib workers
would oversubscribe the cores.

Kernels are `typing.no_type_check`: runtime type checkers (beartype, typeguard, jaxtyping's import
hook, which the reference's test setup runs on the whole package) must leave them alone. The import
hook wraps every function it compiles before the decorators run, and numba cannot compile (or cache)
that wrapper, so `jit` compiles the function the wrapper wraps.

numba's on-disk cache is keyed on the kernel's own source file: after changing the options here,
delete `kernels/__pycache__/*.nbi` and `*.nbc`, or the old compiled kernels keep being loaded.
"""

import inspect
import typing

import numba

__all__ = ["jit"]

_njit = numba.njit(nogil=True, cache=True, error_model="numpy")


def jit(func):
    """compile `func` as a kernel (see the module docstring), marked `typing.no_type_check`"""
    return _njit(typing.no_type_check(inspect.unwrap(func)))
