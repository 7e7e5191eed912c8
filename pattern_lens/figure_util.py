"""types, defaults and decorators for figure functions (the reference `pattern_lens.figure_util` API)

Use the decorators `matplotlib_figure_saver`, `matplotlib_multifigure_saver` and `save_matrix_wrapper`
to make your functions save figures. Matrices are colour-mapped by a numba kernel that reproduces
matplotlib exactly (see `pattern_lens._export.colormap`), so the files are byte-identical to the reference's
(PNG bytes, SVG text, SVGZ after decompression); inputs the kernel does not cover take the reference's
own slow path. Every file is written atomically: a killed run never leaves a truncated image.
"""

from __future__ import annotations

import functools
import io
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, overload

import numpy as np
from jaxtyping import Float, UInt8
from matplotlib.colors import Colormap

from pattern_lens._export import colormap as _colormap
from pattern_lens._export.encode import SVG_TEMPLATE, matrix_file_bytes, pillow_png, svg_from_png
from pattern_lens._layout import FIGURE_NAMES_ATTR, figure_file_name, figure_name
from pattern_lens._output.atomic import atomic_path, atomic_write_bytes
from pattern_lens.consts import AttentionMatrix

__all__ = [
    "AttentionMatrixFigureFunc",
    "Matrix2D",
    "Matrix2Drgb",
    "AttentionMatrixToMatrixFunc",
    "MATPLOTLIB_FIGURE_FMT",
    "MatrixSaveFormat",
    "MATRIX_SAVE_NORMALIZE",
    "MATRIX_SAVE_CMAP",
    "MATRIX_SAVE_FMT",
    "MATRIX_SAVE_SVG_TEMPLATE",
    "matplotlib_figure_saver",
    "matplotlib_multifigure_saver",
    "matrix_to_image_preprocess",
    "matrix2drgb_to_png_bytes",
    "matrix_as_svg",
    "save_matrix_wrapper",
]

AttentionMatrixFigureFunc = Callable[[AttentionMatrix, Path], None]
"Type alias for a function that, given an attention matrix, saves one or more figures"

Matrix2D = Float[np.ndarray, "n m"]
"Type alias for a 2D matrix (plottable)"

Matrix2Drgb = UInt8[np.ndarray, "n m rgb=3"]
"Type alias for a 2D matrix with 3 channels (RGB)"

AttentionMatrixToMatrixFunc = Callable[[AttentionMatrix], Matrix2D]
"Type alias for a function that, given an attention matrix, returns a 2D matrix"

MATPLOTLIB_FIGURE_FMT: str = "svgz"
"format for saving matplotlib figures"

MatrixSaveFormat = Literal["png", "svg", "svgz"]
"Type alias for the format to save a matrix as when saving raw matrix, not matplotlib figure"

MATRIX_SAVE_NORMALIZE: bool = False
"default for whether to normalize the matrix to range [0, 1]"

MATRIX_SAVE_CMAP: str = "viridis"
"default colormap for saving matrices"

MATRIX_SAVE_FMT: MatrixSaveFormat = "svgz"
"default format for saving matrices"

MATRIX_SAVE_SVG_TEMPLATE: str = SVG_TEMPLATE
"template for saving an `n` by `m` matrix as an svg/svgz"

def _check_no_positional(args: tuple) -> None:
    assert len(args) == 0, (
        f"This decorator only supports keyword arguments, got {len(args)} extra positional "
        f"argument(s): {args!r}"
    )


class _LazyPyplot:
    """`matplotlib.pyplot`, imported on the first attribute access

    pyplot (with matplotlib.axes and matplotlib.figure) costs ~0.17 s to import, as much again as
    this whole module: workers that only save matrices never pay it. The annotations below still
    name `plt.Axes`, as the reference's do, and resolve (`typing.get_type_hints`, beartype,
    jaxtyping's import hook) because `plt` is a real global that imports pyplot when asked.
    """

    def __getattr__(self, name: str):
        if name.startswith("__"):  # pickle and copy probe dunders: not a reason to import pyplot
            raise AttributeError(name)
        import matplotlib.pyplot

        return getattr(matplotlib.pyplot, name)

    def __repr__(self) -> str:
        return "<matplotlib.pyplot, imported on first use>"


plt = _LazyPyplot()


def _save_figure(fig, fig_path: Path, fmt: str) -> None:
    """tight layout and save one matplotlib figure atomically (format named, not read off the path)"""
    fig.tight_layout()
    with atomic_path(fig_path) as tmp:
        fig.savefig(tmp, format=fmt)


@overload  # without keyword arguments, returns decorated function
def matplotlib_figure_saver(
    func: Callable[[AttentionMatrix, plt.Axes], None],
    *args,
    fmt: str = MATPLOTLIB_FIGURE_FMT,
) -> AttentionMatrixFigureFunc: ...
@overload  # with keyword arguments, returns decorator
def matplotlib_figure_saver(
    func: None = None,
    *args,
    fmt: str = MATPLOTLIB_FIGURE_FMT,
) -> Callable[[Callable[[AttentionMatrix, plt.Axes], None]], AttentionMatrixFigureFunc]: ...
def matplotlib_figure_saver(
    func: Callable[[AttentionMatrix, plt.Axes], None] | None = None,
    *args,
    fmt: str = MATPLOTLIB_FIGURE_FMT,
):
    """decorator for functions which take an attention matrix and predefined `ax` object, making it save a figure

    The wrapped function writes `save_dir / f"{func.__name__}.{fmt}"` (a 10x10 inch figure, tight
    layout) and always closes its figure, even when `func` raises.

    # Parameters:
     - `func : Callable[[AttentionMatrix, plt.Axes], None] | None`
       your function, which should take an attention matrix and predefined `ax` object; `None` when
       the decorator is called with keyword arguments
     - `fmt : str, keyword-only`
       format for saving matplotlib figures: any format matplotlib's `savefig` knows
       (`"svgz"`, `"svg"`, `"png"`, `"pdf"`, ...)
       (defaults to `MATPLOTLIB_FIGURE_FMT`, `"svgz"`)

    # Returns:
     - `AttentionMatrixFigureFunc`
       your function, after we wrap it to save a figure (with `figure_save_fmt` set), or the
       decorator that does so when `func` is `None`

    # Raises:
     - `AssertionError` for positional arguments other than `func`

    # Usage:
    ```python
    @register_attn_figure_func
    @matplotlib_figure_saver
    def raw(attn_matrix: AttentionMatrix, ax: plt.Axes) -> None:
        ax.matshow(attn_matrix, cmap="viridis")
        ax.set_title("Raw Attention Pattern")
        ax.axis("off")
    ```
    """
    _check_no_positional(args)

    def decorator(
        func: Callable[[AttentionMatrix, plt.Axes], None],
        fmt: str = fmt,
    ) -> AttentionMatrixFigureFunc:
        @functools.wraps(func)
        def wrapped(attn_matrix: AttentionMatrix, save_dir: Path) -> None:
            fig, ax = plt.subplots(figsize=(10, 10))
            try:
                func(attn_matrix, ax)
                _save_figure(fig, Path(save_dir) / figure_file_name(func.__name__, fmt), fmt)
            finally:
                plt.close(fig)

        wrapped.figure_save_fmt = fmt  # type: ignore[attr-defined]
        return wrapped

    return decorator(func) if callable(func) else decorator


def matplotlib_multifigure_saver(
    names: Sequence[str],
    fmt: str = MATPLOTLIB_FIGURE_FMT,
) -> Callable[
    [Callable[[AttentionMatrix, dict[str, plt.Axes]], None]], AttentionMatrixFigureFunc
]:
    """decorate a function such that it saves multiple figures, one for each name in `names`

    The decorated function receives the attention matrix and a dict of axes, one fresh 10x10 inch
    figure per name; the wrapper writes `save_dir / f"{func.__name__}.{name}.{fmt}"` for each and
    closes every figure, even when the function raises.

    # Parameters:
     - `names : Sequence[str]`
       the names of the figures to save (non-empty, unique)
     - `fmt : str`
       format for saving matplotlib figures
       (defaults to `MATPLOTLIB_FIGURE_FMT`, `"svgz"`)

    # Returns:
     - `Callable[[Callable[[AttentionMatrix, dict[str, plt.Axes]], None]], AttentionMatrixFigureFunc]`
       the decorator; the function it returns has `figure_save_fmt` set, and `_figure_names` set to
       `(f"{func.__name__}.{name}", ...)` as `register_attn_figure_multifunc` sets it, so that an
       unregistered function is resumed and indexed like a registered one

    # Usage:
    stacked under `@register_attn_figure_multifunc(names)` with the same names (see its docstring)
    """
    names = tuple(names)
    assert len(names) > 0, "matplotlib_multifigure_saver needs at least one figure name"
    assert len(set(names)) == len(names), f"figure names must be unique, got {names}"

    def decorator(
        func: Callable[[AttentionMatrix, dict[str, plt.Axes]], None],
    ) -> AttentionMatrixFigureFunc:
        @functools.wraps(func)
        def wrapped(attn_matrix: AttentionMatrix, save_dir: Path) -> None:
            figures: dict[str, plt.Figure] = {}
            try:
                axes: dict[str, plt.Axes] = {}
                for name in names:
                    figures[name], axes[name] = plt.subplots(figsize=(10, 10))
                func(attn_matrix, axes)
                for name, fig in figures.items():
                    _save_figure(fig, Path(save_dir) / figure_file_name(func.__name__, fmt, name), fmt)
            finally:
                for fig in figures.values():
                    plt.close(fig)

        wrapped.figure_save_fmt = fmt  # type: ignore[attr-defined]
        setattr(wrapped, FIGURE_NAMES_ATTR, tuple(figure_name(func.__name__, name) for name in names))
        return wrapped

    return decorator


def matrix_to_image_preprocess(
    matrix: Matrix2D,
    normalize: bool = MATRIX_SAVE_NORMALIZE,
    cmap: str | Colormap = MATRIX_SAVE_CMAP,
    diverging_colormap: bool = False,
    normalize_min: float | None = None,
) -> Matrix2Drgb:
    """preprocess a 2D matrix into a plottable heatmap image

    Equal, element for element, to the reference's `(cmap(normalized)[:, :, :3] * 255).astype(uint8)`,
    computed by a numba kernel for float16/32/64 matrices and by matplotlib itself otherwise.

    # Parameters:
     - `matrix : Matrix2D`
       input matrix: a non-empty 2D numpy array of numbers
     - `normalize : bool`
       whether to normalize the matrix to range [0, 1] (min -> 0, max -> 1)
       (defaults to `MATRIX_SAVE_NORMALIZE`, `False`)
     - `cmap : str|Colormap`
       the colormap to use for the matrix: a name in `matplotlib.colormaps` or a Colormap
       (defaults to `MATRIX_SAVE_CMAP`, `"viridis"`)
     - `diverging_colormap : bool`
       if True, 0 maps to the centre of the colormap: with `normalize`, `m / (2 * max|m|) + 0.5`;
       without it, values must lie in [-1, 1] and are passed as they are
       (defaults to `False`)
     - `normalize_min : float|None`
       with `normalize=True` and `diverging_colormap=False` only: the value mapped to 0 instead of the
       matrix minimum; must be less than the matrix max and at most the matrix min
       (defaults to `None`: the matrix minimum)

    # Returns:
     - `Matrix2Drgb`
       uint8 array of shape `(n, m, 3)`

    # Raises:
     - `AssertionError` for a non-2D or empty matrix, values outside [0, 1] (or [-1, 1] for
       diverging) without `normalize`, or an invalid `normalize_min`
     - `KeyError` for an unknown colormap name (with close names suggested)
     - `TypeError` for non-numeric input or a `cmap` that is neither str nor Colormap
    """
    norm = _colormap.normalization(matrix, normalize, diverging_colormap, normalize_min)
    return _colormap.matrix_to_rgb(matrix, norm, cmap)


@overload
def matrix2drgb_to_png_bytes(matrix: Matrix2Drgb, buffer: None = None) -> bytes: ...
@overload
def matrix2drgb_to_png_bytes(matrix: Matrix2Drgb, buffer: io.BytesIO) -> None: ...
def matrix2drgb_to_png_bytes(
    matrix: Matrix2Drgb, buffer: io.BytesIO | None = None
) -> bytes | None:
    """Convert a `Matrix2Drgb` to valid PNG bytes via PIL

    - if `buffer` is provided, it will write the PNG bytes to the buffer and return `None`
    - if `buffer` is not provided, it will return the PNG bytes

    # Parameters:
     - `matrix : Matrix2Drgb`
       uint8 array of shape `(n, m, 3)`
     - `buffer : io.BytesIO | None`
       (defaults to `None`, in which case it will return the PNG bytes)

    # Returns:
     - `bytes|None`
       `bytes` if `buffer` is `None`, otherwise `None`
    """
    png = pillow_png(matrix)
    if buffer is None:
        return png
    buffer.write(png)
    return None


def matrix_as_svg(
    matrix: Matrix2D,
    normalize: bool = MATRIX_SAVE_NORMALIZE,
    cmap: str | Colormap = MATRIX_SAVE_CMAP,
    diverging_colormap: bool = False,
    normalize_min: float | None = None,
) -> str:
    """quickly convert a 2D matrix to an SVG image, without matplotlib

    The SVG embeds the heatmap as a base64 PNG. As in the reference (and its tests), the SVG's
    `width` is the number of ROWS and `height` the number of COLUMNS: for a non-square matrix the
    image is stretched. Kept on purpose, for identical output.

    # Parameters:
     - `matrix : Float[np.ndarray, 'n m']`
       a 2D matrix to convert to an SVG image
     - `normalize : bool`
       whether to normalize the matrix to range [0, 1]. if it's not in the range [0, 1], this must
       be `True` or it will raise an `AssertionError`
       (defaults to `MATRIX_SAVE_NORMALIZE`, `False`)
     - `cmap : str|Colormap`
       the colormap to use for the matrix -- will look up in `matplotlib.colormaps` if it's a string
       (defaults to `MATRIX_SAVE_CMAP`, `"viridis"`)
     - `diverging_colormap : bool`
       see `matrix_to_image_preprocess` (defaults to `False`)
     - `normalize_min : float|None`
       see `matrix_to_image_preprocess` (defaults to `None`)

    # Returns:
     - `str`
       the SVG content for the matrix

    # Raises:
     - as `matrix_to_image_preprocess`; a non-2D matrix fails its 2D assertion
    """
    rgb = matrix_to_image_preprocess(
        matrix,
        normalize=normalize,
        cmap=cmap,
        diverging_colormap=diverging_colormap,
        normalize_min=normalize_min,
    )
    return svg_from_png(matrix2drgb_to_png_bytes(rgb), matrix.shape)


@overload  # with keyword arguments, returns decorator
def save_matrix_wrapper(
    func: None = None,
    *args,
    fmt: MatrixSaveFormat = MATRIX_SAVE_FMT,
    normalize: bool = MATRIX_SAVE_NORMALIZE,
    cmap: str | Colormap = MATRIX_SAVE_CMAP,
    diverging_colormap: bool = False,
    normalize_min: float | None = None,
) -> Callable[[AttentionMatrixToMatrixFunc], AttentionMatrixFigureFunc]: ...
@overload  # without keyword arguments, returns decorated function
def save_matrix_wrapper(
    func: AttentionMatrixToMatrixFunc,
    *args,
    fmt: MatrixSaveFormat = MATRIX_SAVE_FMT,
    normalize: bool = MATRIX_SAVE_NORMALIZE,
    cmap: str | Colormap = MATRIX_SAVE_CMAP,
    diverging_colormap: bool = False,
    normalize_min: float | None = None,
) -> AttentionMatrixFigureFunc: ...
def save_matrix_wrapper(
    func: AttentionMatrixToMatrixFunc | None = None,
    *args,
    fmt: MatrixSaveFormat = MATRIX_SAVE_FMT,
    normalize: bool = MATRIX_SAVE_NORMALIZE,
    cmap: str | Colormap = MATRIX_SAVE_CMAP,
    diverging_colormap: bool = False,
    normalize_min: float | None = None,
):
    """Decorator for functions that process an attention matrix and save it as an image.

    Can handle both argumentless usage and with arguments. The wrapped function writes
    `save_dir / f"{func.__name__}.{fmt}"` atomically.

    # Parameters:
     - `func : AttentionMatrixToMatrixFunc|None`
       Either the function to decorate (in the no-arguments case) or `None` when used with arguments.
     - `fmt : MatrixSaveFormat, keyword-only`
       The format to save the matrix as: `"png"`, `"svg"` or `"svgz"` (gzipped svg).
       (defaults to `MATRIX_SAVE_FMT`, `"svgz"`)
     - `normalize : bool, keyword-only`
       Whether to normalize the matrix to range [0, 1]. (defaults to `MATRIX_SAVE_NORMALIZE`, `False`)
     - `cmap : str|Colormap, keyword-only`
       The colormap to use for the matrix. (defaults to `MATRIX_SAVE_CMAP`, `"viridis"`)
     - `diverging_colormap : bool, keyword-only`
       see `matrix_to_image_preprocess` (defaults to `False`)
     - `normalize_min : float|None, keyword-only`
       see `matrix_to_image_preprocess` (defaults to `None`)

    # Returns:

    `AttentionMatrixFigureFunc|Callable[[AttentionMatrixToMatrixFunc], AttentionMatrixFigureFunc]`

    - `AttentionMatrixFigureFunc` if `func` is `AttentionMatrixToMatrixFunc` (no arguments case);
      it keeps `func`'s `__name__` and has `figure_save_fmt` set to `fmt`
    - `Callable[[AttentionMatrixToMatrixFunc], AttentionMatrixFigureFunc]` if `func` is `None` --
      returns the decorator which will then be applied to the function (with arguments case)

    # Raises:
     - `AssertionError` for extra positional arguments or an unknown `fmt`

    # Usage:

    ```python
    @save_matrix_wrapper
    def identity_matrix(matrix):
        return matrix

    @save_matrix_wrapper(normalize=True, fmt="png")
    def scale_matrix(matrix):
        return matrix * 2

    @save_matrix_wrapper(normalize=True, cmap="plasma")
    def scale_matrix(matrix):
        return matrix * 2
    ```
    """
    _check_no_positional(args)
    formats = typing.get_args(MatrixSaveFormat)
    assert fmt in formats, f"Invalid format fmt={fmt!r}, must be one of {formats}"

    def decorator(func: AttentionMatrixToMatrixFunc) -> AttentionMatrixFigureFunc:
        @functools.wraps(func)
        def wrapped(attn_matrix: AttentionMatrix, save_dir: Path) -> None:
            data = matrix_file_bytes(
                func(attn_matrix), fmt, normalize, cmap, diverging_colormap, normalize_min
            )
            atomic_write_bytes(Path(save_dir) / figure_file_name(func.__name__, fmt), data)

        wrapped.figure_save_fmt = fmt  # type: ignore[attr-defined]
        return wrapped

    return decorator(func) if callable(func) else decorator
