"""atomic file writes: a crash or SIGKILL never leaves a truncated output behind

Every writer goes to a temporary file in the destination folder (same filesystem, so the final
`os.replace` is atomic), then renames it into place. Temporary names start with `.` and end with
`.tmp`, so a resumed run (and `figures.jsonl` indexing) never mistakes them for outputs.
"""

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_text_if_changed", "atomic_path", "TMP_SUFFIX"]

TMP_SUFFIX: str = ".tmp"
"suffix of the temporary files this module creates (and cleans up on error)"


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """yield a temporary path beside `path`; on success rename it to `path`, on error delete it"""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _atomic_write(path: Path | str, mode: str, write: Callable[[IO], object], **open_kw) -> None:
    with atomic_path(path) as tmp, open(tmp, mode, **open_kw) as f:
        write(f)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """write `data` to `path` atomically"""
    _atomic_write(path, "wb", lambda f: f.write(data))


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """write `text` to `path` atomically"""
    _atomic_write(path, "w", lambda f: f.write(text), encoding=encoding)


def write_text_if_changed(path: Path | str, text: str) -> None:
    """write `text` to `path` atomically, unless the file already holds exactly that (keeps its mtime)"""
    path = Path(path)
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)
