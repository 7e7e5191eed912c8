"""the registry of figure functions run on every attention head, and the default figure `raw`

Register your own with `@register_attn_figure_func` (one figure) or
`@register_attn_figure_multifunc(names)` stacked on `@matplotlib_multifigure_saver(names)` (several).
To run in a parallel pipeline, a figure function must be importable by worker processes: define it at
the top level of a module (not in `__main__`, a notebook cell or a closure) and import that module
before calling the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pattern_lens._layout import FIGURE_NAMES_ATTR, READS_ONLY_ATTR, figure_name, figure_names
from pattern_lens.consts import AttentionMatrix
from pattern_lens.figure_util import AttentionMatrixFigureFunc, Matrix2D, save_matrix_wrapper

__all__ = [
    "ATTENTION_MATRIX_FIGURE_FUNCS",
    "register_attn_figure_func",
    "register_attn_figure_multifunc",
    "get_all_figure_names",
    "raw",
]

_FIGURE_NAMES_KEY: str = FIGURE_NAMES_ATTR
"the attribute holding a registered function's figure names (the reference's private name)"

ATTENTION_MATRIX_FIGURE_FUNCS: list[AttentionMatrixFigureFunc] = []
"every registered figure function, in registration order"


def register_attn_figure_func(func: AttentionMatrixFigureFunc) -> AttentionMatrixFigureFunc:
    """decorator registering a function that saves one figure of an attention matrix

    # Parameters:
     - `func : AttentionMatrixFigureFunc`
       takes `(attn_matrix, save_dir)` and writes `save_dir / f"{func.__name__}.{fmt}"`; usually made
       with `save_matrix_wrapper` or `matplotlib_figure_saver`

    # Returns:
     - `AttentionMatrixFigureFunc`
       `func` itself, now in `ATTENTION_MATRIX_FIGURE_FUNCS`, with `_figure_names` set to
       `(func.__name__,)` like the reference (kept when `func` already names its figures, e.g. made by
       `matplotlib_multifigure_saver`, so that its outputs are still found on resume)
    """
    if not getattr(func, FIGURE_NAMES_ATTR, None):
        setattr(func, FIGURE_NAMES_ATTR, (func.__name__,))
    ATTENTION_MATRIX_FIGURE_FUNCS.append(func)
    return func


def register_attn_figure_multifunc(
    names: Sequence[str],
) -> Callable[[AttentionMatrixFigureFunc], AttentionMatrixFigureFunc]:
    """decorator registering a function that saves several figures, one per name

    It only registers: stack it on `@matplotlib_multifigure_saver(names)` (or on your own function
    that writes `save_dir / f"{func.__name__}.{name}.{fmt}"` for each name).

    # Parameters:
     - `names : Sequence[str]`
       the figure names

    # Returns:
     - `Callable[[AttentionMatrixFigureFunc], AttentionMatrixFigureFunc]`
       the decorator: it sets `func._figure_names = (f"{func.__name__}.{name}", ...)`, appends `func`
       to `ATTENTION_MATRIX_FIGURE_FUNCS` and returns `func` itself

    # Usage:
    ```python
    @register_attn_figure_multifunc(["hist", "heatmap"])
    @matplotlib_multifigure_saver(["hist", "heatmap"])
    def stats(attn_matrix: AttentionMatrix, axes: dict[str, plt.Axes]) -> None:
        axes["hist"].hist(attn_matrix.flatten(), bins=30)
        axes["heatmap"].matshow(attn_matrix, cmap="viridis")
    ```
    """
    names = tuple(names)

    def decorator(func: AttentionMatrixFigureFunc) -> AttentionMatrixFigureFunc:
        setattr(func, FIGURE_NAMES_ATTR, tuple(figure_name(func.__name__, name) for name in names))
        ATTENTION_MATRIX_FIGURE_FUNCS.append(func)
        return func

    return decorator


def get_all_figure_names() -> list[str]:
    """the names of every figure the registered functions save

    # Returns:
     - `list[str]`
       each function's `_figure_names` (`func.__name__`, or `f"{func.__name__}.{name}"` for each
       name of a multi-figure function), in registration order
    """
    return [name for func in ATTENTION_MATRIX_FIGURE_FUNCS for name in figure_names(func)]


@register_attn_figure_func
@save_matrix_wrapper(fmt="png", normalize=True, cmap="Blues")
def raw(attn_matrix: AttentionMatrix) -> Matrix2D:
    """the raw attention pattern, min-max normalised, in matplotlib's "Blues" """
    return attn_matrix


setattr(raw, READS_ONLY_ATTR, True)  # the summaries' pass may come first and share its min and max
