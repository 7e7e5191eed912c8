"""the registry of figure functions run on every attention head, and the default figure `raw`

Register your own with `@register_attn_figure_func` (one figure) or
`@register_attn_figure_multifunc(names)` (several). To run in a parallel pipeline, a figure function
must be importable by worker processes: define it at the top level of a module (not in `__main__`,
a notebook cell or a closure) and import that module before calling the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pattern_lens.consts import AttentionMatrix
from pattern_lens.figure_util import (
    AttentionMatrixFigureFunc,
    Matrix2D,
    matplotlib_multifigure_saver,
    save_matrix_wrapper,
)

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

__all__ = [
    "ATTENTION_MATRIX_FIGURE_FUNCS",
    "register_attn_figure_func",
    "register_attn_figure_multifunc",
    "get_all_figure_names",
    "raw",
]

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
       `func` itself, now in `ATTENTION_MATRIX_FIGURE_FUNCS`
    """
    ATTENTION_MATRIX_FIGURE_FUNCS.append(func)
    return func


def register_attn_figure_multifunc(
    names: Sequence[str],
) -> Callable[[Callable[[AttentionMatrix, dict[str, plt.Axes]], None]], AttentionMatrixFigureFunc]:
    """decorator registering a function that saves several matplotlib figures, one per name

    # Parameters:
     - `names : Sequence[str]`
       the figure names; the files are `{func.__name__}.{name}.{fmt}`

    # Returns:
     - the decorator: it wraps the function with `matplotlib_multifigure_saver(names)` and registers it
    """

    def decorator(func: Callable[[AttentionMatrix, dict[str, plt.Axes]], None]):
        return register_attn_figure_func(matplotlib_multifigure_saver(names)(func))

    return decorator


def get_all_figure_names() -> list[str]:
    """the names of every figure the registered functions save

    # Returns:
     - `list[str]`
       `func.__name__` for single-figure functions, `f"{func.__name__}.{name}"` for each name of a
       multi-figure function, in registration order
    """
    names: list[str] = []
    for func in ATTENTION_MATRIX_FIGURE_FUNCS:
        multi = getattr(func, "_figure_names", None)
        if multi is None:
            names.append(func.__name__)
        else:
            names.extend(f"{func.__name__}.{name}" for name in multi)
    return names


@register_attn_figure_func
@save_matrix_wrapper(fmt="png", normalize=True, cmap="Blues")
def raw(attn_matrix: AttentionMatrix) -> Matrix2D:
    """the raw attention pattern, min-max normalised, in matplotlib's "Blues" """
    return attn_matrix
