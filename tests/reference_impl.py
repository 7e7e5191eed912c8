"""the reference pattern_lens algorithms, written out plainly: the oracle of the differential tests

Slow and obvious on purpose: numpy array expressions, matplotlib's own `Colormap.__call__`, Pillow's
RGB PNG encoder, as the reference figure_util (v0.1.0 plus the newer `diverging_colormap` and
`normalize_min` options) does them. Nothing here imports pattern_lens.
"""

import base64
import io

import matplotlib
import numpy as np
from matplotlib.colors import Colormap
from PIL import Image

SVG_TEMPLATE = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="{m}" height="{n}" viewBox="0 0 {m} {n}" '
    'image-rendering="pixelated"> <image href="data:image/png;base64,{png_base64}" '
    'width="{m}" height="{n}" /> </svg>'
)


def preprocess(matrix, normalize=False, cmap="viridis", diverging_colormap=False, normalize_min=None):
    assert matrix.ndim == 2
    assert matrix.size > 0
    if normalize_min is not None:
        assert not diverging_colormap
        assert normalize
    if normalize and diverging_colormap:
        max_abs = max(abs(matrix.max()), abs(matrix.min()))
        normalized = (matrix / (2 * max_abs)) + 0.5
    elif normalize:
        max_val = matrix.max()
        if normalize_min is not None:
            min_val = normalize_min
            assert min_val < max_val
            # the reference's code asserts `min_val >= matrix.min()` while its message and docs say
            # "normalize_min must less than matrix min"; pattern_lens follows the documented intent
            # (the project spec: normalize_min <= min < max), so the oracle does too
            assert min_val <= matrix.min()
        else:
            min_val = matrix.min()
        normalized = (matrix - min_val) / (max_val - min_val)
    elif diverging_colormap:
        assert matrix.min() >= -1 and matrix.max() <= 1
        normalized = matrix
    else:
        assert matrix.min() >= 0 and matrix.max() <= 1
        normalized = matrix
    if isinstance(cmap, str):
        cmap = matplotlib.colormaps[cmap]
    elif not isinstance(cmap, Colormap):
        raise TypeError(cmap)
    return (cmap(normalized)[:, :, :3] * 255).astype(np.uint8)


def png_bytes(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def svg_text(matrix, **kwargs):
    m, n = matrix.shape
    png = png_bytes(preprocess(matrix, **kwargs))
    return SVG_TEMPLATE.format(m=m, n=n, png_base64=base64.b64encode(png).decode("utf-8"))


def file_content(matrix, fmt, **kwargs):
    """what the reference's `save_matrix_wrapper(fmt=fmt, **kwargs)` writes for `matrix`: PNG bytes,
    or the SVG text as bytes (for svgz: the content inside the gzip stream)"""
    if fmt == "png":
        return png_bytes(preprocess(matrix, **kwargs))
    return svg_text(matrix, **kwargs).encode("utf-8")


def colormap_rows(normalized, n):
    """the row of a colormap's (n + 3)-row table that matplotlib's `Colormap.__call__` picks for each
    float of `normalized`: 0..n-1 colours, n under, n + 1 over, n + 2 bad (its steps, in the array's
    own dtype)"""
    xa = np.array(normalized, copy=True)
    xa *= n
    xa[xa == n] = n - 1
    under, over, bad = xa < 0, xa >= n, np.isnan(xa)
    with np.errstate(invalid="ignore"):
        rows = xa.astype(np.int64)
    rows[under] = n
    rows[over] = n + 1
    rows[bad] = n + 2
    return rows
