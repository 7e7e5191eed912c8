"""the reference pattern_lens export algorithm, as the baseline every speed-up is measured against

matplotlib colormapping of the numpy-normalised matrix, Pillow's RGB PNG, the SVG template, gzip at
level 9: what the reference `save_matrix_wrapper` does per head, without the numba kernel.
"""

import gzip

import numpy as np
from matplotlib.colors import Colormap

from pattern_lens import _colormap
from pattern_lens.figure_util import _svg_from_png, matrix2drgb_to_png_bytes

__all__ = ["reference_file_bytes"]


def reference_file_bytes(
    matrix: np.ndarray, fmt: str, normalize: bool = True, cmap: str | Colormap = "Blues"
) -> bytes:
    """the file the reference writes for `matrix` (png bytes, svg text, or svgz at gzip level 9)"""
    norm = _colormap.normalization(matrix, normalize)
    rgb = _colormap.reference_rgb(matrix, norm, _colormap.get_colormap(cmap))
    png = matrix2drgb_to_png_bytes(rgb)
    if fmt == "png":
        return png
    svg = _svg_from_png(png, matrix.shape).encode("utf-8")
    return svg if fmt == "svg" else gzip.compress(svg, compresslevel=9, mtime=0)
