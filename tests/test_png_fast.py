"""property tests of `pattern_lens._export.png_fast`: every PNG must decode, in two independent decoders, to
exactly the pixels numpy computes as `palette[indices]` (or the RGB input), with valid chunks and CRCs"""

import gzip
import importlib
import io
import struct
import sys
import zlib

import numpy as np
import png  # pypng: a pure-Python decoder independent of Pillow's libpng-free C code
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from pattern_lens._export import png_fast as _png_fast

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- independent checks


def parse_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    "split a PNG into (type, data) chunks, asserting the signature, every length and every CRC"
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert len(body) == length, f"{tag!r} chunk truncated"
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + body), f"bad CRC in {tag!r}"
        chunks.append((tag, body))
        pos += 12 + length
    assert pos == len(data)
    return chunks


def check_structure(
    data: bytes, width: int, height: int, colour_type: int, palette: np.ndarray | None
) -> None:
    chunks = parse_chunks(data)
    tags = [t for t, _ in chunks]
    expected = [b"IHDR", b"PLTE", b"IDAT", b"IEND"] if colour_type == 3 else [b"IHDR", b"IDAT", b"IEND"]
    assert tags == expected  # no tRNS or any other chunk, one IDAT
    ihdr = chunks[0][1]
    assert len(ihdr) == 13
    assert struct.unpack(">IIBBBBB", ihdr) == (width, height, 8, colour_type, 0, 0, 0)
    if palette is not None:
        assert chunks[1][1] == palette.astype(np.uint8).tobytes()
    assert chunks[-1][1] == b""
    # the scanlines themselves: stdlib zlib inflates the IDAT to one filter byte + row per row
    raw = zlib.decompress(dict(chunks)[b"IDAT"])
    bpp = 1 if colour_type == 3 else 3
    assert len(raw) == height * (1 + width * bpp)


def decode_pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.verify()  # verify() leaves the image unusable: decode from a fresh open
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def decode_pypng(data: bytes) -> np.ndarray:
    width, height, rows, info = png.Reader(bytes=data).asRGB8()
    assert (info["bitdepth"], info.get("alpha", False)) == (8, False)
    return np.vstack([np.frombuffer(bytes(r), dtype=np.uint8) for r in rows]).reshape(height, width, 3)


def check_decodes_to(data: bytes, expected_rgb: np.ndarray) -> None:
    np.testing.assert_array_equal(decode_pillow(data), expected_rgb)
    np.testing.assert_array_equal(decode_pypng(data), expected_rgb)


# ----------------------------------------------------------------------------- strategies


@st.composite
def indexed_images(draw, max_side: int = 300) -> tuple[np.ndarray, np.ndarray]:
    "a palette of 1..256 colours and indices into it: uniform noise, runs, or a causal heatmap"
    k = draw(st.integers(1, 256))
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    palette = draw(arrays(np.uint8, (k, 3)))
    kind = draw(st.sampled_from(["noise", "runs", "causal"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "noise":
        idx = rng.integers(0, k, size=(h, w))
    elif kind == "runs":  # long runs of a few values: exercises the RLE matches across rows
        idx = np.repeat(rng.integers(0, k, size=(h, max(1, w // 17))), 17, axis=1)[:, :w]
        idx = np.pad(idx, ((0, 0), (0, w - idx.shape[1])), mode="edge")
    else:  # causal softmax mapped through a k-colour lookup, upper triangle 0
        scores = rng.normal(size=(h, w)) * 3
        scores[np.triu_indices(h, 1, w)] = -np.inf
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        e[~np.isfinite(e)] = 0
        p = e / np.maximum(e.sum(axis=1, keepdims=True), 1e-30)
        idx = np.minimum((p / max(p.max(), 1e-30) * k).astype(np.int64), k - 1)
    return np.ascontiguousarray(idx, dtype=np.uint8), palette


# ----------------------------------------------------------------------------- encode_indexed_png


@SETTINGS
@given(indexed_images())
def test_indexed_roundtrip(image: tuple[np.ndarray, np.ndarray]) -> None:
    indices, palette = image
    data = _png_fast.encode_indexed_png(indices, palette)
    h, w = indices.shape
    check_structure(data, w, h, 3, palette)
    check_decodes_to(data, palette[indices])


@SETTINGS
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))), st.integers(0, 3))
def test_indexed_any_layout(indices: np.ndarray, which: int) -> None:
    "transposed, sliced and reversed views encode the pixels they show, not their memory order"
    view = [indices, indices.T, indices[::2, ::-1], np.asfortranarray(indices)][which]
    ramp = np.arange(256)
    palette = np.stack([ramp, 255 - ramp, (ramp * 7) % 256], axis=1).astype(np.uint8)
    check_decodes_to(_png_fast.encode_indexed_png(view, palette), palette[view])


def test_indexed_edge_cases() -> None:
    one = np.zeros((1, 1), np.uint8)
    for idx, pal in [
        (one, np.array([[1, 2, 3]], np.uint8)),  # 1x1, one colour
        (np.full((1, 300), 255, np.uint8), np.arange(768, dtype=np.uint64).reshape(256, 3).astype(np.uint8)),
        (np.arange(300, dtype=np.uint8).reshape(300, 1) % 5, np.eye(5, 3, dtype=np.uint8) * 200),
    ]:
        data = _png_fast.encode_indexed_png(idx, pal)
        check_structure(data, idx.shape[1], idx.shape[0], 3, pal)
        check_decodes_to(data, pal[idx])


def test_indexed_attention_heatmap() -> None:
    "a realistic head: causal softmax through matplotlib's Blues LUT with matplotlib's index rule"
    import matplotlib

    rng = np.random.default_rng(0)
    n = 257
    scores = rng.normal(size=(n, n)).astype(np.float32)
    scores[:, 0] += 3  # attention sink
    scores[np.triu_indices(n, 1)] = -np.inf
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    x = (p - p.min()) / (p.max() - p.min()) * 256
    x[x == 256] = 255
    idx = x.astype(np.uint8)
    lut = matplotlib.colormaps["Blues"](np.arange(256), bytes=True)[:, :3].copy()
    # matplotlib's own pixels for the same values, the reference's colour path
    expected = np.asarray(matplotlib.colormaps["Blues"](x / 256, bytes=True))[..., :3]
    np.testing.assert_array_equal(lut[idx], expected)
    check_decodes_to(_png_fast.encode_indexed_png(idx, lut), expected)


@pytest.mark.parametrize(
    ("indices", "palette", "match"),
    [
        (np.zeros((4, 4), np.int64), np.zeros((2, 3), np.uint8), "uint8"),
        (np.zeros((4, 4, 1), np.uint8), np.zeros((2, 3), np.uint8), "2 dimensions"),
        (np.zeros((0, 4), np.uint8), np.zeros((2, 3), np.uint8), "pixels on each side"),
        ([[0, 1]], np.zeros((2, 3), np.uint8), "numpy array"),
        (np.zeros((4, 4), np.uint8), np.zeros((2, 4), np.uint8), r"\(k, 3\)"),
        (np.zeros((4, 4), np.uint8), np.zeros((2, 3), np.float32), r"\(k, 3\)"),
        (np.zeros((4, 4), np.uint8), np.zeros((0, 3), np.uint8), "between 1 and 256"),
        (np.zeros((4, 4), np.uint8), np.zeros((257, 3), np.uint8), "between 1 and 256"),
        (np.array([[0, 1], [2, 5]], np.uint8), np.zeros((5, 3), np.uint8), "index 5 .* only 5 colours"),
    ],
)
def test_indexed_rejects(indices, palette, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _png_fast.encode_indexed_png(indices, palette)


# ----------------------------------------------------------------------------- encode_rgb_png


@SETTINGS
@given(
    st.integers(1, 300),
    st.integers(1, 300),
    st.sampled_from(["noise", "few colours", "gradient"]),
    st.integers(0, 2**32 - 1),
)
def test_rgb_roundtrip(h: int, w: int, kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if kind == "noise":
        rgb = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    elif kind == "few colours":
        rgb = rng.integers(0, 256, size=(4, 3), dtype=np.uint8)[rng.integers(0, 4, size=(h, w))]
    else:  # > 256 colours in smooth gradients
        i, j = np.indices((h, w))
        channels = [i * 255 // max(h - 1, 1), j * 255 // max(w - 1, 1), (i + j) % 256]
        rgb = np.stack(channels, axis=-1).astype(np.uint8)
    data = _png_fast.encode_rgb_png(rgb)
    check_structure(data, w, h, 2, None)
    check_decodes_to(data, rgb)


def test_rgb_any_layout() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, size=(31, 17, 3), dtype=np.uint8)
    for view in (rgb.transpose(1, 0, 2), rgb[::-1, ::3], rgb[..., ::-1], np.asfortranarray(rgb)):
        check_decodes_to(_png_fast.encode_rgb_png(view), view)


@pytest.mark.parametrize(
    ("rgb", "match"),
    [
        (np.zeros((4, 4), np.uint8), "3 dimensions"),
        (np.zeros((4, 4, 4), np.uint8), "3 channels"),
        (np.zeros((4, 4, 3), np.float64), "uint8"),
        (np.zeros((4, 0, 3), np.uint8), "pixels on each side"),
    ],
)
def test_rgb_rejects(rgb: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _png_fast.encode_rgb_png(rgb)


# ----------------------------------------------------------------------------- gzip_bytes


BASE64_SVG_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=<>\" "


@SETTINGS
@given(st.binary(max_size=20_000) | st.text(alphabet=BASE64_SVG_ALPHABET).map(str.encode))
def test_gzip_roundtrip(data: bytes) -> None:
    out = _png_fast.gzip_bytes(data)
    assert gzip.decompress(out) == data
    # magic, deflate, no flags, mtime 0, XFL 4, OS 255 "unknown": the same on every platform
    assert out[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"
    assert out == _png_fast.gzip_bytes(data)  # reproducible


def test_gzip_svg_shrinks() -> None:
    "an svgz of a base64 PNG must be smaller than the text: Huffman coding of the 6-bit alphabet"
    import base64

    idx = np.random.default_rng(1).integers(0, 256, size=(128, 128), dtype=np.uint8)
    pal = np.random.default_rng(2).integers(0, 256, size=(256, 3), dtype=np.uint8)
    b64 = base64.b64encode(_png_fast.encode_indexed_png(idx, pal)).decode()
    svg = f'<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/png;base64,{b64}"/></svg>'
    svg = svg.encode()
    out = _png_fast.gzip_bytes(svg)
    assert gzip.decompress(out) == svg
    assert len(out) < 0.8 * len(svg)


# ----------------------------------------------------------------------------- backends


@pytest.fixture
def stdlib_backend(monkeypatch: pytest.MonkeyPatch):
    "reload `_png_fast` as if python-isal were not installed; reload it again afterwards"
    monkeypatch.setitem(sys.modules, "isal", None)  # makes `from isal import ...` raise ImportError
    module = importlib.reload(_png_fast)
    assert module.DEFLATE_BACKEND == "zlib" and module._isal is None
    yield module
    monkeypatch.undo()
    importlib.reload(_png_fast)


def test_backend_reported() -> None:
    try:
        import isal  # noqa: F401
    except ImportError:
        assert _png_fast.DEFLATE_BACKEND == "zlib"
    else:
        assert _png_fast.DEFLATE_BACKEND == "isal"
    assert set(_png_fast.__all__) == {"encode_indexed_png", "scanline_view", "encode_rgb_png", "gzip_bytes", "with_text", "read_text", "DEFLATE_BACKEND", "PNG_SIGNATURE", "PNG_IEND"}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(indexed_images(max_side=150))
def test_stdlib_fallback(stdlib_backend, image: tuple[np.ndarray, np.ndarray]) -> None:
    "the fallback path must produce valid files with the same pixels; gzip too"
    indices, palette = image
    data = stdlib_backend.encode_indexed_png(indices, palette)
    check_structure(data, indices.shape[1], indices.shape[0], 3, palette)
    check_decodes_to(data, palette[indices])
    rgb = palette[indices]
    data = stdlib_backend.encode_rgb_png(rgb)
    check_structure(data, indices.shape[1], indices.shape[0], 2, None)
    check_decodes_to(data, rgb)
    assert gzip.decompress(stdlib_backend.gzip_bytes(indices.tobytes())) == indices.tobytes()


# ----------------------------------------------------------------------------- text chunks


@SETTINGS
@given(indexed_images(max_side=40), st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=300))
def test_with_text_adds_one_valid_chunk_that_decoders_read_and_ignore(image, text):
    indices, palette = image
    plain = _png_fast.encode_indexed_png(indices, palette)
    data = _png_fast.with_text(plain, "pattern_lens.test", text)
    chunks = parse_chunks(data)  # every length and CRC checked independently of the code under test
    assert [t for t, _ in chunks] == [b"IHDR", b"tEXt", b"PLTE", b"IDAT", b"IEND"]
    assert chunks[1][1] == b"pattern_lens.test\0" + text.encode("latin-1")
    assert [c for c in chunks if c[0] != b"tEXt"] == parse_chunks(plain)
    check_decodes_to(data, palette[indices])
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["pattern_lens.test"] == text
    assert _png_fast.read_text(data, "pattern_lens.test") == text
    assert _png_fast.read_text(data, "other") is None and _png_fast.read_text(plain, "pattern_lens.test") is None


def test_read_text_refuses_damaged_or_truncated_chunks():
    data = _png_fast.with_text(_png_fast.encode_indexed_png(np.zeros((2, 2), np.uint8), np.zeros((1, 3), np.uint8)), "k", "value")
    at = data.index(b"value")
    assert _png_fast.read_text(data, "k") == "value"
    assert _png_fast.read_text(data[:at] + b"valuf" + data[at + 5 :], "k") is None  # CRC no longer matches
    assert _png_fast.read_text(data[: at + 2], "k") is None  # file cut inside the chunk
    assert _png_fast.read_text(b"not a png", "k") is None


@pytest.mark.parametrize("keyword", ["", " lead", "trail ", "dou  ble", "x" * 80, "tab\there"])
def test_with_text_refuses_keywords_the_png_spec_forbids(keyword):
    plain = _png_fast.encode_indexed_png(np.zeros((1, 1), np.uint8), np.zeros((1, 3), np.uint8))
    with pytest.raises(ValueError, match="keyword"):
        _png_fast.with_text(plain, keyword, "v")
    with pytest.raises(ValueError, match="Latin-1"):
        _png_fast.with_text(plain, "k", "\u20ac")
