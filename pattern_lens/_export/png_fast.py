"""fast PNG and gzip encoders for the `"fast"` export profile

A heatmap uses at most its colormap's 256 colours, so an indexed PNG (colour type 3, bit depth 8)
holds the same decoded RGB pixels as Pillow's RGB PNG at one byte per pixel instead of three. The
file is assembled by hand (signature, IHDR, PLTE, one IDAT, IEND) so that the only real work is a
single numpy copy and a single deflate call: no per-row Python loop.

Choices below were made by measurement (`benchmarks/bench_png_encoders.py`, causal attention
patterns at n_ctx 64..2048, one core):

 - row filter: None (type 0) on every row. Sub and Up cost an extra pass and made every indexed
   test image larger: differences of palette indices have no more structure than the indices,
   and they break up the long runs of index 0 (the masked upper triangle and the near-zero
   attention weights) that dominate these images.
 - deflate backend: python-isal (ISA-L, SIMD deflate) at level 1 when installed, for all three
   outputs. For the index rows with a 2-byte match window (`_ISAL_HIST_BITS`): on synthetic
   1024 x 1024 heads 0.45 ms a head (mean) against 0.8 ms for zlib-ng's `Z_RLE`, at the same size
   (0.40x the reference's); with isal's default 32 KiB window files were 0.57x. It also gzips svgz
   text faster at the same size as Huffman-only zlib, and deflates RGB fallbacks 2x faster than
   zlib level 2. isal levels 0 and 2 were no faster; level 3 is 3x slower.
 - stdlib fallback (no python-isal): indexed rows with the `Z_RLE` strategy (matches at distance 1
   only: the images are mostly long runs; smaller than zlib level 6, 2x faster), RGB at level 2
   with the default strategy (`Z_RLE` finds no runs in 3-byte pixels), gzip Huffman-only (base64
   of a deflated PNG has nothing for LZ77 to find).
 - both backends give files that decode to the same pixels; their bytes differ.
"""

import struct
import zlib

import numpy as np

try:
    from isal import igzip_lib as _igzip
    from isal import isal_zlib as _isal
except ImportError:  # no wheel for this platform: the stdlib does the same job, slower
    _isal = _igzip = None

DEFLATE_BACKEND: str = "isal" if _isal is not None else "zlib"
"the deflate library in use: `\"isal\"` (python-isal) or `\"zlib\"` (stdlib fallback)"

_crc32 = zlib.crc32 if _isal is None else _isal.crc32

# what each output gets from the stdlib fallback: (level, strategy)
_ZLIB_SETTINGS: dict[str, tuple[int, int]] = {
    "indexed": (1, zlib.Z_RLE),
    "rgb": (2, zlib.Z_DEFAULT_STRATEGY),
    "gzip": (1, zlib.Z_HUFFMAN_ONLY),
}
_ISAL_LEVEL: int = 1
# isal's match window, in bits, per output. Indices: 1 (matches at distance 1-2, i.e. runs): on the
# 1024 x 1024 benchmark heads as fast as the full 32 KiB window and 0.40x the reference's size
# instead of 0.57x; longer windows only add far matches that cost more bits than the literals they
# replace. RGB pixels repeat at distance 3 and more, and base64 text has no structure: full window.
_ISAL_HIST_BITS: dict[str, int] = {"indexed": 1, "rgb": 15, "gzip": 15}

__all__ = ["encode_indexed_png", "scanline_view", "encode_rgb_png", "gzip_bytes", "with_text", "read_text", "DEFLATE_BACKEND", "PNG_SIGNATURE", "PNG_IEND"]

PNG_SIGNATURE: bytes = b"\x89PNG\r\n\x1a\n"
PNG_IEND: bytes = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # empty chunk, its CRC is a constant


def _chunk(tag: bytes, data: bytes) -> bytes:
    # length, type, data, CRC-32 of type + data; crc32(data, crc32(tag)) avoids copying `data`
    return b"".join((struct.pack(">I", len(data)), tag, data, struct.pack(">I", _crc32(data, _crc32(tag)))))


def _deflate(data, output: str, wbits: int = 15) -> bytes:
    """deflate `data` for `output` ("indexed", "rgb" or "gzip"); wbits 15: zlib stream, -15: raw"""
    if _igzip is not None:
        flag = _igzip.COMP_ZLIB if wbits > 0 else _igzip.COMP_DEFLATE
        return _igzip.compress(data, _ISAL_LEVEL, flag, _igzip.MEM_LEVEL_DEFAULT, _ISAL_HIST_BITS[output])
    level, strategy = _ZLIB_SETTINGS[output]
    # a fresh compressobj per call (~3 us): `zlib.compress()` takes no strategy argument
    c = zlib.compressobj(level, zlib.DEFLATED, wbits, 8, strategy)
    return c.compress(data) + c.flush()


def _png(width: int, height: int, colour_type: int, plte: bytes | None, idat: bytes) -> bytes:
    # bit depth 8; compression, filter method and interlace 0 (the only standard values / none)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    plte_chunk = b"" if plte is None else _chunk(b"PLTE", plte)
    return b"".join((PNG_SIGNATURE, _chunk(b"IHDR", ihdr), plte_chunk, _chunk(b"IDAT", idat), PNG_IEND))


def scanline_view(height: int, width: int) -> np.ndarray:
    """a uint8 `(height, width)` array to write palette indices into, for `encode_indexed_png`

    It views the PNG's scanline buffer (`(height, width + 1)`, each row's filter byte 0 first), so
    the encoder deflates that buffer as it is: the copy into it (a pass over the image, ~0.06 ms
    per 1024 x 1024 image in cache, 0.2 ms from memory) is skipped.
    """
    buffer = np.empty((height, width + 1), dtype=np.uint8)
    buffer[:, 0] = 0
    return buffer[:, 1:]


def _scanlines_under(pixels: np.ndarray) -> np.ndarray | None:
    """the scanline buffer `pixels` views when it comes from `scanline_view` (filter bytes still 0)"""
    buffer = pixels.base
    if not (isinstance(buffer, np.ndarray) and buffer.dtype == np.uint8 and buffer.ndim == 2 and pixels.ndim == 2):
        return None
    h, w = pixels.shape
    if buffer.shape != (h, w + 1) or not buffer.flags.c_contiguous or pixels.strides != buffer.strides:
        return None
    if pixels.__array_interface__["data"][0] != buffer.__array_interface__["data"][0] + 1 or buffer[:, 0].any():
        return None
    return buffer


def _unfiltered_rows(pixels: np.ndarray) -> np.ndarray:
    # the IDAT stream before deflate: filter type 0 (None) then the row's bytes, for every row.
    # One vectorised copy (none for indices written into a `scanline_view`); a non-contiguous
    # input costs one more (the reshape).
    if (buffer := _scanlines_under(pixels)) is not None:
        return buffer
    h, row_bytes = pixels.shape[0], pixels.shape[1] * (pixels.shape[2] if pixels.ndim == 3 else 1)
    rows = np.empty((h, row_bytes + 1), dtype=np.uint8)
    rows[:, 0] = 0
    rows[:, 1:] = pixels.reshape(h, row_bytes)
    return rows


def _check_image(arr: np.ndarray, name: str, ndim: int) -> None:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != ndim:
        kind = f"{type(arr).__name__} {getattr(arr, 'dtype', '')} with shape {getattr(arr, 'shape', '?')}"
        raise ValueError(f"`{name}` must be a uint8 numpy array with {ndim} dimensions, got {kind}")
    if arr.shape[0] < 1 or arr.shape[1] < 1 or max(arr.shape[:2]) > 2**31 - 1:
        raise ValueError(f"`{name}` must be between 1 and 2**31-1 pixels on each side, got {arr.shape}")


def encode_indexed_png(indices: np.ndarray, palette: np.ndarray) -> bytes:
    """encode palette indices as an indexed PNG (colour type 3, bit depth 8) of the pixels `palette[indices]`

    no transparency (no tRNS chunk), no gamma or other ancillary chunks; filter type 0 on every row,
    one IDAT chunk deflated by the `DEFLATE_BACKEND` library (see the module docstring).

    # Parameters:
     - `indices : np.ndarray`
       uint8 (h, w) palette indices, h and w >= 1; any memory layout (a `scanline_view` is
       cheapest: no copy, then C-contiguous).
       Every index must be `< len(palette)`: checked with `indices.max()`, about 1% of the
       encoding time, and skipped when the palette has all 256 entries.
     - `palette : np.ndarray`
       uint8 (k, 3) RGB colours, 1 <= k <= 256

    # Returns:
     - `bytes`
       the PNG file

    # Raises:
     - `ValueError` for a wrong dtype or shape, an empty image, a palette outside 1..256 entries,
       or an index that the palette does not cover
    """
    _check_image(indices, "indices", 2)
    is_palette = isinstance(palette, np.ndarray) and palette.dtype == np.uint8 and palette.ndim == 2
    if not (is_palette and palette.shape[1] == 3):
        got = f"{getattr(palette, 'dtype', type(palette).__name__)} {getattr(palette, 'shape', '')}"
        raise ValueError(f"`palette` must be a uint8 (k, 3) numpy array, got {got}")
    k = palette.shape[0]
    if not 1 <= k <= 256:
        raise ValueError(f"`palette` must have between 1 and 256 colours, got {k}")
    if k < 256 and (top := int(indices.max())) >= k:
        raise ValueError(f"`indices` contains index {top} but the palette has only {k} colours")
    h, w = indices.shape
    return _png(w, h, 3, palette.tobytes(), _deflate(_unfiltered_rows(indices), "indexed"))


def encode_rgb_png(rgb: np.ndarray) -> bytes:
    """encode an RGB image as a truecolour PNG (colour type 2, bit depth 8), much faster than Pillow

    the fallback for images with more than 256 distinct colours: filter None, deflated as the module
    docstring says. About the size of Pillow's RGB PNG, 10-30x faster; 2-3x the time and size of the
    indexed encoding of the same picture.

    # Parameters:
     - `rgb : np.ndarray`
       uint8 (h, w, 3) pixels, h and w >= 1; any memory layout

    # Returns:
     - `bytes`
       the PNG file

    # Raises:
     - `ValueError` for a wrong dtype or shape, or an empty image
    """
    _check_image(rgb, "rgb", 3)
    if rgb.shape[2] != 3:
        raise ValueError(f"`rgb` must have 3 channels, got shape {rgb.shape}")
    h, w, _ = rgb.shape
    return _png(w, h, 2, None, _deflate(_unfiltered_rows(rgb), "rgb"))


def gzip_bytes(data: bytes) -> bytes:
    """gzip `data` (for .svgz files) quickly and reproducibly

    an svgz is mostly base64 of an already deflated PNG: no repeated strings for LZ77 to find, only
    the 6-bit alphabet for Huffman coding to exploit, so the fastest deflate settings lose little:
    isal level 1 (or zlib Huffman-only) was 1.6x (64x64) to 16x (2048x2048) faster than the
    reference's level 9 and 0-4% larger (benchmarks/bench_png_encoders.py).
    The 10-byte header is written here, not by zlib: mtime 0, no file name, OS byte 255
    ("unknown"), so the output depends neither on the time nor on the platform zlib was built for.

    # Parameters:
     - `data : bytes`
       the uncompressed bytes (any bytes-like object)

    # Returns:
     - `bytes`
       a gzip member that `gzip.decompress` turns back into `data`
    """
    body = _deflate(data, "gzip", wbits=-15)  # raw deflate: header and trailer are ours
    # magic, CM=8 (deflate), FLG=0, MTIME=0, XFL=4 ("fastest algorithm"), OS=255
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"
    trailer = struct.pack("<II", _crc32(data), memoryview(data).nbytes & 0xFFFFFFFF)
    return b"".join((header, body, trailer))


# ----------------------------------------------------------------------------------------------------
# text chunks: a few bytes of metadata that travel inside the image (the head summaries' previews
# carry their head's statistics this way, so a resumed run recovers them without reading the layer)

_IHDR_END: int = len(PNG_SIGNATURE) + 8 + 13 + 4  # signature, then IHDR: length + type, 13 data bytes, CRC


def with_text(png: bytes, keyword: str, text: str) -> bytes:
    """`png` with a `tEXt` chunk `keyword` = `text` right after its IHDR (before the image data)

    # Parameters:
     - `png : bytes` a PNG file, e.g. from `encode_indexed_png`
     - `keyword : str` 1-79 printable Latin-1 characters, no leading, trailing or double spaces (PNG spec)
     - `text : str` Latin-1 text (JSON from `json.dumps` is ASCII)

    # Returns:
     - `bytes` the PNG with the chunk; decoders ignore it (ancillary), Pillow shows it in `Image.info`

    # Raises:
     - `ValueError` for a keyword or text the chunk cannot hold, or bytes that do not start with a PNG's IHDR
    """
    if not (1 <= len(keyword) <= 79) or keyword != keyword.strip() or "  " in keyword or not keyword.isprintable():
        raise ValueError(f"PNG text keyword must be 1-79 printable characters without edge or double spaces, got {keyword!r}")
    if png[: len(PNG_SIGNATURE)] != PNG_SIGNATURE or png[len(PNG_SIGNATURE) + 4 : len(PNG_SIGNATURE) + 8] != b"IHDR":
        raise ValueError("not a PNG starting with its IHDR chunk")
    try:
        data = keyword.encode("latin-1") + b"\0" + text.encode("latin-1")
    except UnicodeEncodeError as e:
        raise ValueError(f"PNG tEXt holds Latin-1 text only: {e}") from None
    return b"".join((png[:_IHDR_END], _chunk(b"tEXt", data), png[_IHDR_END:]))


def read_text(data: bytes, keyword: str) -> str | None:
    """the text of the first `tEXt` chunk named `keyword` before the image data of a PNG, or `None`

    Reads the chunks in order up to the first IDAT (where `with_text` puts them); a chunk that runs
    past the end or whose CRC-32 does not match ends the search (`None`): a damaged file tells nothing.
    """
    if data[: len(PNG_SIGNATURE)] != PNG_SIGNATURE:
        return None
    pos, key = len(PNG_SIGNATURE), keyword.encode("latin-1") + b"\0"
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        tag = data[pos + 4 : pos + 8]
        end = pos + 8 + length
        if tag == b"IDAT" or end + 4 > len(data):
            return None
        body = data[pos + 8 : end]
        if struct.unpack_from(">I", data, end)[0] != _crc32(body, _crc32(tag)):
            return None
        if tag == b"tEXt" and body.startswith(key):
            return body[len(key) :].decode("latin-1")
        pos = end + 4
    return None
