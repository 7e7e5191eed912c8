"""the fast export profile: every file decodes to the exact profile's pixels (png, svg, svgz)"""

import base64
import gzip
import io
import re
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import reference_impl as ref
from pattern_lens import export_profile
from pattern_lens.figure_util import save_matrix_wrapper
from test_colormap import matrices, options

_PNG_IN_SVG = re.compile(r'href="data:image/png;base64,([^"]+)"')


def _decoded_rgb(data: bytes, fmt: str) -> np.ndarray:
    """the RGB pixels a viewer would show for a written file"""
    if fmt == "svgz":
        data = gzip.decompress(data)
    if fmt in ("svg", "svgz"):
        data = base64.b64decode(_PNG_IN_SVG.search(data.decode("utf-8")).group(1))
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def _write(matrix, fmt, profile, kwargs, tmp_path):
    @save_matrix_wrapper(fmt=fmt, **kwargs)
    def figure(m):
        return m

    with export_profile(profile):
        figure(matrix, tmp_path)
    return (tmp_path / f"figure.{fmt}").read_bytes()


@pytest.mark.parametrize("fmt", ["png", "svg", "svgz"])
@given(data=st.data())
def test_fast_pixels_equal_reference(fmt, data, tmp_path_factory):
    matrix = data.draw(matrices(), label="matrix")
    kwargs = data.draw(options(matrix), label="options")
    with np.errstate(all="ignore"):
        try:
            expected = ref.preprocess(matrix, **kwargs)
        except (AssertionError, TypeError, KeyError):
            return  # rejected inputs are covered by test_colormap
        fast = _write(matrix, fmt, "fast", kwargs, tmp_path_factory.mktemp("fast"))
    assert np.array_equal(_decoded_rgb(fast, fmt), expected)


@pytest.mark.parametrize("fmt", ["png", "svg", "svgz"])
def test_fast_is_smaller_on_attention_and_keeps_svg_shape(fmt, tmp_path):
    rng = np.random.default_rng(1)
    pattern = np.tril(rng.random((256, 256), dtype=np.float32) ** 8)
    pattern /= pattern.sum(axis=1, keepdims=True)
    kwargs = dict(normalize=True, cmap="Blues")
    (tmp_path / "exact").mkdir()
    (tmp_path / "fast").mkdir()
    exact = _write(pattern, fmt, "exact", kwargs, tmp_path / "exact")
    fast = _write(pattern, fmt, "fast", kwargs, tmp_path / "fast")
    assert np.array_equal(_decoded_rgb(fast, fmt), _decoded_rgb(exact, fmt))
    assert len(fast) < len(exact)
    if fmt != "png":
        text = (gzip.decompress(fast) if fmt == "svgz" else fast).decode()
        assert text.startswith('<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256"')


def test_profile_selection_and_errors():
    assert export_profile() == "exact"
    with export_profile("fast"):
        assert export_profile() == "fast"
        with export_profile("exact"):
            assert export_profile() == "exact"
        assert export_profile() == "fast"
    assert export_profile() == "exact"
    with pytest.raises(ValueError, match="unknown export profile 'quick'"):
        with export_profile("quick"):
            pass


def test_profile_is_per_thread():
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def worker():
        with export_profile("fast"):
            inside.set()
            release.wait(5)
            seen["worker"] = export_profile()

    thread = threading.Thread(target=worker)
    thread.start()
    inside.wait(5)
    seen["main"] = export_profile()
    release.set()
    thread.join()
    assert seen == {"main": "exact", "worker": "fast"}
