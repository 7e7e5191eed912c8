"""differential tests: the kernel-backed colormapping (matrix -> RGB) against the reference algorithm

One table of (our RGB route, the oracle) pairs, on the hypothesis inputs of `conftest` (`matrices`,
`options`) and fixed edge cases. An input the reference rejects must be rejected with the same
exception type. Whole files (png / svg / svgz) per rendering method: `test_methods`.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference_impl as ref
from conftest import COLORMAPS, DTYPES, edge_values, matrices, options, outcome
from pattern_lens._export import colormap as _colormap
from pattern_lens.figure_util import matrix_to_image_preprocess


def _rgb_via_rows(matrix, normalize=False, cmap="viridis", diverging_colormap=False, normalize_min=None):
    """the fast profile's route: table rows from the kernel, then the table's colours"""
    norm = _colormap.normalization(matrix, normalize, diverging_colormap, normalize_min)
    result = _colormap.matrix_to_lut_rows(matrix, norm, cmap)
    if result is None:  # not covered by the kernel: nothing to compare on this route
        return ref.preprocess(matrix, normalize, cmap, diverging_colormap, normalize_min)
    rows, table = result
    return table.rgb[rows]


IMPLEMENTATIONS = {
    # name: (ours, the oracle)
    "matrix_to_image_preprocess": (matrix_to_image_preprocess, ref.preprocess),
    "lut_rows": (_rgb_via_rows, ref.preprocess),
}

def _assert_same(ours, oracle):
    assert ours[0] == oracle[0], f"ours {ours}, reference {oracle}"
    if ours[0] == "raised":
        assert ours[1] is oracle[1]
    else:
        assert ours[1].dtype == np.uint8 and ours[1].shape == oracle[1].shape
        mismatch = np.argwhere(np.any(ours[1] != oracle[1], axis=-1))
        assert mismatch.size == 0, f"{len(mismatch)} pixels differ, first at {mismatch[:3].tolist()}"


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@given(data=st.data())
def test_matches_reference(name, data):
    ours_fn, oracle_fn = IMPLEMENTATIONS[name]
    matrix = data.draw(matrices(), label="matrix")
    kwargs = data.draw(options(matrix), label="options")
    _assert_same(outcome(ours_fn, matrix, **kwargs), outcome(oracle_fn, matrix, **kwargs))


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cmap", COLORMAPS, ids=lambda c: c if isinstance(c, str) else c.name)
def test_every_edge_value(name, dtype, cmap):
    """every edge value in one matrix, as is and min-max normalised, with padding to fix the range"""
    ours_fn, oracle_fn = IMPLEMENTATIONS[name]
    edges = np.asarray(edge_values(dtype) + [0.0, 1.0], dtype=dtype)
    inside = edges[(edges >= 0) & (edges <= 1)].reshape(1, -1)
    for matrix, kwargs in [
        (inside, dict(normalize=False)),
        (edges.reshape(1, -1), dict(normalize=True)),
        (edges[np.isfinite(edges)].reshape(1, -1), dict(normalize=True)),
        (np.clip(inside * 2 - 1, -1, 1), dict(normalize=False, diverging_colormap=True)),
        (edges[np.isfinite(edges)].reshape(-1, 1), dict(normalize=True, diverging_colormap=True)),
    ]:
        kwargs["cmap"] = cmap
        _assert_same(outcome(ours_fn, matrix, **kwargs), outcome(oracle_fn, matrix, **kwargs))


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "matrix",
    [
        np.array([[0, 1], [1, 0]], dtype=np.int64),  # integers index the table: fallback
        np.array([[True, False]]),
        np.arange(12, dtype=np.int16).reshape(3, 4),
        np.ma.masked_array([[0.1, 0.5], [0.9, 0.2]], mask=[[0, 1], [0, 0]]),
        np.linspace(0, 1, 12, dtype=">f4").reshape(3, 4),  # non-native byte order
        np.linspace(0, 1, 12).reshape(3, 4).T,  # not C-contiguous
        np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)[:, ::2],
        np.linspace(0, 1, 6, dtype=np.complex128).reshape(2, 3),
    ],
    ids=["int64", "bool", "int16-range", "masked", "big-endian", "transposed", "strided", "complex"],
)
@pytest.mark.parametrize("normalize", [False, True])
def test_other_inputs_match_reference(name, matrix, normalize):
    ours_fn, oracle_fn = IMPLEMENTATIONS[name]
    kwargs = dict(normalize=normalize, cmap="viridis")
    _assert_same(outcome(ours_fn, matrix, **kwargs), outcome(oracle_fn, matrix, **kwargs))


@given(normalize_min=st.one_of(st.floats(-2, 0.1), st.integers(-3, 0)), dtype=st.sampled_from(DTYPES))
def test_normalize_min_scalar_types(normalize_min, dtype):
    """python ints/floats and numpy float64 scalars promote differently; the result must not"""
    matrix = np.linspace(0.05, 0.95, 64, dtype=dtype).reshape(8, 8)
    for value in (normalize_min, np.float64(normalize_min), np.float16(normalize_min)):
        kwargs = dict(normalize=True, cmap="Blues", normalize_min=value)
        _assert_same(
            outcome(matrix_to_image_preprocess, matrix, **kwargs),
            outcome(ref.preprocess, matrix, **kwargs),
        )


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_large_causal_pattern(name, dtype):
    """a full-size head (1024 x 1024), where vectorised loops take their main path"""
    ours_fn, oracle_fn = IMPLEMENTATIONS[name]
    rng = np.random.default_rng(7)
    scores = np.exp(rng.normal(size=(1024, 1024)) * 3)
    pattern = np.tril(scores) / np.tril(scores).sum(axis=1, keepdims=True)
    matrix = pattern.astype(dtype)
    for kwargs in (dict(normalize=True, cmap="Blues"), dict(normalize=False, cmap="viridis")):
        _assert_same(outcome(ours_fn, matrix, **kwargs), outcome(oracle_fn, matrix, **kwargs))
