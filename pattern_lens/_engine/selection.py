"""choosing the figure functions a run executes, from a registry given by the caller

The public `pattern_lens.figures.select_attn_figure_funcs` passes its module's registry (which the
reference's tests patch); `run` passes `pattern_lens.attn_figure_funcs`'s.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence

from pattern_lens._errors import PatternLensError
from pattern_lens._output.outputs import figure_func_name

__all__ = ["select_figure_funcs"]


def select_figure_funcs(figure_funcs_select: object, registered: Sequence[Callable]) -> list[Callable]:
    """the functions of `registered` that `figure_funcs_select` names, in registration order; see
    `pattern_lens.figures.select_attn_figure_funcs` for the selectors and errors"""
    registered = list(registered)
    if isinstance(figure_funcs_select, (list, tuple)) and all(callable(f) for f in figure_funcs_select):
        if not figure_funcs_select:
            raise PatternLensError("no figure functions given")
        return list(figure_funcs_select)
    names = [figure_func_name(f) for f in registered]
    if figure_funcs_select is None:
        chosen = registered
    elif isinstance(figure_funcs_select, str):
        pattern = re.compile(fnmatch.translate(figure_funcs_select))
        chosen = [f for f, n in zip(registered, names) if pattern.match(n)]
    elif isinstance(figure_funcs_select, (set, frozenset, list, tuple)):
        wanted = {str(x) for x in figure_funcs_select}
        unknown = sorted(wanted - set(names))
        if unknown:
            raise PatternLensError(f"unknown figure functions {unknown}; registered: {names}")
        chosen = [f for f, n in zip(registered, names) if n in wanted]
    else:
        raise TypeError(
            f"figure_funcs_select must be None, a glob str, a set of names or a list of functions, "
            f"not {type(figure_funcs_select).__name__}"
        )
    if not chosen:
        raise PatternLensError(f"no figure function matches {figure_funcs_select!r}; registered: {names}")
    return chosen
