"""numba kernels of pattern_lens, installed as `pattern_lens.kernels`

Pure functions: arrays in, arrays out, no I/O, no Python objects. Dtype dispatch, validation and
fallbacks live in the calling Python modules, never here.
"""

from .colormap import lut_indices, lut_rgb
from .head_stats import HEAD_STAT_NAMES, head_summary, strict_upper_nonzero

__all__ = ["lut_indices", "lut_rgb", "HEAD_STAT_NAMES", "head_summary", "strict_upper_nonzero"]
