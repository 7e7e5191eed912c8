"""read a prompt's attention patterns from its `activations.npz`, one layer at a time

An `.npz` is a zip archive with one `.npy` member per key, so `np.load` only reads the central
directory and a member is decompressed when its key is indexed. Reading layer by layer keeps the
memory of a worker at about one layer (n_heads x n_ctx x n_ctx floats), where the reference loads
every layer of a prompt at once.

Every problem with the input is raised as `ActivationsError`, whose message names the file, the key
and what was expected, so the pipeline can report it and go on with the other prompts and layers.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from types import TracebackType

import numpy as np

from pattern_lens._errors import InputError
from pattern_lens._layout import layer_key
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
        if not self.path.is_file():
            raise ActivationsError(
                self.path, "activations file not found (expected the prompt's activations.npz)"
            )
        # np.load would read any non-zip file as a pickle and complain about pickled data
        if not zipfile.is_zipfile(self.path):
            raise ActivationsError(
                self.path,
                "cannot read activations: not a .npz (zip) archive; expected one written by "
                "numpy.savez / numpy.savez_compressed",
            )
        try:
            self._npz = np.load(self.path, allow_pickle=False)
        except FileNotFoundError:
            raise ActivationsError(
                self.path, "activations file not found (expected the prompt's activations.npz)"
            ) from None
        except _READ_ERRORS as e:
            raise ActivationsError(
                self.path,
                f"cannot read activations ({type(e).__name__}: {e}); expected a .npz archive "
                "written by numpy.savez / numpy.savez_compressed",
            ) from e
        if not isinstance(self._npz, np.lib.npyio.NpzFile):
            raise ActivationsError(
                self.path, "holds a single array, expected a .npz archive with one key per layer"
            )

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
        """close the archive"""
        self._npz.close()

    def read_layer(self, layer: int) -> np.ndarray:
        """read and check one layer's attention patterns

        # Parameters:
         - `layer : int`
           layer index; the key read is `blocks.<layer>.attn.hook_pattern`

        # Returns:
         - `np.ndarray`
           float array of shape `(n_heads, n_ctx, n_ctx)` (the stored `(1, n_heads, n_ctx, n_ctx)`
           without its batch axis; a view, no copy)

        # Raises:
         - `ActivationsError` when the key is absent, unreadable, not floating point, or not of
           shape `(1, n_heads, n_ctx, n_ctx)`
        """
        key: str = layer_key(layer)
        if key not in self._npz.files:
            found: list[str] = sorted(self._npz.files)
            shown: str = ", ".join(found[:8]) + (", ..." if len(found) > 8 else "")
            raise ActivationsError(
                self.path,
                f"no key {key!r} (found {len(found)} keys: {shown or 'none'}); expected one "
                "'blocks.<L>.attn.hook_pattern' per layer",
            )
        try:
            arr: np.ndarray = self._npz[key]
        except _READ_ERRORS as e:
            raise ActivationsError(
                self.path, f"cannot read key {key!r} ({type(e).__name__}: {e})"
            ) from e
        if not np.issubdtype(arr.dtype, np.floating):
            raise ActivationsError(
                self.path,
                f"key {key!r} has dtype {arr.dtype}, expected floating point attention patterns",
            )
        heads_ok: bool = self.n_heads is None or (arr.ndim == 4 and arr.shape[1] == self.n_heads)
        if (
            arr.ndim != 4
            or arr.shape[0] != 1
            or arr.shape[2] != arr.shape[3]
            or arr.shape[2] == 0
            or not heads_ok
        ):
            expected: str = f"(1, {self.n_heads if self.n_heads is not None else 'n_heads'}, n_ctx, n_ctx)"
            raise ActivationsError(
                self.path, f"key {key!r} has shape {arr.shape}, expected {expected}"
            )
        return arr[0]


def nonfinite_heads(layer_patterns: np.ndarray) -> dict[int, int]:
    """heads holding NaN or infinite values, with how many

    # Parameters:
     - `layer_patterns : np.ndarray`
       one layer, shape `(n_heads, n_ctx, n_ctx)`

    # Returns:
     - `dict[int, int]`
       head index -> number of non-finite values; empty when every value is finite
    """
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
        with zipfile.ZipFile(path) as zf, zf.open(layer_key(layer) + ".npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(f)
    except (KeyError, *_READ_ERRORS):
        return None
    return int(shape[-1]) if shape else None
