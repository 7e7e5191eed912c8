"""atomic file writes: a killed process (SIGKILL, Ctrl-C, an exception) never leaves a truncated output

Every writer goes to a temporary file in the destination folder (same filesystem, so the final
`os.replace` is atomic), then renames it into place. There is no fsync: after an operating-system
crash or power loss a just-renamed file may still be empty. The final file gets the permissions a
plain `open(path, "w")` would give it (0666 less the umask), not mkstemp's private 0600. Temporary names start with `.` and end with
`.tmp`, so a resumed run (and `figures.jsonl` indexing) never mistakes them for outputs.
"""

import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from pattern_lens._layout import TMP_SUFFIX, temp_prefix

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_text_if_changed", "atomic_path"]



def _umask() -> int:
    # the only portable way to read the umask is to set it; done once, at import (single-threaded)
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE: int = 0o666 & ~_umask()


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """yield a temporary path beside `path`; on success rename it to `path`, on error delete it

    The file renamed into place keeps the mode of the file it replaces, or else gets 0666 less
    the umask, as `open(path, "w")` would give it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=TMP_SUFFIX, dir=path.parent)
    tmp_path = Path(tmp)
    try:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = _FILE_MODE
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        else:  # Windows
            os.chmod(tmp_path, mode)
        os.close(fd)
        fd = -1
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
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
