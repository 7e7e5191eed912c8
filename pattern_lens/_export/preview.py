"""a head's preview matrix -> PNG bytes: coloured like the default `raw` figure, with the fast encoder

The preview (block averages, `pattern_lens._summaries.stats`) is min-max normalised and looked up in
the colormap's table exactly as `save_matrix_wrapper(normalize=True)` does for a full figure, then
written as an indexed PNG (`fast_png`). A preview of a pattern with `n_ctx <= S` is the pattern
itself, so its PNG decodes to the same pixels as the `raw` figure's. A text chunk may ride along
(`png_fast.with_text`): the head summaries put the head's statistics there.
"""

import numpy as np
from matplotlib.colors import Colormap

from pattern_lens._export import colormap as _colormap
from pattern_lens._export.fast_png import fast_png
from pattern_lens._export.png_fast import with_text

__all__ = ["PREVIEW_CMAP", "preview_png"]

PREVIEW_CMAP: str = "Blues"
"the default preview colormap: the default `raw` figure's"


def preview_png(
    preview: np.ndarray,
    cmap: str | Colormap = PREVIEW_CMAP,
    text: tuple[str, str] | None = None,
    clip_first_block: bool = False,
) -> bytes:
    """PNG bytes of a preview matrix, min-max normalised and coloured with `cmap`

    # Parameters:
     - `preview : np.ndarray` 2D float matrix
     - `cmap : str | Colormap` (defaults to `PREVIEW_CMAP`, `"Blues"`)
     - `text : tuple[str, str] | None` `(keyword, text)` of a `tEXt` chunk to add (defaults to `None`: none)
     - `clip_first_block : bool` colour block `(0, 0)` as at most the largest other block: in a
       causal preview of a longer pattern it averages the few positions the first rows see (row 0
       puts all its mass on one), about twice any other block, and would dim the whole picture
       (defaults to `False`)

    # Returns:
     - `bytes` an indexed PNG (RGB where the colours do not fit a palette)
    """
    if clip_first_block and preview.size > 1:
        others = np.concatenate((preview[0, 1:], preview[1:].ravel()))
        preview = preview.copy()
        preview[0, 0] = min(preview[0, 0], others.max())
    png = fast_png(preview, _colormap.normalization(preview, normalize=True), cmap)
    return png if text is None else with_text(png, *text)
