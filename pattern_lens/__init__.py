"""pattern_lens: render every attention head of a transformer into PNG/SVG heatmaps, fast

A drop-in for the reference `pattern_lens` (same API, byte-identical files) with a numba colormap
kernel, an opt-in `fast` export profile, and a pipeline that uses every core.
"""

from pattern_lens.profile import export_profile

__all__ = ["export_profile"]
