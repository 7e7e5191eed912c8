"""inflate a whole raw-deflate stream in one call, and its CRC-32, with the fastest library installed

libdeflate (the `deflate` package) inflates a member whose size is known in one call at about 900
MiB/s here, ISA-L (`isal`, already a dependency for the fast profile's PNGs) at about 510 MiB/s and
the standard library's zlib at about 420 MiB/s; libdeflate's CRC-32 is about 13x zlib's
(benchmarks/README.md, "Reading the input"). Each is tried in that order, so the reader works, slower,
without the optional ones.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

__all__ = ["inflate", "crc32", "INFLATE_ERRORS", "INFLATE_LIBRARY"]

INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error,)
"exceptions a corrupted stream raises in `inflate`"


def _zlib_inflate(data, size: int) -> bytearray:
    # a bytearray, as libdeflate returns: arrays over it are writable, like numpy.load's
    return bytearray(zlib.decompress(data, -15, max(size, 1)))


inflate: Callable[[object, int], bytearray] = _zlib_inflate
"`inflate(raw_deflate_bytes, size)` -> the inflated bytes, writable (`size`: the expected length, exact)"
crc32: Callable[[object], int] = zlib.crc32
"`crc32(buffer)` -> the CRC-32 of the bytes"
INFLATE_LIBRARY: str = "zlib"
"which library `inflate` uses: `libdeflate`, `isal` or `zlib`"

try:
    import deflate as _deflate
except ImportError:  # optional: fall back to isal, then zlib
    try:
        from isal import isal_zlib as _isal_zlib
    except ImportError:
        pass
    else:

        def _isal_inflate(data, size: int) -> bytearray:
            return bytearray(_isal_zlib.decompress(data, -15, max(size, 1)))

        inflate = _isal_inflate
        INFLATE_ERRORS = (zlib.error, _isal_zlib.error)
        INFLATE_LIBRARY = "isal"
else:

    def _libdeflate_inflate(data, size: int) -> bytearray:
        # libdeflate needs an output at least as long as the result: it is the member's size
        return _deflate.deflate_decompress(data, max(size, 1))

    inflate = _libdeflate_inflate
    crc32 = _deflate.crc32
    INFLATE_ERRORS = (zlib.error, _deflate.DeflateError)
    INFLATE_LIBRARY = "libdeflate"
