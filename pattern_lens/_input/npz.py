"""read a prompt's attention patterns from its `activations.npz`, one layer at a time

An `.npz` is a zip archive with one `.npy` member per key. The reader parses the archive's central
directory itself (`zipdir`), reads a member's compressed bytes in one call and inflates them in one
call into the array's memory (`inflate`: libdeflate when installed), checks the CRC-32, and memory
maps a stored (uncompressed) member instead of copying it, so a task that renders a few heads of it
reads only their pages. That is 2.4-2.7x faster than `numpy.load` per compressed layer here
(benchmarks/README.md). An archive or member it does not cover (split archive, encryption, another
compression method, a `.npy` format version 3 header) goes through `numpy.load` as before, with the
same checks.

Reading layer by layer keeps the memory of a worker at about one layer (n_heads x n_ctx x n_ctx
floats), where the reference loads every layer of a prompt at once. A `.npy` header is checked
against the member's size and the config's heads before anything is allocated: a header claiming a
shape the file cannot hold is an error for that prompt, not a `MemoryError`.

Every problem with the input is raised as `ActivationsError`, whose message names the file, the key
and what was expected, so the pipeline can report it and go on with the other prompts and layers.
"""

from __future__ import annotations

import io
import math
import mmap
import zipfile
import zlib
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from collections.abc import Sequence

import numpy as np

from pattern_lens._errors import InputError
from pattern_lens._layout import layer_key
from pattern_lens._input import zipdir
from pattern_lens._input.inflate import INFLATE_ERRORS, crc32, inflate

__all__ = [
    "ActivationsError",
    "ActivationsFile",
    "nonfinite_heads",
    "peek_n_ctx",
]


class ActivationsError(InputError, ValueError):
    """an `activations.npz` is missing, unreadable, or does not hold the expected patterns (an `InputError`, and a `ValueError` as before)"""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path: Path = Path(path)
        super().__init__(f"{self.path}: {message}")


# errors that a truncated or corrupted zip member raises while it is decompressed or parsed
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    zipfile.BadZipFile,
    NotImplementedError,  # zipfile: a compression method or zip version it does not know
    RuntimeError,  # zipfile: an encrypted member
    *INFLATE_ERRORS,
)

_MAX_DEFLATE_RATIO: int = 1032
"deflate cannot expand a byte into more than ~1032: a member claiming more is corrupted"

_HEADER_PREFIX: int = 1 << 16
"compressed bytes read for a header alone: more than any header allowed (`_NPY_MAX_HEADER`) takes deflated"

_NPY_MAGIC: bytes = b"\x93NUMPY"
_NPY_MAX_HEADER: int = 10_000
"numpy's own limit on a `.npy` header's length (`max_header_size`)"


class _NpyHeader:
    """a `.npy` header: dtype, shape, order, and where the data starts"""

    __slots__ = ("dtype", "shape", "fortran_order", "data_offset")

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...], fortran_order: bool, data_offset: int) -> None:
        self.dtype, self.shape, self.fortran_order, self.data_offset = dtype, shape, fortran_order, data_offset

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _npy_header_length(prefix: bytes) -> int:
    """bytes the `.npy` header takes, from its first 12 bytes"""
    if len(prefix) < 10 or prefix[:6] != _NPY_MAGIC:
        raise ValueError("not a .npy array (no numpy magic string)")
    major = prefix[6]
    if major == 1:
        n = 10 + int.from_bytes(prefix[8:10], "little")
    elif major in (2, 3) and len(prefix) >= 12:
        n = 12 + int.from_bytes(prefix[8:12], "little")
    else:
        raise ValueError(f"unsupported .npy format version {major}.{prefix[7]}")
    if n > _NPY_MAX_HEADER + 12:
        raise ValueError(f".npy header of {n} bytes, over numpy's limit of {_NPY_MAX_HEADER}")
    return n


def _parse_npy_header(head: bytes) -> _NpyHeader:
    """parse a complete `.npy` header with numpy's own parser (which checks its form)

    Version 3 differs from 2 only in allowing UTF-8 field names, which no floating point array has.
    """
    f = io.BytesIO(head)
    try:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f, max_header_size=_NPY_MAX_HEADER)
    except Exception as e:  # noqa: BLE001 (a garbled header makes numpy's parser raise SyntaxError, TokenError, ...)
        raise ValueError(f"unreadable .npy header ({type(e).__name__}: {e})") from e
    return _NpyHeader(dtype, tuple(int(n) for n in shape), bool(fortran), len(head))


def _inflate_prefix(compressed: memoryview, n: int) -> bytes:
    """the first `n` inflated bytes of a raw deflate stream (for the `.npy` header)"""
    d = zlib.decompressobj(-15)
    out = d.decompress(compressed[: n + 1024], n)
    if len(out) < n and not d.eof:  # a header that compressed badly: give it all it needs
        out += d.decompress(d.unconsumed_tail + compressed[n + 1024 : 2 * n + 1024], n - len(out))
    return out


def _not_found(path: Path) -> ActivationsError:
    return ActivationsError(path, "activations file not found (expected the prompt's activations.npz)")


def _unreadable(path: Path, e: BaseException) -> ActivationsError:
    return ActivationsError(
        path,
        f"cannot read activations ({type(e).__name__}: {e}); expected a .npz archive "
        "written by numpy.savez / numpy.savez_compressed",
    )


class ActivationsFile:
    """a lazily read `activations.npz`: the archive is opened once, a layer is read only when asked for

    # Parameters:
     - `path : Path | str`
       the prompt's `activations.npz`
     - `n_heads : int | None`
       heads each layer must have (the model config's `n_heads`); `None` accepts any number
       (defaults to `None`)

    # Raises:
     - `ActivationsError` when the file is missing or is not a readable `.npz` archive

    # Usage:
    ```python
    with ActivationsFile(prompt_dir / "activations.npz", n_heads=12) as acts:
        layer = acts.read_layer(3)  # float array (n_heads, n_ctx, n_ctx)
    ```
    """

    def __init__(self, path: Path | str, n_heads: int | None = None) -> None:
        self.path: Path = Path(path)
        self.n_heads: int | None = n_heads
        self._npz: np.lib.npyio.NpzFile | None = None
        self._members: dict[str, zipdir.Member] | None = None
        if not self.path.is_file():
            raise _not_found(self.path)
        try:
            self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        except FileNotFoundError:
            raise _not_found(self.path) from None
        except OSError as e:
            raise _unreadable(self.path, e) from e
        try:
            self._size: int = self.path.stat().st_size
            self._members = zipdir.read_directory(self._file, self._size)
        except zipdir.NotAZip:
            # np.load would read any non-zip file as a pickle and complain about pickled data
            self._file.close()
            raise ActivationsError(
                self.path,
                "cannot read activations: not a .npz (zip) archive; expected one written by "
                "numpy.savez / numpy.savez_compressed",
            ) from None
        except OSError as e:
            self._file.close()
            raise _unreadable(self.path, e) from e
        if self._members is None:  # an archive the direct reader does not cover
            try:
                self._open_npz()
            except ActivationsError:
                self._file.close()
                raise

    def _open_npz(self) -> np.lib.npyio.NpzFile:
        """the archive through `numpy.load` (the path for what the direct reader does not cover)"""
        if self._npz is None:
            try:
                npz = np.load(self.path, allow_pickle=False)
            except FileNotFoundError:
                raise _not_found(self.path) from None
            except _READ_ERRORS as e:
                raise _unreadable(self.path, e) from e
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ActivationsError(
                    self.path, "holds a single array, expected a .npz archive with one key per layer"
                )
            self._npz = npz
        return self._npz

    def __enter__(self) -> ActivationsFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """close the archive (arrays already read stay valid)"""
        self._file.close()
        if self._npz is not None:
            self._npz.close()

    @property
    def keys(self) -> list[str]:
        """every key in the archive (for the message naming what was found instead of a missing key)"""
        if self._members is None:
            return list(self._open_npz().files)
        return [n[:-4] if n.endswith(".npy") else n for n in self._members]

    def read_layer(self, layer: int) -> np.ndarray:
        """read and check one layer's attention patterns

        # Parameters:
         - `layer : int`
           layer index; the key read is `blocks.<layer>.attn.hook_pattern`

        # Returns:
         - `np.ndarray`
           float array of shape `(n_heads, n_ctx, n_ctx)` (the stored `(1, n_heads, n_ctx, n_ctx)`
           without its batch axis; a view, no copy: of a memory map for a stored member)

        # Raises:
         - `ActivationsError` when the key is absent, unreadable (truncated, corrupted: CRC-32), not
           floating point, or not of shape `(1, n_heads, n_ctx, n_ctx)`; the header's dtype and
           shape are checked against the member's size before any memory is allocated
        """
        key: str = layer_key(layer)
        member = self._member(key)
        if member is None or not member.covered:
            arr = self._read_with_numpy(key)
        else:
            arr = self._read_member(key, member)
        return arr[0]

    def is_stored(self, layer: int) -> bool:
        """whether the layer is a stored (not deflated) member that `read_layer` memory-maps
        (`ActivationsError` when the key is absent)"""
        member = self._member(layer_key(layer))
        return member is not None and member.covered and member.method == zipdir.STORED

    def layer_shape(self, layer: int) -> tuple[int, ...]:
        """the shape a layer's header declares, read without its data (`ActivationsError` as `read_layer`)"""
        key: str = layer_key(layer)
        member = self._member(key)
        if member is None or not member.covered:
            return self._numpy_header(key).shape
        try:
            h = self._member_header(member, zipdir.member_data_offset(self._file, member, self._size), header_only=True)[0]
        except _READ_ERRORS as e:
            raise self._cannot_read(key, e) from e
        self._check_header(key, h, member.size)
        return h.shape

    # -- helpers ----------------------------------------------------------------------------------

    def _member(self, key: str) -> zipdir.Member | None:
        """the key's member (`None`: read it with numpy); `ActivationsError` when absent"""
        if self._members is not None:
            found = self._members.get(key + ".npy")
            if found is not None:
                return found
        elif key in self._open_npz().files:
            return None
        names = sorted(self.keys)
        shown: str = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise ActivationsError(
            self.path,
            f"no key {key!r} (found {len(names)} keys: {shown or 'none'}); expected one "
            "'blocks.<L>.attn.hook_pattern' per layer",
        )

    def _cannot_read(self, key: str, e: BaseException) -> ActivationsError:
        if isinstance(e, ActivationsError):
            return e
        return ActivationsError(self.path, f"cannot read key {key!r} ({type(e).__name__}: {e})")

    def _check_header(self, key: str, h: _NpyHeader, size: int) -> None:
        """refuse a header that cannot be right, before allocating anything for its data"""
        if h.dtype.hasobject:
            raise ActivationsError(
                self.path,
                f"cannot read key {key!r} (ValueError: Object arrays cannot be loaded when allow_pickle=False)",
            )
        if not np.issubdtype(h.dtype, np.floating):
            raise ActivationsError(
                self.path,
                f"key {key!r} has dtype {h.dtype}, expected floating point attention patterns",
            )
        shape = h.shape
        heads_ok: bool = self.n_heads is None or (len(shape) == 4 and shape[1] == self.n_heads)
        if len(shape) != 4 or shape[0] != 1 or shape[2] != shape[3] or shape[2] == 0 or not heads_ok:
            expected: str = f"(1, {self.n_heads if self.n_heads is not None else 'n_heads'}, n_ctx, n_ctx)"
            raise ActivationsError(self.path, f"key {key!r} has shape {shape}, expected {expected}")
        if h.data_offset + h.nbytes > size:  # more bytes after the array are ignored, as numpy.load does
            raise ActivationsError(
                self.path,
                f"cannot read key {key!r}: its .npy header declares {h.dtype} of shape {shape} "
                f"({h.nbytes} bytes) but the member holds {size - h.data_offset} bytes of data "
                "(a corrupted or truncated file)",
            )

    def _member_header(
        self, m: zipdir.Member, start: int, header_only: bool = False
    ) -> tuple[_NpyHeader, memoryview | None]:
        """a member's `.npy` header, and its compressed bytes when they were read for it (all of them,
        unless `header_only`: then a prefix, enough for any header numpy writes)"""
        if m.method == zipdir.STORED:
            if m.size != m.compressed_size:
                raise ValueError(f"stored member of {m.compressed_size} bytes claims {m.size} bytes")
            self._file.seek(start)
            prefix = self._file.read(min(m.size, 12))
            n = _npy_header_length(prefix)
            self._file.seek(start)
            return _parse_npy_header(self._file.read(min(n, m.size))), None
        if m.size > m.compressed_size * _MAX_DEFLATE_RATIO + 64:
            raise ValueError(f"{m.compressed_size} deflated bytes cannot inflate to the {m.size} bytes claimed")
        self._file.seek(start)
        want = min(m.compressed_size, _HEADER_PREFIX) if header_only else m.compressed_size
        comp = memoryview(self._file.read(want))
        if len(comp) != want:
            raise EOFError(f"read {len(comp)} of the member's {m.compressed_size} bytes")
        n = _npy_header_length(_inflate_prefix(comp, 12))
        return _parse_npy_header(_inflate_prefix(comp, n)), comp

    def _read_member(self, key: str, m: zipdir.Member) -> np.ndarray:
        """one member read directly: inflated in one call, or memory-mapped when stored"""
        try:
            start = zipdir.member_data_offset(self._file, m, self._size)
            h, comp = self._member_header(m, start)
            self._check_header(key, h, m.size)
            count = math.prod(h.shape)
            if comp is None:  # stored: map the member's pages (copy-on-write: the array is writable)
                base = start - start % mmap.ALLOCATIONGRANULARITY
                mm = mmap.mmap(self._file.fileno(), start + m.size - base, offset=base, access=mmap.ACCESS_COPY)
                data = memoryview(mm)[start - base :]
                offset = start - base + h.data_offset
            else:
                data = inflate(comp, m.size)
                if len(data) != m.size:
                    raise ValueError(f"inflated to {len(data)} bytes, the archive says {m.size}")
                offset = h.data_offset
                mm = data
            if crc32(data) != m.crc:
                raise zipfile.BadZipFile(f"Bad CRC-32 for file {m.name!r}: the data is corrupted")
            arr = np.frombuffer(mm, dtype=h.dtype, count=count, offset=offset)
            if not arr.flags.aligned or not arr.flags.writeable:
                # a stored member at an odd offset in the zip maps unaligned (numpy.load gives aligned
                # arrays; kernels and torch may assume it), and the isal / zlib fallbacks return bytes
                arr = arr.copy()
        except _READ_ERRORS as e:
            raise self._cannot_read(key, e) from e
        if h.fortran_order:
            return arr.reshape(h.shape[::-1]).transpose()
        return arr.reshape(h.shape)

    def _numpy_header(self, key: str) -> _NpyHeader:
        npz = self._open_npz()
        name = key + ".npy"
        try:
            size = npz.zip.getinfo(name).file_size
            with npz.zip.open(name) as f:
                prefix = f.read(12)
                h = _parse_npy_header(prefix + f.read(_npy_header_length(prefix) - len(prefix)))
        except (KeyError, *_READ_ERRORS) as e:
            raise self._cannot_read(key, e) from e
        self._check_header(key, h, size)
        return h

    def _read_with_numpy(self, key: str) -> np.ndarray:
        """one member through `numpy.load` (what the direct reader does not cover), header checked first"""
        self._numpy_header(key)
        try:
            return self._open_npz()[key]
        except _READ_ERRORS as e:
            raise self._cannot_read(key, e) from e


def nonfinite_heads(layer_patterns: np.ndarray, heads: Sequence[int] | None = None) -> dict[int, int]:
    """heads holding NaN or infinite values, with how many

    # Parameters:
     - `layer_patterns : np.ndarray`
       one layer, shape `(n_heads, n_ctx, n_ctx)`
     - `heads : Sequence[int] | None`
       check only these (a batch of a memory-mapped layer then reads only its own heads' pages)
       (defaults to `None`: every head)

    # Returns:
     - `dict[int, int]`
       head index -> number of non-finite values; empty when every value is finite
    """
    if heads is not None:
        return {h: n for h in heads for n in nonfinite_heads(layer_patterns[h : h + 1]).values()}
    # fast path (one vectorised pass): a NaN or inf anywhere makes the sum non-finite; a finite sum
    # means every value is finite. Only a non-finite sum (or an overflow of huge finite values,
    # which the exact count below then clears) costs the per-head count.
    if np.isfinite(layer_patterns.sum()):
        return {}
    bad: np.ndarray = ~np.isfinite(layer_patterns.reshape(layer_patterns.shape[0], -1))
    return {int(h): int(n) for h, n in enumerate(np.count_nonzero(bad, axis=1)) if n}


def peek_n_ctx(path: Path | str, layer: int = 0) -> int | None:
    """read `n_ctx` from the header of one layer's array without reading its data

    used only to size the work when a prompt does not record `n_tokens`

    # Parameters:
     - `path : Path | str`
       an `activations.npz`
     - `layer : int`
       (defaults to `0`)

    # Returns:
     - `int | None`
       the last axis of the stored array, `None` when the file or key cannot be read (the error
       is reported when the layer is actually processed)
    """
    try:
        with ActivationsFile(path) as acts:
            shape = acts.layer_shape(layer)
    except ActivationsError:
        return None
    return int(shape[-1]) if shape else None
