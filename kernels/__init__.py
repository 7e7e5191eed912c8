"""numba kernels of pattern_lens, installed as `pattern_lens.kernels`

Pure functions: arrays in, arrays out, no I/O, no Python objects. Dtype dispatch, validation and
fallbacks live in the calling Python modules, never here.
"""

from .colormap import lut_indices, lut_rgb

__all__ = ["lut_indices", "lut_rgb"]
