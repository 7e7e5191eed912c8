"""writing a prompt's `activations.npz` one layer at a time, atomically, at a chosen deflate level

The file is the one `numpy.savez_compressed` writes (a zip archive, one `<key>.npy` member per
layer), readable by plain `numpy.load` and by the reference. Layers are written as they come out of
the forward pass, so a prompt's whole cache is never held for the file's sake. Level 6 is zlib's
default and `savez_compressed`'s (the reference's files); level 1 is only ~1.3x faster on attention
patterns for files about as small; level 0 stores the arrays uncompressed (~7x faster, full size).
Measured: benchmarks/README.md ("From a model").
"""

from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path

import numpy as np

from pattern_lens._output.atomic import atomic_path

__all__ = ["NpzWriter", "DEFAULT_COMPRESS_LEVEL"]

DEFAULT_COMPRESS_LEVEL: int = 6
"the reference's (`numpy.savez_compressed` uses zlib's default, 6)"


class NpzWriter:
    """an `.npz` being written: `add(key, array)` per member, then `close()` renames it into place

    # Parameters:
     - `path : Path | str` the final file
     - `compress_level : int` 0 (stored) to 9 (defaults to `DEFAULT_COMPRESS_LEVEL`)

    On an exception inside `with NpzWriter(...)`, or `abort()`, the temporary file is removed and
    no file appears at `path`.
    """

    def __init__(self, path: Path | str, compress_level: int = DEFAULT_COMPRESS_LEVEL) -> None:
        if not 0 <= int(compress_level) <= 9:
            raise ValueError(f"compress_level must be 0 (stored) to 9, not {compress_level!r}")
        self.path = Path(path)
        self._stack = contextlib.ExitStack()
        tmp: Path = self._stack.enter_context(atomic_path(self.path))
        self._zip = zipfile.ZipFile(
            tmp,
            "w",
            compression=zipfile.ZIP_STORED if compress_level == 0 else zipfile.ZIP_DEFLATED,
            compresslevel=None if compress_level == 0 else int(compress_level),
            allowZip64=True,
        )

    def add(self, key: str, array: np.ndarray) -> None:
        """write `array` as member `<key>.npy`"""
        with self._zip.open(key + ".npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)

    def close(self) -> None:
        """finish the archive and move it to `path`"""
        self._zip.close()
        self._stack.close()

    def abort(self) -> None:
        """drop the archive: nothing appears at `path`"""
        self._zip.close()
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> NpzWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
