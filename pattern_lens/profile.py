"""export profiles: `"exact"` writes the reference's bytes, `"fast"` the same pixels in less time and space

The active profile lives in a `contextvars.ContextVar`, so it is per thread and per asyncio task, and
a pipeline sets it explicitly inside every joblib task (a worker process starts with the default).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal, get_args, overload

__all__ = ["ExportProfile", "EXPORT_PROFILES", "DEFAULT_EXPORT_PROFILE", "export_profile"]

ExportProfile = Literal["exact", "fast"]
"names of the export profiles"

EXPORT_PROFILES: tuple[str, ...] = get_args(ExportProfile)
"every valid profile name"

DEFAULT_EXPORT_PROFILE: ExportProfile = "exact"
"the profile in force outside any `export_profile(...)` block: the reference's bytes"

_ACTIVE: ContextVar[str] = ContextVar("pattern_lens_export_profile", default=DEFAULT_EXPORT_PROFILE)


def _check(name: str) -> str:
    if name not in EXPORT_PROFILES:
        raise ValueError(f"unknown export profile {name!r}: expected one of {EXPORT_PROFILES}")
    return name


@contextmanager
def _activate(name: str) -> Iterator[str]:
    token = _ACTIVE.set(_check(name))
    try:
        yield name
    finally:
        _ACTIVE.reset(token)


@overload
def export_profile() -> str: ...
@overload
def export_profile(name: str): ...
def export_profile(name: str | None = None):
    """select an export profile for a block of code, or read the active one

    # Parameters:
     - `name : str | None`
       `"exact"` (the reference's PNG bytes and SVG text) or `"fast"` (indexed PNGs with the same
       decoded RGB pixels, written several times faster and about half the size).
       (defaults to `None`: return the active profile's name instead of a context manager)

    # Returns:
     - `str` when called without a name: the active profile, `"exact"` unless inside a block
     - a context manager otherwise; `with export_profile("fast"): ...`

    # Raises:
     - `ValueError` for an unknown profile name
    """
    if name is None:
        return _ACTIVE.get()
    return _activate(name)
