"""a matrix's min and max, known from a pass that has already read it

The fast profile's `raw` figure min-max normalises the head's pattern: numpy's `min()` and `max()`
are one pass over the matrix each. When the head summaries run first, their kernel has found both
in its own pass (`pattern_lens._summaries.stats.HeadSummary.minimum` / `maximum`); the worker makes
them known here for the time the head's figure functions run (`known_extremes`), and
`pattern_lens._export.colormap.normalization` takes them instead of reading the matrix again.

They are known for one buffer only: the same memory, shape, strides and dtype as the pattern they
were found in (a view of the same head made again matches; a matrix a figure function computed
does not). The worker only makes them known while every figure function about to run promises not
to write into its input (`pattern_lens._layout.READS_ONLY_ATTR`), so they cannot go stale. One
value per thread: joblib's threading backend runs heads side by side.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np

__all__ = ["known_extremes", "extremes_of"]

_local = threading.local()


def _key(matrix: np.ndarray) -> tuple:
    return (matrix.__array_interface__["data"][0], matrix.shape, matrix.strides, matrix.dtype.str)


@contextlib.contextmanager
def known_extremes(matrix: np.ndarray, minimum: np.generic, maximum: np.generic) -> Iterator[None]:
    """within the block, `extremes_of(m)` for `m` viewing the same buffer as `matrix` is `(minimum, maximum)`

    # Parameters:
     - `matrix : np.ndarray` the matrix (not written to inside the block)
     - `minimum`, `maximum` : numpy scalars, exactly `matrix.min()` and `matrix.max()`
    """
    previous = getattr(_local, "known", None)
    _local.known = (_key(matrix), minimum, maximum)
    try:
        yield
    finally:
        _local.known = previous


def extremes_of(matrix: np.ndarray) -> tuple[np.generic, np.generic] | None:
    """`(matrix.min(), matrix.max())` when known for this buffer (`known_extremes`), else `None`"""
    known = getattr(_local, "known", None)
    if known is None or not isinstance(matrix, np.ndarray) or isinstance(matrix, np.ma.MaskedArray):
        return None  # a masked view of the same buffer has extremes of its own
    key, minimum, maximum = known
    return (minimum, maximum) if _key(matrix) == key else None
