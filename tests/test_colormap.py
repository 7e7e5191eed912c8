"""differential tests: the kernel-backed colormapping against the reference algorithm

One table of (our function, the oracle) pairs, and hypothesis inputs from the families that break
naive reimplementations: float16/32/64, edge values (0, 1, nextafter(1, 0), the k/N boundaries and
their neighbours, NaN, +-inf, -0.0, subnormals, huge values), constant matrices, shapes 1x1 to 300x300,
every normalisation mode, colormaps with N = 256 and N != 256, names and Colormap objects. An input
the reference rejects must be rejected with the same exception type.
"""

import matplotlib
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.colors import ListedColormap

import reference_impl as ref
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

COLORMAPS = [
    "Blues",
    "viridis",
    "RdBu",
    "tab10",  # N = 10
    matplotlib.colormaps["viridis"].resampled(17),
    matplotlib.colormaps["plasma"].resampled(300),  # N > 256: rows need uint16
    matplotlib.colormaps["Greys"].resampled(254),  # N + 3 = 257: specials don't fit uint8
    matplotlib.colormaps["Blues"].with_extremes(bad="magenta", under="cyan", over="yellow"),
    ListedColormap(["red", "green", "blue"]),
]

DTYPES = [np.float16, np.float32, np.float64]


def _edge_values(dtype) -> list[float]:
    t = np.dtype(dtype).type
    one = t(1)
    values = [0.0, -0.0, 1.0, float(np.nextafter(one, t(0))), 0.5, np.nan, np.inf, -np.inf, -1.0]
    values += [float(np.finfo(dtype).smallest_subnormal), float(np.finfo(dtype).max), 1e-3]
    for n in (10, 17, 256, 300):
        for k in (1, n // 2, n - 1):
            b = t(k) / t(n)
            values += [float(b), float(np.nextafter(b, one)), float(np.nextafter(b, t(0)))]
    return values


@st.composite
def matrices(draw):
    dtype = draw(st.sampled_from(DTYPES))
    small = draw(st.booleans())
    side = st.integers(1, 12) if small else st.integers(1, 300)
    shape = (draw(side), draw(side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    family = draw(st.sampled_from(["uniform", "pool", "constant", "causal", "signed"]))
    if family == "uniform":
        m = rng.random(shape)
    elif family == "signed":
        m = rng.uniform(-1, 1, shape)
    elif family == "causal":
        scores = np.tril(rng.random(shape) * 8)
        m = np.where(np.tri(*shape, dtype=bool), np.exp(scores), 0)
        m = m / m.sum(axis=1, keepdims=True)
    else:
        width = np.finfo(dtype).bits
        pool = draw(
            st.lists(
                st.one_of(
                    st.sampled_from(_edge_values(dtype)),
                    st.floats(width=width, allow_nan=True, allow_infinity=True),
                ),
                min_size=1,
                max_size=1 if family == "constant" else 12,
            )
        )
        m = rng.choice(np.asarray(pool, dtype=dtype), size=shape)
    with np.errstate(over="ignore"):
        return m.astype(dtype)


@st.composite
def options(draw, matrix):
    normalize = draw(st.booleans())
    diverging = draw(st.booleans())
    normalize_min = None
    if normalize and not diverging and draw(st.booleans()):
        with np.errstate(invalid="ignore"):
            low = float(np.nanmin(matrix)) if np.isfinite(matrix).any() else 0.0
        normalize_min = draw(st.sampled_from([low, low - 1.0, 0.0, low - 1e-3]))
    cmap = draw(st.sampled_from(COLORMAPS))
    return dict(
        normalize=normalize, cmap=cmap, diverging_colormap=diverging, normalize_min=normalize_min
    )


def _outcome(func, matrix, kwargs):
    """("ok", result) or ("raised", exception type): what a caller would observe"""
    with np.errstate(all="ignore"):
        try:
            return "ok", func(matrix, **kwargs)
        except (AssertionError, TypeError, KeyError, ValueError) as err:
            return "raised", type(err)


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
    _assert_same(_outcome(ours_fn, matrix, kwargs), _outcome(oracle_fn, matrix, kwargs))


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cmap", COLORMAPS, ids=lambda c: c if isinstance(c, str) else c.name)
def test_every_edge_value(name, dtype, cmap):
    """every edge value in one matrix, as is and min-max normalised, with padding to fix the range"""
    ours_fn, oracle_fn = IMPLEMENTATIONS[name]
    edges = np.asarray(_edge_values(dtype) + [0.0, 1.0], dtype=dtype)
    inside = edges[(edges >= 0) & (edges <= 1)].reshape(1, -1)
    for matrix, kwargs in [
        (inside, dict(normalize=False)),
        (edges.reshape(1, -1), dict(normalize=True)),
        (edges[np.isfinite(edges)].reshape(1, -1), dict(normalize=True)),
        (np.clip(inside * 2 - 1, -1, 1), dict(normalize=False, diverging_colormap=True)),
        (edges[np.isfinite(edges)].reshape(-1, 1), dict(normalize=True, diverging_colormap=True)),
    ]:
        kwargs["cmap"] = cmap
        _assert_same(_outcome(ours_fn, matrix, kwargs), _outcome(oracle_fn, matrix, kwargs))


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
    _assert_same(_outcome(ours_fn, matrix, kwargs), _outcome(oracle_fn, matrix, kwargs))


@given(normalize_min=st.one_of(st.floats(-2, 0.1), st.integers(-3, 0)), dtype=st.sampled_from(DTYPES))
def test_normalize_min_scalar_types(normalize_min, dtype):
    """python ints/floats and numpy float64 scalars promote differently; the result must not"""
    matrix = np.linspace(0.05, 0.95, 64, dtype=dtype).reshape(8, 8)
    for value in (normalize_min, np.float64(normalize_min), np.float16(normalize_min)):
        kwargs = dict(normalize=True, cmap="Blues", normalize_min=value)
        _assert_same(
            _outcome(matrix_to_image_preprocess, matrix, kwargs),
            _outcome(ref.preprocess, matrix, kwargs),
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
        _assert_same(_outcome(ours_fn, matrix, kwargs), _outcome(oracle_fn, matrix, kwargs))
