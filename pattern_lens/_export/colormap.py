"""matrix -> colormap rows or RGB, byte-identical to the reference's matplotlib colormapping

The reference (`figure_util.matrix_to_image_preprocess`) normalises the matrix with numpy array
expressions, calls `cmap(normalized)` and keeps `[:, :, :3] * 255` as uint8. Here:

1. `normalization()` validates exactly as the reference does (same assertions, same order) and reduces
   the normalisation to scalars: `normalized = (matrix - offset) / denom + add`, with the scalars
   computed by the reference's own numpy expressions, so they carry numpy's dtypes and rounding.
2. `colormap_table()` asks the Colormap for its (N + 3)-row table through the public API (integer
   input indexes the table directly), as uint8 RGB; tables of named colormaps are cached.
3. a numba kernel (`pattern_lens.kernels`) applies both in one pass, in the input's dtype.

Whatever the kernel does not cover (integer, bool, complex, object or masked matrices, float16 with
an unusual N, Colormap subclasses with their own `__call__`) goes through `reference_rgb()`: the
reference's algorithm itself, so every input gets the reference's output.
"""

import difflib
import functools
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.colors import Colormap

from pattern_lens._export.extremes import extremes_of
from pattern_lens.kernels import lut_indices, lut_rgb

__all__ = [
    "Normalization",
    "ColormapTable",
    "normalization",
    "get_colormap",
    "colormap_table",
    "matrix_to_rgb",
    "matrix_to_lut_rows",
    "reference_rgb",
]

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# float16 has no numba arrays: its arithmetic runs in numpy (float16, as the reference), and only
# the exact float16 -> float32 widened result goes through the kernel. That is exact while N itself
# is a float16 integer, i.e. N <= 2048.
_FLOAT16_MAX_N = 2048
_UINT16_ROWS = 2**16
# the kernels clamp to N - 1 in the input's dtype: exact in float32 up to 2**24 colours
_KERNEL_MAX_N = 2**24


@dataclass(frozen=True)
class Normalization:
    """`normalized = (matrix - offset) / denom + add`, or the matrix itself when `identity`"""

    identity: bool
    offset: object = None
    denom: object = None
    add: object = None

    def apply(self, matrix: np.ndarray) -> np.ndarray:
        """the normalised matrix, computed with numpy exactly as the reference's expressions"""
        if self.identity:
            return matrix
        # a missing term is skipped, not applied as `- 0` / `+ 0`, to stay literally the reference's
        shifted = matrix if self.offset is None else matrix - self.offset
        normalized = shifted / self.denom
        return normalized if self.add is None else normalized + self.add

    def result_dtype(self, matrix: np.ndarray) -> np.dtype:
        """dtype of `apply(matrix)`, by numpy's own promotion rules, without computing it"""
        with np.errstate(all="ignore"):
            return self.apply(matrix.reshape(-1)[:1]).dtype


def _range_message(matrix: np.ndarray, low: int) -> str:
    return (
        f"Matrix values must be in range [{low}, 1], or normalize must be True. "
        f"got: min: {matrix.min()}, max: {matrix.max()}"
    )


def normalization(
    matrix: np.ndarray,
    normalize: bool,
    diverging_colormap: bool = False,
    normalize_min: float | None = None,
) -> Normalization:
    """validate `matrix` and the options as the reference does; return the normalisation to apply

    # Raises:
     - `TypeError` for non-array or non-numeric input
     - `AssertionError` for non-2D or empty matrices, values out of range without `normalize`, and
       invalid `normalize_min` combinations (the reference's exception types, clearer messages)
    """
    if not isinstance(matrix, np.ndarray):
        raise TypeError(f"matrix must be a numpy array, got {type(matrix).__name__}")
    assert matrix.ndim == 2, f"Matrix must be 2D, got {matrix.ndim}D array of shape {matrix.shape}"
    assert matrix.size > 0, f"Matrix cannot be empty, got shape {matrix.shape}"
    if matrix.dtype.kind in "USV":
        raise TypeError(f"matrix must hold numbers, got dtype {matrix.dtype}")

    if normalize_min is not None:
        assert not diverging_colormap, "normalize_min cannot be used with diverging_colormap=True"
        assert normalize, "normalize_min cannot be used with normalize=False"

    if not normalize:
        low = -1 if diverging_colormap else 0
        assert matrix.min() >= low and matrix.max() <= 1, _range_message(matrix, low)
        return Normalization(identity=True)

    if diverging_colormap:
        # 0 maps to the centre of the colormap: matrix / (2 * max|matrix|) + 0.5
        max_abs = max(abs(matrix.max()), abs(matrix.min()))
        return Normalization(identity=False, denom=2 * max_abs, add=0.5)

    known = extremes_of(matrix)  # found by the head summaries' pass (`extremes`): not read again
    max_val = matrix.max() if known is None else known[1]
    if normalize_min is not None:
        min_val = normalize_min
        assert min_val < max_val, (
            f"normalize_min must be less than the matrix max: normalize_min={min_val}, max={max_val}"
        )
        assert min_val <= matrix.min(), (
            f"normalize_min must be at most the matrix min: normalize_min={min_val}, "
            f"min={matrix.min()}"
        )
    else:
        min_val = matrix.min() if known is None else known[0]
    return Normalization(identity=False, offset=min_val, denom=max_val - min_val, add=None)


def get_colormap(cmap: str | Colormap) -> Colormap:
    """the Colormap object for a name or a Colormap; a KeyError suggests close names for a typo"""
    if isinstance(cmap, Colormap):
        return cmap
    if not isinstance(cmap, str):
        raise TypeError(
            f"Invalid type for cmap={cmap!r} ({type(cmap).__name__}): must be str or Colormap"
        )
    try:
        return matplotlib.colormaps[cmap]
    except KeyError:
        close = difflib.get_close_matches(cmap, list(matplotlib.colormaps), n=5, cutoff=0.6)
        hint = f"; did you mean one of {close}?" if close else ""
        raise KeyError(
            f"{cmap!r} is not a known colormap name{hint} (see matplotlib.colormaps)"
        ) from None


@dataclass(frozen=True)
class ColormapTable:
    """a colormap's table as uint8 RGB: rows 0..n-1 colours, n under, n + 1 over, n + 2 bad"""

    n: int
    rgb: np.ndarray


def _table_of(cmap: Colormap) -> ColormapTable:
    n = cmap.N
    # integer input indexes the table directly: -1 is under, n is over, NaN (as float) is bad
    rgba = np.vstack([cmap(np.r_[np.arange(n), -1, n]), cmap(np.array([np.nan]))])
    rgb = (rgba[:, :3] * 255).astype(np.uint8)
    rgb.flags.writeable = False
    return ColormapTable(n=n, rgb=rgb)


@functools.lru_cache(maxsize=64)
def _table_of_name(name: str) -> ColormapTable:
    return _table_of(get_colormap(name))


def colormap_table(cmap: str | Colormap) -> ColormapTable:
    """the uint8 RGB table of a colormap, cached for names

    Colormap objects are read afresh every call (about 20 us): they are mutable (`set_bad`, ...).
    A name re-registered in `matplotlib.colormaps` (`force=True`) while the process runs keeps the
    table first read for it.
    """
    return _table_of_name(cmap) if isinstance(cmap, str) else _table_of(get_colormap(cmap))


def _has_standard_lookup(cmap: Colormap) -> bool:
    """whether `cmap(x)` is matplotlib's own table lookup (a subclass may override it)"""
    kind = type(cmap)
    # `_get_rgba_and_mask` holds the lookup since matplotlib 3.10; before, `__call__` did (the same
    # arithmetic), so an absent attribute compares equal
    return kind.__call__ is Colormap.__call__ and getattr(kind, "_get_rgba_and_mask", None) is getattr(
        Colormap, "_get_rgba_and_mask", None
    )


def reference_rgb(matrix: np.ndarray, norm: Normalization, cmap: Colormap) -> np.ndarray:
    """the reference algorithm itself: numpy normalisation, matplotlib colormap, uint8 truncation"""
    return (cmap(norm.apply(matrix))[:, :, :3] * 255).astype(np.uint8)


def _kernel_operands(matrix: np.ndarray, norm: Normalization, n: int):
    """(x, offset, denom, add, scale) for the kernels, or None when the kernel can't be exact"""
    if isinstance(matrix, np.ma.MaskedArray) or matrix.dtype.kind != "f":
        return None
    work = norm.result_dtype(matrix).newbyteorder("=")  # big-endian input computes the same values
    if work in _KERNEL_DTYPES:
        kind = work.type
        x = np.ascontiguousarray(matrix, dtype=work)
        if norm.identity:
            return x, kind(0), kind(1), kind(0), kind(n)
        # numpy casts the python/numpy scalars to the array's dtype before each operation; a missing
        # term becomes its exact identity (x - 0 == x and x + 0 == x up to the sign of zero, which
        # never changes a table row)
        offset = 0 if norm.offset is None else norm.offset
        add = 0 if norm.add is None else norm.add
        return x, kind(offset), kind(norm.denom), kind(add), kind(n)
    if work == np.float16 and n <= _FLOAT16_MAX_N:
        # the reference's float16 arithmetic, in numpy: normalise, then scale like matplotlib
        scaled = norm.apply(matrix) * n
        f32 = np.float32
        return scaled.astype(f32), f32(0), f32(1), f32(0), f32(1)
    return None


def _kernel_inputs(matrix: np.ndarray, norm: Normalization, cmap_obj: Colormap, cmap: str | Colormap):
    """(kernel operands, table), or None when only matplotlib itself reproduces the reference"""
    if not _has_standard_lookup(cmap_obj) or cmap_obj.N > _KERNEL_MAX_N:
        return None
    table = colormap_table(cmap)
    operands = _kernel_operands(matrix, norm, table.n)
    return None if operands is None else (operands, table)


def matrix_to_rgb(matrix: np.ndarray, norm: Normalization, cmap: str | Colormap) -> np.ndarray:
    """the reference's `(cmap(normalized)[:, :, :3] * 255).astype(uint8)`, via the kernel if it can"""
    cmap_obj = get_colormap(cmap)
    inputs = _kernel_inputs(matrix, norm, cmap_obj, cmap)
    if inputs is None:
        return reference_rgb(matrix, norm, cmap_obj)
    operands, table = inputs
    out = np.empty((*matrix.shape, 3), dtype=np.uint8)
    lut_rgb(*operands, table.n, table.rgb, out)
    return out


def matrix_to_lut_rows(
    matrix: np.ndarray, norm: Normalization, cmap: str | Colormap, out: np.ndarray | None = None
) -> tuple[np.ndarray, ColormapTable] | None:
    """each element's row in the colormap table (uint8 where every row fits, else uint16)

    `out`: a uint8 array of `matrix`'s shape that receives uint8 rows (and is returned), e.g. a
    PNG's `scanline_view` (defaults to `None`: a new array)

    # Returns:
     - `(rows, table)`, or `None` when the kernel can't reproduce the reference for this input
    """
    inputs = _kernel_inputs(matrix, norm, get_colormap(cmap), cmap)
    if inputs is None:
        return None
    operands, table = inputs
    # uint8 holds every row when n + 3 <= 256, and the colours alone when n <= 256: try that first,
    # since normalised attention patterns almost never hit under/over/bad
    if table.n <= 256:
        rows = np.empty(matrix.shape, dtype=np.uint8) if out is None else out
        n_special = lut_indices(*operands, table.n, rows)
        if table.n + 3 <= 256 or n_special == 0:
            return rows, table
    if table.n + 3 > _UINT16_ROWS:  # a colormap of more than 65533 colours: rows would wrap
        return None
    rows = np.empty(matrix.shape, dtype=np.uint16)
    lut_indices(*operands, table.n, rows)
    return rows, table
