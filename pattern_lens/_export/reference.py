"""the reference pattern_lens export algorithm, as the baseline every speed-up is measured against

matplotlib colormapping of the numpy-normalised matrix, Pillow's RGB PNG, the SVG template, gzip at
level 9: what the reference `save_matrix_wrapper` does per head, without the numba kernel.
"""

import gzip

import numpy as np
from matplotlib.colors import Colormap

from pattern_lens._export import colormap as _colormap
from pattern_lens._export.encode import SVGZ_LEVEL_EXACT, pillow_png, svg_from_png

__all__ = ["reference_file_bytes"]


def reference_file_bytes(
    matrix: np.ndarray, fmt: str, normalize: bool = True, cmap: str | Colormap = "Blues"
) -> bytes:
    """the file the reference writes for `matrix` (png bytes, svg text, or svgz at gzip level 9)"""
    norm = _colormap.normalization(matrix, normalize)
    rgb = _colormap.reference_rgb(matrix, norm, _colormap.get_colormap(cmap))
    png = pillow_png(rgb)
    if fmt == "png":
        return png
    svg = svg_from_png(png, matrix.shape).encode("utf-8")
    return svg if fmt == "svg" else gzip.compress(svg, compresslevel=SVGZ_LEVEL_EXACT, mtime=0)
