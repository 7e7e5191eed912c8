"""the direct `.npz` reader against `numpy.load`: same arrays, same refusals, never a wrong array

The oracle is `numpy.load` plus the layer rules written out here (floating point, shape
`(1, n_heads, n, n)`); archives come from `np.savez` / `np.savez_compressed` / `zipfile` (stored,
deflated, zip64, bzip2), then truncated or corrupted.
"""

from __future__ import annotations

import importlib
import io
import struct
import sys
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pattern_lens._layout import layer_key
from pattern_lens._input import inflate as inflate_mod
from pattern_lens._input.npz import ActivationsError, ActivationsFile, peek_n_ctx
from pattern_lens._engine.planner import PromptWork, TaskPlanner
from pattern_lens.figures import figures_main
from pattern_lens.synthetic import write_synthetic_model

KEY0 = layer_key(0)

FLOAT_DTYPES = ["<f2", "<f4", "<f8", ">f4", ">f8"]
OTHER_DTYPES = ["<i4", "|u1", "|b1", "<c8"]


def _oracle(path, layer: int, n_heads: int | None):
    """numpy.load and the layer rules: the array (without the batch axis), or None for a refusal"""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arr = npz[layer_key(layer)]
    except Exception:  # noqa: BLE001 (any failure of numpy.load is a refusal for the reader)
        return None
    ok = (
        np.issubdtype(arr.dtype, np.floating)
        and arr.ndim == 4
        and arr.shape[0] == 1
        and arr.shape[2] == arr.shape[3] > 0
        and (n_heads is None or arr.shape[1] == n_heads)
    )
    return arr[0] if ok else None


def _ours(path, layer: int, n_heads: int | None):
    """the reader: the array, or None when it raised ActivationsError (anything else propagates)"""
    try:
        with ActivationsFile(path, n_heads=n_heads) as acts:
            return acts.read_layer(layer)
    except ActivationsError:
        return None


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


@st.composite
def layer_arrays(draw, dtypes=FLOAT_DTYPES):
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    n_heads = draw(st.integers(1, 3))
    n = draw(st.integers(1, 12))
    shape = draw(
        st.sampled_from([(1, n_heads, n, n), (1, n_heads, n, n), (n_heads, n, n), (1, n_heads, n, n + 1), (2, n_heads, n, n)])
    )
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).random(shape)
    if dtype.kind == "b":
        values = values > 0.5
    elif dtype.kind in "iu":
        values = values * 100
    arr = values.astype(dtype)
    if draw(st.booleans()):
        arr = np.asfortranarray(arr)
    return arr, n_heads


def _save(path, arrays: dict, compressed: bool) -> None:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


@given(layer_arrays(FLOAT_DTYPES + OTHER_DTYPES), st.booleans(), st.booleans())
def test_reader_matches_numpy_load(tmp_path_factory, drawn, compressed, check_heads):
    arr, n_heads = drawn
    path = tmp_path_factory.mktemp("npz") / "activations.npz"
    _save(path, {KEY0: arr, layer_key(1): arr[..., :1]}, compressed)
    heads = n_heads if check_heads else None
    for layer in (0, 1, 2):  # layer 2 is absent
        expected, got = _oracle(path, layer, heads), _ours(path, layer, heads)
        assert _same(expected, got), (arr.dtype, arr.shape, compressed, layer)
    assert peek_n_ctx(path) == (arr.shape[-1] if _oracle(path, 0, None) is not None else None)


@given(layer_arrays(), st.booleans(), st.data())
def test_truncated_archive_is_refused_or_read_exactly(tmp_path_factory, drawn, compressed, data):
    arr, n_heads = drawn
    path = tmp_path_factory.mktemp("npz") / "activations.npz"
    _save(path, {KEY0: arr}, compressed)
    whole = path.read_bytes()
    cut = data.draw(st.integers(0, len(whole) - 1))
    path.write_bytes(whole[:cut])
    assert _ours(path, 0, n_heads) is None  # the end of central directory is gone


@given(layer_arrays(), st.booleans(), st.data())
def test_corrupted_byte_never_gives_a_wrong_array(tmp_path_factory, drawn, compressed, data):
    arr, n_heads = drawn
    path = tmp_path_factory.mktemp("npz") / "activations.npz"
    _save(path, {KEY0: arr}, compressed)
    whole = bytearray(path.read_bytes())
    at = data.draw(st.integers(0, len(whole) - 1))
    whole[at] ^= data.draw(st.integers(1, 255))
    path.write_bytes(bytes(whole))
    got = _ours(path, 0, n_heads)  # ActivationsError or ...
    if got is not None:  # ... the original array: the CRC-32 and the sizes are checked
        assert _same(got, arr[0]), at
    if _oracle(path, 0, n_heads) is None:
        assert got is None, at  # what numpy.load refuses, the reader refuses too


def test_corrupted_member_data_is_a_crc_error(tmp_path):
    arr = np.random.default_rng(0).random((1, 2, 16, 16)).astype(np.float32)
    for compressed in (False, True):
        path = tmp_path / f"c{compressed}.npz"
        _save(path, {KEY0: arr}, compressed)
        whole = bytearray(path.read_bytes())
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(KEY0 + ".npy")
        whole[info.header_offset + 30 + len(info.filename) + 20 + 200] ^= 0x40  # inside the data
        path.write_bytes(bytes(whole))
        with pytest.raises(ActivationsError, match=rf"{path}: cannot read key '{KEY0}' \(.*"):
            with ActivationsFile(path, n_heads=2) as acts:
                acts.read_layer(0)


def _zip_member(path, name: str, payload: bytes, compression: int, **kw) -> None:
    with zipfile.ZipFile(path, "w", compression=compression, **kw) as zf:
        zf.writestr(name, payload)


def test_zip64_archive_is_read(tmp_path, monkeypatch):
    """zip64 records (what numpy writes for members over 4 GiB), made small by lowering zipfile's limit"""
    arr = np.random.default_rng(1).random((1, 3, 20, 20)).astype(np.float32)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    path = tmp_path / "activations.npz"
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 100)
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            zf.writestr("padding.npy", b"x" * 300)  # pushes the layer's offset past the limit
            zf.writestr(KEY0 + ".npy", buf.getvalue())
        assert b"PK\x06\x06" in path.read_bytes()  # a zip64 end of central directory
        with ActivationsFile(path, n_heads=3) as acts:
            assert acts._members is not None  # read directly, not through numpy.load
            assert _same(acts.read_layer(0), arr[0])


@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_members_the_reader_does_not_cover_go_through_numpy(tmp_path, compression):
    arr = np.random.default_rng(2).random((1, 2, 8, 8))
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    path = tmp_path / "activations.npz"
    _zip_member(path, KEY0 + ".npy", buf.getvalue(), compression)
    assert _same(_ours(path, 0, 2), arr[0])


def test_archive_with_bytes_before_it_is_refused_as_numpy_refuses_it(tmp_path):
    path = tmp_path / "activations.npz"
    np.savez(path, **{KEY0: np.ones((1, 1, 2, 2))})
    path.write_bytes(b"#!prefix\n" * 10 + path.read_bytes())
    assert _oracle(path, 0, 1) is None and _ours(path, 0, 1) is None


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "activations.npz"
    np.savez(path, **{KEY0: np.array([[[[None]]]], dtype=object)})
    with pytest.raises(ActivationsError, match="Object arrays cannot be loaded"):
        with ActivationsFile(path) as acts:
            acts.read_layer(0)


def test_stored_member_is_memory_mapped_and_writable_without_touching_the_file(tmp_path):
    arr = np.random.default_rng(3).random((1, 2, 64, 64)).astype(np.float32)
    path = tmp_path / "activations.npz"
    np.savez(path, **{KEY0: arr})
    before = path.read_bytes()
    with ActivationsFile(path, n_heads=2) as acts:
        layer = acts.read_layer(0)
    assert isinstance(layer.base, np.ndarray) or layer.base is not None
    layer[0, 0, 0] = 7.0  # figure functions got writable arrays from numpy.load: still writable
    assert path.read_bytes() == before and _same(_ours(path, 0, 2), arr[0])


def _hostile_npy(shape=(1, 3, 300_000, 300_000), n_data: int = 1024) -> bytes:
    """a `.npy` whose header claims a huge shape over 1 KiB of data"""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + b"\0" * n_data


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
def test_header_claiming_more_than_the_file_holds_is_refused_before_allocating(tmp_path, compression):
    path = tmp_path / "activations.npz"
    _zip_member(path, KEY0 + ".npy", _hostile_npy(), compression)
    with pytest.raises(ActivationsError, match=r"header declares float32 of shape \(1, 3, 300000, 300000\)"):
        with ActivationsFile(path, n_heads=3) as acts:
            acts.read_layer(0)
    with pytest.raises(ActivationsError, match=r"has shape \(1, 3, 300000, 300000\), expected \(1, 2, n_ctx"):
        with ActivationsFile(path, n_heads=2) as acts:  # more heads than the config's
            acts.read_layer(0)


def test_directory_claiming_an_impossible_inflated_size_is_refused(tmp_path):
    """a central directory saying 1 KiB of deflate inflates to 1 TiB (a zip bomb's claim)"""
    path = tmp_path / "activations.npz"
    _zip_member(path, KEY0 + ".npy", _hostile_npy(), zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 0xFFFFFFF0)  # uncompressed size
    path.write_bytes(bytes(data))
    with pytest.raises(ActivationsError, match="cannot inflate to the 4294967280 bytes claimed"):
        with ActivationsFile(path, n_heads=3) as acts:
            acts.read_layer(0)


def test_hostile_header_costs_only_its_prompt_in_a_run(tmp_path):
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=3, n_ctx=8, n_prompts=2)
    bad = sorted((model_dir / "prompts").iterdir())[0] / "activations.npz"
    _zip_member(bad, KEY0 + ".npy", _hostile_npy(), zipfile.ZIP_DEFLATED)
    summary = figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    assert summary.n_input_error_heads == 3 and summary.n_rendered == 3
    assert len(summary.input_errors) == 1 and str(bad) in summary.input_errors[0]
    assert "header declares" in summary.input_errors[0]


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_bytes_after_the_array_are_ignored_as_numpy_load_ignores_them(tmp_path, compression):
    arr = np.random.default_rng(5).random((1, 2, 6, 6)).astype(np.float32)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    path = tmp_path / "activations.npz"
    _zip_member(path, KEY0 + ".npy", buf.getvalue() + b"\0" * 8, compression)
    assert _same(_oracle(path, 0, 2), arr[0]) and _same(_ours(path, 0, 2), arr[0])
    with ActivationsFile(path, n_heads=2) as acts:
        assert acts.layer_shape(0) == (1, 2, 6, 6)


@pytest.mark.parametrize("pad", range(1, 8))
def test_stored_members_at_odd_offsets_give_aligned_writable_arrays(tmp_path, pad):
    """`np.savez` puts members wherever the previous ones end: the reader's arrays are aligned like numpy.load's"""
    arr = np.random.default_rng(6).random((1, 2, 5, 5))
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    path = tmp_path / "activations.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("pad.npy", b"x" * pad)
        zf.writestr(KEY0 + ".npy", buf.getvalue())
    with ActivationsFile(path, n_heads=2) as acts:
        assert acts._members is not None
        layer = acts.read_layer(0)
    assert layer.flags.aligned and layer.flags.writeable and _same(layer, arr[0])


@pytest.mark.parametrize("missing", [(), ("deflate",), ("deflate", "isal")])
def test_inflate_fallbacks_agree(monkeypatch, missing):
    """without libdeflate the reader uses ISA-L, without both zlib: the same bytes and checksums"""
    raw = np.random.default_rng(4).random(5000).astype(np.float32).tobytes() + b"\0" * 5000
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    stream = c.compress(raw) + c.flush()
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    try:
        mod = importlib.reload(inflate_mod)
        assert mod.INFLATE_LIBRARY == {0: "libdeflate", 1: "isal", 2: "zlib"}[len(missing)]
        out = mod.inflate(stream, len(raw))
        assert bytes(out) == raw and not isinstance(out, bytes)  # writable, as numpy.load's arrays
        assert mod.crc32(raw) == zlib.crc32(raw)
        with pytest.raises(mod.INFLATE_ERRORS):
            mod.inflate(stream[:-20] + b"\xff" * 20, len(raw))
    finally:
        monkeypatch.undo()
        importlib.reload(inflate_mod)


def test_a_split_layer_is_read_once_per_worker(tmp_path, monkeypatch):
    """one layer: cut into one batch of heads per worker (each batch inflates the whole layer), never more"""
    for n_workers, n_heads, parts in ((1, 8, 1), (2, 8, 2), (3, 8, 3), (8, 4, 4)):
        planner = TaskPlanner([PromptWork("p", 4096)], [0], range(n_heads), n_funcs=1, n_workers=n_workers, profile="fast")
        assert len(list(planner)) == parts
    two_layers = TaskPlanner([PromptWork("p", 4096)], [0, 1], range(8), n_funcs=1, n_workers=4, profile="exact")
    assert len(list(two_layers)) == 4  # two batches per layer: each of the 4 workers reads one layer once
    model_dir = write_synthetic_model(tmp_path, n_layers=2, n_heads=4, n_ctx=16, n_prompts=1)
    calls: list[int] = []
    real = ActivationsFile.read_layer
    monkeypatch.setattr(ActivationsFile, "read_layer", lambda self, layer: calls.append(layer) or real(self, layer))
    summary = figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=1, layers=[1], progress=False, verbose=False)
    assert summary.ok and summary.n_rendered == 4 and calls == [1]
