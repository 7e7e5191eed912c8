"""the one jit decorator every kernel uses

nopython (no silent object-mode fallback), error_model="numpy" (x / 0 is inf or NaN as in numpy, not
a ZeroDivisionError: a constant matrix normalises to 0 / 0), nogil (joblib's threading backend and dask workers can run
kernels concurrently), cache (compile once per machine, not once per worker process). No
`parallel=True`: parallelism comes from joblib across heads, and numba threads inside joblib workers
would oversubscribe the cores.

numba's on-disk cache is keyed on the kernel's own source file: after changing the options here,
delete `kernels/__pycache__/*.nbi` and `*.nbc`, or the old compiled kernels keep being loaded.
"""

import numba

jit = numba.njit(nogil=True, cache=True, error_model="numpy")
