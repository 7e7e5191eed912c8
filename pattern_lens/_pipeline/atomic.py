"""atomic file writes: a killed process (SIGKILL, Ctrl-C, an exception) never leaves a truncated output

Every writer goes to a temporary file in the destination folder (same filesystem, so the final
`os.replace` is atomic), then renames it into place. There is no fsync: after an operating-system
crash or power loss a just-renamed file may still be empty. The final file gets the permissions a
plain `open(path, "w")` would give it (0666 less the umask), not mkstemp's private 0600. Temporary
names start with `.` and end with `.tmp`, so a resumed run (and `figures.jsonl` indexing) never
mistakes them for outputs, and hold the writer's pid and host (`_layout.temp_prefix`): a run deletes a
temporary file only when it is stale (`is_stale_temp`), never one another live run is writing.
"""

import os
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pattern_lens._layout import TMP_SUFFIX, temp_owner, temp_prefix, this_host

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "write_text_if_changed",
    "atomic_path",
    "is_stale_temp",
    "remove_stale_temp",
    "owner_gone",
    "STALE_TEMP_SECONDS",
]

STALE_TEMP_SECONDS: float = 600.0
"""a temporary file untouched this long is stale whoever made it: its writer on another machine (or
an older version, without pid in the name) is gone, or its pid was reused"""


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this run may be writing it
    if os.name != "posix":
        return True  # no cheap check: only the age rule applies
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: alive, another user's
        return True
    return True


def owner_gone(pid: int, host: str) -> bool:
    """whether the process `pid` on machine `host` (as `_layout.this_host` names it) is known to be
    gone: only a process of this machine can be checked; another machine's is never known gone"""
    return host == this_host() and not _pid_alive(pid)


def is_stale_temp(path: Path | str, now: float | None = None) -> bool:
    """whether a temporary file of an atomic write was left by a process that is gone

    Stale: written on this machine by a process that no longer exists, or not modified for
    `STALE_TEMP_SECONDS` (from another machine sharing the folder, or with no owner in its name).
    A missing file is not stale (someone else already removed or renamed it).
    """
    path = Path(path)
    owner = temp_owner(path.name)
    if owner is not None and owner_gone(*owner):
        return True
    try:
        age = (time.time() if now is None else now) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    return age > STALE_TEMP_SECONDS


def remove_stale_temp(path: Path | str) -> bool:
    """delete the temporary file `path` if `is_stale_temp`; whether it was deleted"""
    if not is_stale_temp(path):
        return False
    try:
        os.unlink(path)
    except OSError:  # gone already, or not ours to delete (permissions): leave it
        return False
    return True


def _umask() -> int:
    # the only portable way to read the umask is to set it; done once, at import (single-threaded)
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE: int = 0o666 & ~_umask()


@contextmanager
def _temp_beside(path: Path) -> Iterator[tuple[int, Path]]:
    """an open temporary file beside `path` with the final file's mode: `(fd, tmp_path)`; renamed to
    `path` on success, deleted on error. The caller owns `fd` and must close it (closing it here
    after the caller did could close a descriptor another thread has opened since)."""
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name, owned=True), suffix=TMP_SUFFIX, dir=path.parent)
    tmp_path = Path(tmp)
    try:
        try:
            try:
                mode = stat.S_IMODE(os.stat(path).st_mode)
            except FileNotFoundError:
                mode = _FILE_MODE
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            else:  # Windows
                os.chmod(tmp_path, mode)
        except BaseException:
            os.close(fd)
            raise
        yield fd, tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """yield a temporary path beside `path`; on success rename it to `path`, on error delete it

    The file renamed into place keeps the mode of the file it replaces, or else gets 0666 less
    the umask, as `open(path, "w")` would give it.
    """
    with _temp_beside(Path(path)) as (fd, tmp_path):
        os.close(fd)
        yield tmp_path


def _atomic_write(path: Path | str, mode: str, data: bytes | str, **open_kw) -> None:
    # written through the descriptor mkstemp opened: creating a file is the expensive part of a small
    # write on these disks (~0.27 ms measured), so the temporary file is not opened a second time
    with _temp_beside(Path(path)) as (fd, _):
        try:
            f = os.fdopen(fd, mode, **open_kw)
        except BaseException:
            os.close(fd)
            raise
        with f:
            f.write(data)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """write `data` to `path` atomically"""
    _atomic_write(path, "wb", data)


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """write `text` to `path` atomically"""
    _atomic_write(path, "w", text, encoding=encoding)


def write_text_if_changed(path: Path | str, text: str) -> None:
    """write `text` to `path` atomically, unless the file already holds exactly that (keeps its mtime)"""
    path = Path(path)
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)
