"""colormap lookup with matplotlib's arithmetic, one pass over the matrix

`matplotlib.colors.Colormap.__call__` on a float array does, in the array's own dtype:

    xa = X * N;  xa[xa == N] = N - 1
    under = xa < 0;  over = xa >= N;  bad = isnan(xa)
    row = int(xa), replaced by N (under), N + 1 (over), N + 2 (bad)

and looks `row` up in its (N + 3)-row table. The kernels below fold an affine normalisation in front
of that, `X = (x - offset) / denom + add`, evaluated in the same order and precision as numpy
evaluates the reference's array expression (no fastmath: every operation rounds like numpy's), so
the rows they produce are matplotlib's, bit for bit. `offset`, `denom`, `add` and `scale` must be
scalars of `x`'s dtype; the caller guarantees it.
"""

import numpy as np

from ._jit import jit
from ._prefetch import prefetch_items

__all__ = ["lut_indices", "lut_rgb"]


@jit
def _lut_row(x, offset, denom, add, scale, top, fn, under, over, bad):
    """matplotlib's LUT row for one value: 0..n-1 colours, `under` (n), `over` (n + 1), `bad` (n + 2)

    `top` = n - 1 and `fn` = n in `x`'s dtype, the special rows as int32: every operation stays in
    `x`'s float type and the row in int32, so LLVM vectorises the loops that inline it. A float64
    constant or an int64 row turned them into a float -> int64 conversion per lane, which AVX2 has
    no vector instruction for (1024 x 1024 float32: 2.0 ms, 0.44 ms as written here). Written as
    selects rather than early returns for the same reason. Clamping before the conversion keeps
    NaN and inf away from it; exactly N after scaling clamps to the last colour, as matplotlib's
    `xa[xa == N] = N - 1`.
    """
    v = ((x - offset) / denom + add) * scale
    zero = top - top
    clamped = v if v > zero else zero  # NaN -> 0 here; the `bad` select below overrides it
    clamped = clamped if clamped < top else top
    row = np.int32(clamped)
    row = under if v < zero else row
    row = over if v > fn else row
    row = bad if v != v else row
    return row


@jit
def _line_rows(x_line, offset, denom, add, scale, n, out_line):
    """table rows of one matrix row into `out_line`; returns how many were under/over/bad

    The loop keeps the largest row (a max vectorises; a count of special rows, int64, did not);
    only a line holding a special row is counted, in a second loop.
    """
    top = x_line.dtype.type(n - 1)
    fn = x_line.dtype.type(n)
    under = np.int32(n)
    over = np.int32(n + 1)
    bad = np.int32(n + 2)
    largest = np.int32(0)
    for j in range(x_line.shape[0]):
        row = _lut_row(x_line[j], offset, denom, add, scale, top, fn, under, over, bad)
        largest = max(largest, row)
        out_line[j] = row
    if largest < under:
        return 0
    n_special = 0
    for j in range(x_line.shape[0]):
        n_special += _lut_row(x_line[j], offset, denom, add, scale, top, fn, under, over, bad) >= under
    return n_special


@jit
def lut_indices(x, offset, denom, add, scale, n, out):
    """write the LUT row of every element of `x` into `out`

    # Parameters:
     - `x : float32|float64 array (rows, cols)`
     - `offset, denom, add, scale : scalars of x's dtype`
       the normalisation `((x - offset) / denom + add) * scale`; scale is the colormap's N
     - `n : int`
       the colormap's N
     - `out : integer array (rows, cols)`
       receives rows 0..n+2; with a uint8 `out` and n + 3 > 256 the out-of-range rows wrap

    # Returns:
     - `int`
       how many elements fell outside the colours (under, over or bad), so a caller writing uint8
       can tell whether the wrap happened
    """
    n_special = 0
    for i in range(x.shape[0]):
        # the next row's cache lines asked for ahead (`_prefetch`: a row crosses a page, where the
        # hardware's prefetch stops); all at once here: split across the row, the shorter loops
        # cost more than the wait they hid (benchmarks/README.md, "Prefetching the next row")
        if i + 1 < x.shape[0]:
            prefetch_items(x[i + 1], 0, x.shape[1])
        n_special += _line_rows(x[i], offset, denom, add, scale, n, out[i])
    return n_special


@jit
def lut_rgb(x, offset, denom, add, scale, n, lut, out):
    """write the RGB colour of every element of `x` into `out` (rows, cols, 3), from `lut` (n + 3, 3)

    # Parameters:
     - the same as `lut_indices`, plus `lut : uint8 array (n + 3, 3)`
       the colormap's table already as `(rgba[:, :3] * 255).astype(uint8)`

    # Returns:
     - `int`
       how many elements fell outside the colours (under, over or bad)
    """
    # rows of a whole line first (that loop vectorises), then the gather: 2.6x faster than both in
    # one loop, whose 3-byte stores kept the arithmetic scalar
    line = np.empty(x.shape[1], dtype=np.intp)
    n_special = 0
    for i in range(x.shape[0]):
        n_special += _line_rows(x[i], offset, denom, add, scale, n, line)
        for j in range(x.shape[1]):
            row = line[j]
            out[i, j, 0] = lut[row, 0]
            out[i, j, 1] = lut[row, 1]
            out[i, j, 2] = lut[row, 2]
    return n_special
