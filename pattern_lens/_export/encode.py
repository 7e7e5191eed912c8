"""matrix -> the bytes of its file in the active export profile: one home for every output format

exact: the reference's PNG bytes (Pillow, RGB), SVG text (the PNG as base64 in a fixed template) and
SVGZ content (gzip level 9, as `gzip.open`'s default); fast: an indexed PNG with the same decoded
pixels (`fast_png`), embedded the same way in svg/svgz, and a faster gzip for svgz.
"""

import base64
import gzip
import io

import numpy as np
from matplotlib.colors import Colormap
from PIL import Image

from pattern_lens._export import colormap as _colormap
from pattern_lens._export.fast_png import fast_png
from pattern_lens._export.png_fast import gzip_bytes
from pattern_lens.profile import export_profile

__all__ = ["SVG_TEMPLATE", "SVGZ_LEVEL_EXACT", "pillow_png", "svg_from_png", "matrix_file_bytes"]

SVG_TEMPLATE: str = """<svg xmlns="http://www.w3.org/2000/svg" width="{m}" height="{n}" viewBox="0 0 {m} {n}" image-rendering="pixelated"> <image href="data:image/png;base64,{png_base64}" width="{m}" height="{n}" /> </svg>"""
"the reference's template for an `n` by `m` matrix as svg/svgz (`figure_util.MATRIX_SAVE_SVG_TEMPLATE`)"

SVGZ_LEVEL_EXACT: int = 9
"gzip level of exact-profile svgz files: the reference's (`gzip.open` default)"


def pillow_png(rgb: np.ndarray) -> bytes:
    """the reference's PNG of an `(n, m, 3)` uint8 image: Pillow's encoder with its defaults

    # Raises:
     - `ValueError` naming the dtype and shape when `rgb` is not an RGB image
    """
    # an (n, m, 3) uint8 array is an "RGB" image; naming the mode is deprecated in Pillow >= 11.3
    img: Image.Image = Image.fromarray(np.asarray(rgb))
    if img.mode != "RGB":
        raise ValueError(f"matrix must be a uint8 array of shape (n, m, 3), got {rgb.dtype} {rgb.shape}")
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def svg_from_png(png: bytes, shape: tuple[int, int]) -> str:
    """the reference's SVG embedding `png` for a matrix of `shape`"""
    # the reference writes width = number of rows and height = number of columns: kept on purpose
    m, n = shape
    return SVG_TEMPLATE.format(m=m, n=n, png_base64=base64.b64encode(png).decode())


def matrix_file_bytes(
    matrix: np.ndarray,
    fmt: str,
    normalize: bool,
    cmap: str | Colormap,
    diverging_colormap: bool = False,
    normalize_min: float | None = None,
) -> bytes:
    """the content of the file `save_matrix_wrapper` writes for `matrix` in the active profile

    # Parameters:
     - `matrix : np.ndarray` the 2D matrix the figure function returned
     - `fmt : str` `"png"`, `"svg"` or `"svgz"`
     - `normalize`, `cmap`, `diverging_colormap`, `normalize_min`: see
       `figure_util.matrix_to_image_preprocess`

    # Returns:
     - `bytes` the file's content
    """
    norm = _colormap.normalization(matrix, normalize, diverging_colormap, normalize_min)
    fast = export_profile() == "fast"
    if fast:
        png = fast_png(matrix, norm, cmap)
    else:
        png = pillow_png(_colormap.matrix_to_rgb(matrix, norm, cmap))
    if fmt == "png":
        return png
    svg = svg_from_png(png, matrix.shape).encode("utf-8")
    if fmt == "svg":
        return svg
    return gzip_bytes(svg) if fast else gzip.compress(svg, compresslevel=SVGZ_LEVEL_EXACT, mtime=0)
