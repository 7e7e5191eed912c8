"""shared test fixtures: where the parity corpus lives, hypothesis settings sized for 2-core CI, and
the hypothesis strategies every differential test draws from (`matrices`, `options`)"""

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from matplotlib.colors import ListedColormap

from signals_support import sigint_reaches_children

sigint_reaches_children()  # the Ctrl-C tests, also when the test run started in the background

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PATTERN_LENS_SHARED", REPO.parent / "shared"))
"the project's shared/ folder beside the checkout; PATTERN_LENS_SHARED names another (e.g. from a git worktree)"
PARITY = SHARED / "parity" / "pythia-14m"

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """the reference's pythia-14m renders, read in place; skips (with the reason) where absent"""
    if not PARITY.is_dir():
        pytest.skip(f"parity corpus not found at {PARITY} (no ../shared beside this checkout; PATTERN_LENS_SHARED can name the folder)")
    return PARITY


# ---------------------------------------------------------------------------------------------------
# inputs from the families that break naive reimplementations: float16/32/64, edge values (0, 1,
# nextafter(1, 0), the k/N boundaries and their neighbours, NaN, +-inf, -0.0, subnormals, huge
# values), constant matrices, shapes 1x1 to 300x300, every normalisation mode, colormaps with N = 256
# and N != 256, names and Colormap objects

DTYPES = [np.float16, np.float32, np.float64]

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


def edge_values(dtype) -> list[float]:
    """values where colormapping arithmetic goes wrong first, for `dtype`"""
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
    """a 2D float16/32/64 matrix: uniform, signed, causal attention, or drawn from a pool of edge values"""
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
                    st.sampled_from(edge_values(dtype)),
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
    """`save_matrix_wrapper` / `matrix_to_image_preprocess` keywords for `matrix`, valid or not"""
    normalize = draw(st.booleans())
    diverging = draw(st.booleans())
    normalize_min = None
    if normalize and not diverging and draw(st.booleans()):
        with np.errstate(invalid="ignore"):
            low = float(np.nanmin(matrix)) if np.isfinite(matrix).any() else 0.0
        normalize_min = draw(st.sampled_from([low, low - 1.0, 0.0, low - 1e-3]))
    cmap = draw(st.sampled_from(COLORMAPS))
    return dict(normalize=normalize, cmap=cmap, diverging_colormap=diverging, normalize_min=normalize_min)


def outcome(func, *args, **kwargs):
    """`("ok", result)` or `("raised", exception type)`: what a caller would observe"""
    with np.errstate(all="ignore"):
        try:
            return "ok", func(*args, **kwargs)
        except (AssertionError, TypeError, KeyError, ValueError) as err:
            return "raised", type(err)
