"""the reference pattern_lens export algorithm, as the baseline every speed-up is measured against

What the reference `save_matrix_wrapper` does per head, written out plainly and independent of the
production path: the min-max normalisation as the reference's numpy expressions, matplotlib's own
`Colormap.__call__`, Pillow's RGB PNG, the SVG template, gzip at level 9. The benchmark times it as
the "reference" method and checks the exact and fast profiles against it, so it shares no code with
them (`pattern_lens._export.colormap`, `encode`): a bug there makes the benchmark's check fail. Only
the SVG template string is shared (its text is checked against the reference's files by the parity
tests).
"""

import base64
import gzip
import io

import matplotlib
import numpy as np
from matplotlib.colors import Colormap
from PIL import Image

from pattern_lens._export.encode import SVG_TEMPLATE

__all__ = ["reference_rgb", "reference_file_bytes", "decoded_rgb"]


def reference_rgb(matrix: np.ndarray, normalize: bool = True, cmap: str | Colormap = "Blues") -> np.ndarray:
    """the reference's `matrix_to_image_preprocess(matrix, normalize, cmap)`: `(n, m, 3)` uint8"""
    if normalize:
        max_val, min_val = matrix.max(), matrix.min()
        normalized = (matrix - min_val) / (max_val - min_val)
    else:
        assert matrix.min() >= 0 and matrix.max() <= 1, "values must be in [0, 1] without normalize"
        normalized = matrix
    colormap = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    return (colormap(normalized)[:, :, :3] * 255).astype(np.uint8)


def reference_file_bytes(
    matrix: np.ndarray, fmt: str, normalize: bool = True, cmap: str | Colormap = "Blues"
) -> bytes:
    """the file the reference writes for `matrix` (png bytes, svg text, or svgz at gzip level 9)"""
    buffer = io.BytesIO()
    Image.fromarray(reference_rgb(matrix, normalize, cmap)).save(buffer, format="PNG")
    png = buffer.getvalue()
    if fmt == "png":
        return png
    rows, cols = matrix.shape  # the reference's template takes width = rows, height = columns
    svg = SVG_TEMPLATE.format(m=rows, n=cols, png_base64=base64.b64encode(png).decode("utf-8")).encode("utf-8")
    return svg if fmt == "svg" else gzip.compress(svg, compresslevel=9, mtime=0)


def decoded_rgb(data: bytes, fmt: str) -> np.ndarray:
    """the `(n, m, 3)` uint8 pixels a png / svg / svgz file shows (the PNG embedded in an SVG), via Pillow

    For comparing files that must show the same pixels in different bytes (the fast profile). The PNG
    is verified first (chunk CRCs, a complete stream): a file a viewer would reject does not compare equal.
    """
    if fmt == "svgz":
        data = gzip.decompress(data)
    if fmt in ("svg", "svgz"):
        data = base64.b64decode(data.split(b"base64,", 1)[1].split(b'"', 1)[0])
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))
