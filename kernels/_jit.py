"""the jit decorator every kernel uses, and its one variant for reductions

nopython (no silent object-mode fallback), error_model="numpy" (x / 0 is inf or NaN as in numpy, not
a ZeroDivisionError: a constant matrix normalises to 0 / 0), nogil (joblib's threading backend and dask workers can run
kernels concurrently), cache (compile once per machine, not once per worker process). No
`parallel=True`: parallelism comes from joblib across heads, and numba threads inside joblib workers
would oversubscribe the cores.

Kernels are `typing.no_type_check`: runtime type checkers (beartype, typeguard, jaxtyping's import
hook, which the reference's test setup runs on the whole package) must leave them alone. The import
hook wraps every function it compiles before the decorators run, and numba cannot compile (or cache)
that wrapper, so `jit` compiles the function the wrapper wraps.

`jit_reduce` is the same plus `fastmath={"reassoc", "contract"}` and nothing else: LLVM vectorises a
float sum (`s += x[j]`) only when it may reorder the additions. Measured on a causal 1024 x 1024
float32 pattern, row sums took 0.44 ms without it, 0.17 ms with eight hand-kept partial sums, 0.05 ms
with it. `contract` lets `a * b + c` become one fused multiply-add: the statistics' float32 log (a
polynomial) took 0.72 ms without it, 0.51 ms with it, over the same pattern. Only for kernels whose
results are statistics (a different summation order, or a multiply-add's single rounding, changes
the last bits); never for the colormap kernels, whose outputs must equal matplotlib's bit for bit.
NaN and inf still propagate (no `nnan` / `ninf`).

numba's on-disk cache is keyed on the kernel's own source file: after changing the options here,
or a helper that kernels of other files compile in (`_prefetch.prefetch_items`), delete
`kernels/__pycache__/*.nbi` and `*.nbc`, or the old compiled kernels keep being loaded.

The cache works for any user: numba caches beside the source (`kernels/__pycache__`), else in the
user's cache folder (`~/.cache/numba`), else in `NUMBA_CACHE_DIR`. Where none is writable (a
read-only shared install and a read-only HOME), `numba.config.CACHE_DIR` is pointed at a private
per-user folder under the temporary folder (`pattern_lens-numba-<uid>`, mode 0700, refused when
another user owns it); where even that fails, kernels are compiled in each process, with one
warning per run (the workers a process starts inherit an environment variable saying it was given).
Processes that start at once against an empty cache are safe: numba writes each cache file to a
temporary name and renames it into place (tests/test_faults.py runs 8 at once, twice).
"""

import inspect
import os
import stat
import tempfile
import typing
import warnings
from pathlib import Path

import numba
from numba.core import config as _numba_config

__all__ = ["jit", "jit_reduce", "CACHE"]


def _probe():  # a function defined in this folder, to ask numba's locators about it
    pass


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _cache_available() -> bool:
    """whether one of numba's cache locators can write a cache for the kernels in this folder"""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    locators = getattr(impl, "_locator_classes", None)
    if locators:
        try:
            return any(cls.from_function(_probe, __file__) is not None for cls in locators)
        except Exception:  # noqa: BLE001 -- numba internals changed: ask the file system below
            pass
    # the folders numba would try, in its order
    if _numba_config.CACHE_DIR and _writable(Path(_numba_config.CACHE_DIR)):
        return True
    return _writable(Path(__file__).parent / "__pycache__")


def _private_cache_dir() -> str | None:
    """a per-user cache folder under the temporary folder, created 0700; `None` if unusable or not ours"""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = Path(tempfile.gettempdir()) / f"pattern_lens-numba-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != uid):
            return None  # a link, a file, or another user's folder: not a safe place for compiled code
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return None
    return str(path)


_WARNED_ENV = "PATTERN_LENS_NUMBA_UNCACHED_WARNED"
"set once the warning below was given: worker processes, which inherit it, do not repeat it"


def _choose_cache() -> bool:
    if _cache_available():
        return True
    if not _numba_config.CACHE_DIR:
        private = _private_cache_dir()
        if private is not None:
            _numba_config.CACHE_DIR = private
            if _cache_available():
                return True
            _numba_config.CACHE_DIR = ""
    if os.environ.get(_WARNED_ENV):
        return False  # said once by the process that started this one (a worker): once per run
    os.environ[_WARNED_ENV] = "1"  # inherited by the worker processes this one starts
    warnings.warn(
        "pattern_lens: no writable numba cache folder (package folder, ~/.cache and the temporary "
        "folder are read-only): kernels are compiled in every process (a few seconds each); set "
        "NUMBA_CACHE_DIR to a writable folder to cache them",
        RuntimeWarning,
        stacklevel=2,
    )
    return False


CACHE: bool = _choose_cache()
"whether compiled kernels are cached on disk in this process"

_njit = numba.njit(nogil=True, cache=CACHE, error_model="numpy")
_njit_reduce = numba.njit(nogil=True, cache=CACHE, error_model="numpy", fastmath={"reassoc", "contract"})


def jit(func):
    """compile `func` as a kernel (see the module docstring), marked `typing.no_type_check`"""
    return _njit(typing.no_type_check(inspect.unwrap(func)))


def jit_reduce(func):
    """`jit` allowing float sums to be reordered (see the module docstring): statistics kernels only"""
    return _njit_reduce(typing.no_type_check(inspect.unwrap(func)))
