"""loading the render path into a process: its imports and numba's compiled kernels, once

A process that renders (the run's own, a worker, the warm backend's forkserver) pays this once:
about 0.9 s of imports and 0.3 s for numba's first load of the cached kernels on this machine.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

__all__ = ["warm_worker"]


def warm_worker(profiles: Sequence[str], modules: Sequence[str]) -> None:
    """in a worker: import what tasks need and load the numba kernels once per export profile

    # Parameters:
     - `profiles : Sequence[str]` export profiles to warm (`"exact"`, `"fast"`)
     - `modules : Sequence[str]` modules to import too (the user's figure-function modules); one that
       fails to import is left for the task to report
    """
    import numpy as np

    import pattern_lens._engine.worker  # noqa: F401 (what every task imports)
    import pattern_lens.attn_figure_funcs  # noqa: F401 (the registry and the built-in figures)
    from pattern_lens._export.encode import matrix_file_bytes
    from pattern_lens._export.preview import preview_png
    from pattern_lens._summaries.stats import summarize_head
    from pattern_lens.profile import export_profile

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S110 (the task that needs it reports it properly)
            pass
    tiny = np.tril(np.full((4, 4), 0.25, dtype=np.float32))
    for profile in profiles:
        with export_profile(profile):
            matrix_file_bytes(tiny, "png", True, "viridis", False, None)
    if profiles:  # the head summaries' kernels and the preview's encoder (every render pass has them)
        preview_png(summarize_head(tiny, None).preview)
