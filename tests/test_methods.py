"""every rendering method against the independent oracle (`reference_impl`), driven by one table

A method turns a matrix into a file's bytes. Each is checked the way its promise reads:

| method      | what it is                                           | compared by                                   |
| ----------- | ---------------------------------------------------- | --------------------------------------------- |
| `reference` | `_export.reference`: the benchmark's baseline/oracle | bytes (svgz: decompressed bytes)              |
| `exact`     | `save_matrix_wrapper`, default profile               | bytes (svgz: decompressed bytes)              |
| `fast`      | `save_matrix_wrapper`, `fast` profile                | decoded pixels                                |

against the oracle on hypothesis inputs (`conftest.matrices`, `conftest.options`), on fixed option
sets, on a full-size head, and against the reference's own renders of pythia-14m (`../shared/parity`).
Matrix -> RGB routes alone (the kernel, the table rows): `test_colormap`.
"""

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import reference_impl as ref
from conftest import matrices, options, outcome
from pattern_lens import export_profile
from pattern_lens._export.reference import decoded_rgb, reference_file_bytes
from pattern_lens.attn_figure_funcs import raw
from pattern_lens.figure_util import save_matrix_wrapper

FORMATS = ("png", "svg", "svgz")


def _write_with(profile: str) -> Callable[[np.ndarray, str, dict, Path], bytes]:
    """a method writing through `save_matrix_wrapper` in `profile`; the folder must hold only its file"""

    def write(matrix: np.ndarray, fmt: str, kwargs: dict, folder: Path) -> bytes:
        @save_matrix_wrapper(fmt=fmt, **kwargs)
        def figure(m):
            return m

        assert figure.__name__ == "figure" and figure.figure_save_fmt == fmt
        with export_profile(profile):
            figure(matrix, folder)
        assert [p.name for p in folder.iterdir()] == [f"figure.{fmt}"], "temporary files left behind"
        data = (folder / f"figure.{fmt}").read_bytes()
        (folder / f"figure.{fmt}").unlink()
        return data

    return write


def _write_reference(matrix: np.ndarray, fmt: str, kwargs: dict, folder: Path) -> bytes:
    return reference_file_bytes(matrix, fmt, kwargs.get("normalize", False), kwargs.get("cmap", "viridis"))


def _any_options(kwargs: dict) -> bool:
    return True


def _raw_options(kwargs: dict) -> bool:
    """the baseline reproduces the benchmark's `raw` figure: min-max normalisation or none, any colormap"""
    return not kwargs.get("diverging_colormap") and kwargs.get("normalize_min") is None


@dataclass(frozen=True)
class Method:
    write: Callable[[np.ndarray, str, dict, Path], bytes]
    compare: str  # "bytes" (svgz: decompressed) or "pixels"
    validates: bool  # rejects what the reference rejects, with the same exception type
    supports: Callable[[dict], bool]  # which `save_matrix_wrapper` options it implements


METHODS: dict[str, Method] = {
    "reference": Method(_write_reference, "bytes", validates=False, supports=_raw_options),
    "exact": Method(_write_with("exact"), "bytes", validates=True, supports=_any_options),
    "fast": Method(_write_with("fast"), "pixels", validates=True, supports=_any_options),
}


def assert_same_file(method: Method, ours: bytes, expected: bytes, fmt: str) -> None:
    """`ours` (a written file) shows what `expected` (PNG bytes or SVG text) does, as `method` promises"""
    if method.compare == "pixels":
        expected_file = gzip.compress(expected) if fmt == "svgz" else expected
        ours_rgb, expected_rgb = decoded_rgb(ours, fmt), decoded_rgb(expected_file, fmt)
        mismatch = np.argwhere(np.any(ours_rgb != expected_rgb, axis=-1)) if ours_rgb.shape == expected_rgb.shape else None
        assert mismatch is not None and mismatch.size == 0, (
            f"{fmt} pixels differ: shapes {ours_rgb.shape} {expected_rgb.shape}, first at "
            f"{None if mismatch is None else mismatch[:3].tolist()}"
        )
    else:
        content = gzip.decompress(ours) if fmt == "svgz" else ours
        assert content == expected, f"{fmt} content differs ({len(content)} vs {len(expected)} bytes)"


def check(name: str, matrix: np.ndarray, fmt: str, kwargs: dict, folder: Path) -> None:
    """render `matrix` with method `name` and compare with the oracle (or its rejection)"""
    method = METHODS[name]
    expected = outcome(ref.file_content, matrix, fmt, **kwargs)
    ours = outcome(method.write, matrix, fmt, kwargs, folder)
    if expected[0] == "raised":
        if method.validates:
            assert ours == expected, f"the reference raises {expected[1].__name__}, {name} gave {ours[0]}"
        return
    assert ours[0] == "ok", f"{name} raised {ours[1].__name__} where the reference rendered"
    assert_same_file(method, ours[1], expected[1], fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", METHODS)
@given(data=st.data())
def test_matches_oracle(name, fmt, data, tmp_path_factory):
    matrix = data.draw(matrices(), label="matrix")
    kwargs = data.draw(options(matrix), label="options")
    assume(METHODS[name].supports(kwargs))
    check(name, matrix, fmt, kwargs, tmp_path_factory.mktemp(name))


RNG = np.random.default_rng(0)
CAUSAL = np.tril(RNG.random((40, 40), dtype=np.float32))
CAUSAL /= CAUSAL.sum(axis=1, keepdims=True)


OPTION_SETS = {
    "raw": dict(normalize=True, cmap="Blues"),
    "defaults": dict(),  # the reference's defaults: no normalisation, viridis
    "diverging": dict(normalize=True, diverging_colormap=True, cmap="RdBu"),
    "normalize_min": dict(normalize=True, normalize_min=0.0, cmap="magma"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "name, kwargs",
    [(name, kwargs) for name, method in METHODS.items() for kwargs in OPTION_SETS.values() if method.supports(kwargs)],
    ids=[f"{name}-{key}" for name, method in METHODS.items() for key, kwargs in OPTION_SETS.items() if method.supports(kwargs)],
)
def test_option_sets(name, kwargs, fmt, tmp_path):
    check(name, CAUSAL * 0.9, fmt, kwargs, tmp_path)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_full_size_head(name, dtype, tmp_path):
    """a 1024 x 1024 head, where vectorised loops and the encoders take their main paths"""
    rng = np.random.default_rng(7)
    scores = np.exp(rng.normal(size=(1024, 1024)) * 3)
    pattern = (np.tril(scores) / np.tril(scores).sum(axis=1, keepdims=True)).astype(dtype)
    check(name, pattern, "png", dict(normalize=True, cmap="Blues"), tmp_path)


def test_svg_keeps_the_reference_shape_and_fast_files_are_smaller(tmp_path):
    """`fast` writes other bytes than `exact`: smaller on attention, same SVG frame"""
    pattern = np.tril(np.random.default_rng(1).random((256, 200), dtype=np.float32) ** 8)
    pattern /= np.maximum(pattern.sum(axis=1, keepdims=True), 1e-9)
    kwargs = dict(normalize=True, cmap="Blues")
    for fmt in FORMATS:
        exact = METHODS["exact"].write(pattern, fmt, kwargs, tmp_path)
        fast = METHODS["fast"].write(pattern, fmt, kwargs, tmp_path)
        assert len(fast) < len(exact), fmt
        if fmt != "png":
            text = (gzip.decompress(fast) if fmt == "svgz" else fast).decode()
            assert text.startswith('<svg xmlns="http://www.w3.org/2000/svg" width="256" height="200"')


# ---------------------------------------------------------------------------------------------------
# real data: all 768 pythia-14m heads against the reference's own renders (`raw`: png, Blues, normalised)


def _parity_heads(parity_dir):
    for prompt_dir in sorted((parity_dir / "prompts").iterdir()):
        with np.load(prompt_dir / "activations.npz") as npz:
            for key in sorted(npz.files):
                layer = int(key.split(".")[1])
                patterns = npz[key]
                for head in range(patterns.shape[1]):
                    yield prompt_dir / f"L{layer}" / f"H{head}" / "raw.png", patterns[0, head]


RAW = dict(normalize=True, cmap="Blues")


@pytest.mark.parametrize("name", METHODS)
def test_parity_corpus(name, parity_dir, tmp_path):
    method = METHODS[name]
    checked, different, ours_bytes, theirs_bytes = 0, [], 0, 0
    for expected_png, pattern in _parity_heads(parity_dir):
        expected = expected_png.read_bytes()
        ours = method.write(pattern, "png", RAW, tmp_path)
        try:
            assert_same_file(method, ours, expected, "png")
        except AssertionError:
            different.append(str(expected_png.relative_to(parity_dir)))
        checked, ours_bytes, theirs_bytes = checked + 1, ours_bytes + len(ours), theirs_bytes + len(expected)
    assert checked == 768, f"expected 768 heads in the parity corpus, found {checked}"
    assert not different, f"{len(different)} of {checked} PNGs differ ({method.compare}), e.g. {different[:5]}"
    if name == "fast":
        assert ours_bytes < theirs_bytes


def test_parity_corpus_through_raw(parity_dir, tmp_path):
    """the registered `raw` figure function itself (its name, folder and defaults), byte for byte"""
    for i, (expected_png, pattern) in enumerate(_parity_heads(parity_dir)):
        if i % 8 == 0:
            raw(pattern, tmp_path)
            assert (tmp_path / "raw.png").read_bytes() == expected_png.read_bytes(), expected_png


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_parity_patterns_in_other_dtypes(name, dtype, parity_dir, tmp_path):
    """the same real patterns in float64 and float16, against the oracle run live"""
    for i, (_, pattern) in enumerate(_parity_heads(parity_dir)):
        if i % 16 == 0:
            check(name, pattern.astype(dtype), "png", RAW, tmp_path)
