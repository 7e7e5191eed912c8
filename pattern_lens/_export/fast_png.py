"""the `"fast"` export profile's PNG: the exact profile's pixels as an indexed PNG

The kernel writes each element's row in the colormap table; whenever the rows in play fit a palette
of at most 256 colours (always for N <= 253, and for N <= 256 unless NaN/under/over occur), the
palette is those table rows and the PNG is encoded from the row indices directly, one byte per
pixel. Otherwise the rows are compacted to the colours actually used, and only above 256 of them
does it fall back to an RGB PNG (with the fast encoder). Inputs the kernel does not cover take the
reference's colormapping, then the fast RGB encoder. Decoded RGB equals the exact profile's in
every case.
"""

import numpy as np
from matplotlib.colors import Colormap

from pattern_lens._export import colormap as _colormap
from pattern_lens._export.png_fast import encode_indexed_png, encode_rgb_png, scanline_view

__all__ = ["fast_png"]

_PALETTE_MAX = 256


def _compact(rows: np.ndarray, rgb: np.ndarray) -> bytes:
    """encode rows of an (n + 3)-row table using only the colours that occur"""
    counts = np.bincount(rows.ravel(), minlength=len(rgb))
    used = np.flatnonzero(counts)
    if len(used) > _PALETTE_MAX:
        return encode_rgb_png(rgb[rows])
    remap = np.zeros(len(rgb), dtype=np.uint8)
    remap[used] = np.arange(len(used), dtype=np.uint8)
    return encode_indexed_png(remap[rows], rgb[used])


def fast_png(matrix: np.ndarray, norm: _colormap.Normalization, cmap: str | Colormap) -> bytes:
    """PNG bytes of `matrix` under `norm` and `cmap`, decoding to the exact profile's RGB pixels"""
    # uint8 rows go straight into the PNG's scanline buffer: the encoder deflates it without a copy
    result = _colormap.matrix_to_lut_rows(matrix, norm, cmap, out=scanline_view(*matrix.shape))
    if result is None:
        return encode_rgb_png(_colormap.reference_rgb(matrix, norm, _colormap.get_colormap(cmap)))
    rows, table = result
    if rows.dtype == np.uint8:
        # uint8 rows are exact: either every table row fits (n + 3 <= 256) or none is a special row
        return encode_indexed_png(rows, table.rgb[: min(len(table.rgb), _PALETTE_MAX)])
    return _compact(rows, table.rgb)
