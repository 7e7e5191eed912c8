"""the public figure_util API: signatures, decorator forms, file contents and errors, vs the reference"""

import gzip
import inspect
import io

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

import reference_impl as ref
from pattern_lens import figure_util as fu
from pattern_lens.attn_figure_funcs import (
    ATTENTION_MATRIX_FIGURE_FUNCS,
    get_all_figure_names,
    raw,
    register_attn_figure_func,
    register_attn_figure_multifunc,
)

RNG = np.random.default_rng(0)
CAUSAL = np.tril(RNG.random((40, 40), dtype=np.float32))
CAUSAL /= CAUSAL.sum(axis=1, keepdims=True)
RECT = RNG.random((7, 13))


def test_defaults_and_signatures():
    assert fu.MATPLOTLIB_FIGURE_FMT == "svgz"
    assert fu.MATRIX_SAVE_NORMALIZE is False
    assert fu.MATRIX_SAVE_CMAP == "viridis"
    assert fu.MATRIX_SAVE_FMT == "svgz"
    assert fu.MatrixSaveFormat.__args__ == ("png", "svg", "svgz")
    assert fu.MATRIX_SAVE_SVG_TEMPLATE == ref.SVG_TEMPLATE
    params = inspect.signature(fu.save_matrix_wrapper).parameters
    assert list(params) == ["func", "args", "fmt", "normalize", "cmap", "diverging_colormap", "normalize_min"]
    assert [params[k].default for k in ("fmt", "normalize", "cmap")] == ["svgz", False, "viridis"]
    assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in list(params)[2:])
    pre = inspect.signature(fu.matrix_to_image_preprocess).parameters
    assert list(pre) == ["matrix", "normalize", "cmap", "diverging_colormap", "normalize_min"]
    svg = inspect.signature(fu.matrix_as_svg).parameters
    assert list(svg) == ["matrix", "normalize", "cmap", "diverging_colormap", "normalize_min"]


@pytest.mark.parametrize("matrix", [CAUSAL, RECT], ids=["square", "rect"])
@pytest.mark.parametrize("cmap", ["viridis", "Blues", matplotlib.colormaps["magma"].resampled(31)])
def test_png_and_svg_match_reference(matrix, cmap):
    rgb = fu.matrix_to_image_preprocess(matrix, normalize=True, cmap=cmap)
    expected_rgb = ref.preprocess(matrix, normalize=True, cmap=cmap)
    assert np.array_equal(rgb, expected_rgb)
    assert fu.matrix2drgb_to_png_bytes(rgb) == ref.png_bytes(expected_rgb)
    buffer = io.BytesIO()
    assert fu.matrix2drgb_to_png_bytes(rgb, buffer) is None
    assert buffer.getvalue() == ref.png_bytes(expected_rgb)
    assert fu.matrix_as_svg(matrix, normalize=True, cmap=cmap) == ref.svg_text(matrix, normalize=True, cmap=cmap)


def test_svg_width_is_rows_height_is_columns():
    """the reference's quirk, kept: width = number of rows"""
    svg = fu.matrix_as_svg(RECT, normalize=True)
    assert 'width="7" height="13" viewBox="0 0 7 13"' in svg


def test_save_matrix_wrapper_bare_form_uses_defaults(tmp_path):
    @fu.save_matrix_wrapper
    def identity(matrix):
        return matrix

    assert identity.figure_save_fmt == "svgz"
    identity(CAUSAL, tmp_path)
    text = gzip.decompress((tmp_path / "identity.svgz").read_bytes()).decode()
    assert text == ref.svg_text(CAUSAL)


def test_decorator_argument_errors():
    with pytest.raises(AssertionError, match="keyword arguments"):
        fu.save_matrix_wrapper(None, "png")
    with pytest.raises(AssertionError, match="Invalid format"):
        fu.save_matrix_wrapper(fmt="jpg")
    with pytest.raises(AssertionError, match="keyword arguments"):
        fu.matplotlib_figure_saver(None, "png")


@pytest.mark.parametrize("func", [fu.matrix_to_image_preprocess, fu.matrix_as_svg])
def test_bad_input_errors(func):
    with pytest.raises(AssertionError, match="Matrix must be 2D, got 3D"):
        func(np.zeros((2, 2, 2)))
    with pytest.raises(AssertionError, match="Matrix must be 2D, got 1D"):
        func(np.zeros(4))
    with pytest.raises(AssertionError, match="Matrix cannot be empty"):
        func(np.zeros((0, 3)))
    with pytest.raises(AssertionError) as info:
        func(np.array([[0.0, 2.5], [-0.5, 1.0]]))
    assert str(info.value).startswith(
        "Matrix values must be in range [0, 1], or normalize must be True. got: min: -0.5, max: 2.5"
    )
    with pytest.raises(KeyError, match="'viridiss' is not a known colormap name.*viridis"):
        func(np.eye(3), cmap="viridiss")
    with pytest.raises(TypeError, match="must be str or Colormap"):
        func(np.eye(3), cmap=3)
    with pytest.raises(TypeError, match="must hold numbers"):
        func(np.array([["a", "b"]]), normalize=True)
    with pytest.raises(TypeError, match="numpy array"):
        func([[0.1, 0.2]])
    with pytest.raises(AssertionError, match="normalize_min cannot be used with normalize=False"):
        func(np.eye(3), normalize_min=0.0)
    with pytest.raises(AssertionError, match="diverging_colormap"):
        func(np.eye(3), normalize=True, diverging_colormap=True, normalize_min=0.0)
    with pytest.raises(AssertionError, match="normalize_min must be at most the matrix min"):
        func(np.eye(3) + 1, normalize=True, normalize_min=1.5)
    with pytest.raises(AssertionError, match="range \\[-1, 1\\]"):
        func(np.eye(3) * 2, diverging_colormap=True)


def test_matplotlib_figure_saver(tmp_path):
    @fu.matplotlib_figure_saver(fmt="png")
    def heat(matrix, ax):
        ax.matshow(matrix)

    open_before = plt.get_fignums()
    heat(CAUSAL, tmp_path)
    assert heat.__name__ == "heat" and heat.figure_save_fmt == "png"
    with Image.open(tmp_path / "heat.png") as img:
        assert img.size == (1000, 1000)  # 10x10 inches at 100 dpi
    assert plt.get_fignums() == open_before

    @fu.matplotlib_figure_saver
    def broken(matrix, ax):
        raise RuntimeError("boom")

    assert broken.figure_save_fmt == "svgz"
    with pytest.raises(RuntimeError, match="boom"):
        broken(CAUSAL, tmp_path)
    assert plt.get_fignums() == open_before, "figure leaked when the function raised"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.png"]


def test_matplotlib_multifigure_saver(tmp_path):
    @fu.matplotlib_multifigure_saver(names=["a", "b"], fmt="svg")
    def pair(matrix, axes):
        axes["a"].matshow(matrix)
        axes["b"].plot(matrix.sum(axis=0))

    open_before = plt.get_fignums()
    pair(CAUSAL, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair.a.svg", "pair.b.svg"]
    assert (tmp_path / "pair.a.svg").read_text().lstrip().startswith("<?xml")
    assert pair.figure_save_fmt == "svg" and pair._figure_names == ("pair.a", "pair.b")

    @fu.matplotlib_multifigure_saver(names=["x", "y", "z"])
    def failing(matrix, axes):
        raise ValueError("no")

    with pytest.raises(ValueError):
        failing(CAUSAL, tmp_path)
    assert plt.get_fignums() == open_before, "figures leaked when the function raised"


def test_registry_and_raw(tmp_path):
    assert raw in ATTENTION_MATRIX_FIGURE_FUNCS
    assert raw.figure_save_fmt == "png"
    n_before = len(ATTENTION_MATRIX_FIGURE_FUNCS)
    try:

        @register_attn_figure_multifunc(["left", "right"])
        def halves(matrix, axes):
            pass

        @register_attn_figure_func
        @fu.save_matrix_wrapper(fmt="svg")
        def single(matrix):
            return matrix

        names = get_all_figure_names()
        assert names[-3:] == ["halves.left", "halves.right", "single"]
        assert "raw" in names
    finally:
        del ATTENTION_MATRIX_FIGURE_FUNCS[n_before:]
    raw(CAUSAL, tmp_path)
    assert (tmp_path / "raw.png").read_bytes() == ref.png_bytes(ref.preprocess(CAUSAL, normalize=True, cmap="Blues"))


def test_written_files_get_normal_permissions(tmp_path):
    """atomic writes create a temporary file; the final file must be as readable as open() makes it,
    and a replaced file keeps its mode, also bits the umask would take away"""
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    raw(CAUSAL, tmp_path)
    assert stat.S_IMODE((tmp_path / "raw.png").stat().st_mode) == 0o666 & ~umask
    for mode in (0o640, 0o666, 0o600):
        (tmp_path / "raw.png").chmod(mode)  # an existing file keeps its mode when replaced
        raw(CAUSAL, tmp_path)
        assert stat.S_IMODE((tmp_path / "raw.png").stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["raw.png"]  # no temporary file left
    # the umask in force at the write counts, not the one at import
    old = os.umask(0o077)
    try:
        (tmp_path / "new").mkdir()
        raw(CAUSAL, tmp_path / "new")
        assert stat.S_IMODE((tmp_path / "new" / "raw.png").stat().st_mode) == 0o600
        (tmp_path / "raw.png").chmod(0o644)
        raw(CAUSAL, tmp_path)
        assert stat.S_IMODE((tmp_path / "raw.png").stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_huge_colormap_takes_the_reference_path():
    """N = 70000 does not fit uint16 rows: the fast route must decline rather than wrap"""
    from matplotlib.colors import LinearSegmentedColormap

    from pattern_lens._export import colormap as _colormap

    cmap = LinearSegmentedColormap.from_list("wide", ["black", "red", "white"], N=70000)
    norm = _colormap.normalization(CAUSAL, True)
    assert _colormap.matrix_to_lut_rows(CAUSAL, norm, cmap) is None
    assert np.array_equal(fu.matrix_to_image_preprocess(CAUSAL, True, cmap), ref.preprocess(CAUSAL, True, cmap))
