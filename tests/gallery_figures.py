"""small figure functions for the gallery tests: one per format the page must show (png, svg, svgz)

Not registered (registering would add them to every other test's run): the tests pass them to
`figures_main` as a list. `raw` (png, Blues, normalised) is the package's own.
"""

import numpy as np

from pattern_lens.attn_figure_funcs import raw
from pattern_lens.figure_util import save_matrix_wrapper

__all__ = ["FIGURE_FUNCS", "sqrt_svg", "log_svgz"]


@save_matrix_wrapper(fmt="svg", normalize=True, cmap="viridis")
def sqrt_svg(attn):
    """square root of the pattern, as svg"""
    return np.sqrt(attn)


@save_matrix_wrapper(fmt="svgz", normalize=True, cmap="Blues")
def log_svgz(attn):
    """log of the pattern, as gzipped svg"""
    return np.log1p(attn * 100)


FIGURE_FUNCS = [raw, sqrt_svg, log_svgz]
