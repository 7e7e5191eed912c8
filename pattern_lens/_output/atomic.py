"""atomic file writes: a killed process (SIGKILL, Ctrl-C, an exception) never leaves a truncated output

Every writer goes to a temporary file in the destination folder (same filesystem, so the final
`os.replace` is atomic), then renames it into place. There is no fsync: after an operating-system
crash or power loss a just-renamed file may still be empty. A new file gets the permissions a plain
`open(path, "w")` would give it (0666 less the umask), a replaced one keeps its own. Temporary
names start with `.` and end with `.tmp`, so a resumed run (and `figures.jsonl` indexing) never
mistakes them for outputs, and hold the writer's pid and host (`_layout.temp_prefix`): a run deletes a
temporary file only when it is stale (`is_stale_temp`), never one another live run is writing.
"""

import os
import signal
import stat
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
    return not _dying(pid)


_SIGKILL_BIT: int = 1 << (int(getattr(signal, "SIGKILL", 9)) - 1)


def _dying(pid: int) -> bool:
    """whether `pid` exists but will write nothing more: a zombie (killed, not yet reaped by the
    process that inherited it: a SIGKILLed run's workers, for a moment after a rerun starts) or a
    process with SIGKILL pending (in a system call, dying when it returns). Linux's /proc; elsewhere
    `False`"""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            status = {key: value.split() for key, _, value in (line.partition(":") for line in f)}
    except OSError:
        return False
    if status.get("State", [""])[:1] in (["Z"], ["X"]):
        return True
    try:
        return any(int(status[k][0], 16) & _SIGKILL_BIT for k in ("SigPnd", "ShdPnd") if status.get(k))
    except ValueError:  # not the format this reads: nothing known
        return False


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


_CREATE_FLAGS: int = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_NOINHERIT", 0) | getattr(os, "O_CLOEXEC", 0)
)
_TEMP_TRIES: int = 100


def _create_temp(path: Path) -> tuple[int, str]:
    """create a new temporary file beside `path` (`O_EXCL`, a random name part): `(fd, its path)`

    Its mode: 0666 less the umask in force, as `open()` gives a new file; when `path` exists, its
    permission bits (`0o777`: setuid and the like are cleared by any write that is not root's).
    `tempfile.mkstemp`'s recipe with `os.open` called directly: mkstemp's 0600 then an `fchmod`
    cost a third of a small atomic write here (0.21 against 0.12 ms); a replaced file's mode is
    set only when the umask took some of it away.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except FileNotFoundError:
        mode = None
    prefix = os.path.join(path.parent, temp_prefix(path.name, owned=True))
    for _ in range(_TEMP_TRIES):
        tmp = f"{prefix}{os.urandom(5).hex()}{TMP_SUFFIX}"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o666 if mode is None else mode)
        except FileExistsError:
            continue
        try:
            if mode is not None and stat.S_IMODE(os.fstat(fd).st_mode) != mode:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, mode)
                else:  # Windows
                    os.chmod(tmp, mode)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        return fd, tmp
    raise FileExistsError(f"{path.parent}: no free temporary file name for {path.name} in {_TEMP_TRIES} tries")


@contextmanager
def _temp_beside(path: Path) -> Iterator[tuple[int, str]]:
    """an open temporary file beside `path` with the final file's mode: `(fd, tmp_path)`; renamed to
    `path` on success, deleted on error. The caller owns `fd` and must close it (closing it here
    after the caller did could close a descriptor another thread has opened since)."""
    fd, tmp = _create_temp(path)
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """yield a temporary path beside `path`; on success rename it to `path`, on error delete it

    The file renamed into place keeps the mode of the file it replaces, or else gets 0666 less
    the umask, as `open(path, "w")` would give it.
    """
    with _temp_beside(Path(path)) as (fd, tmp):
        os.close(fd)
        yield Path(tmp)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data).cast("B")  # bytes, whatever the buffer's items: `os.write` may write part
    while view:
        view = view[os.write(fd, view) :]


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """write `data` to `path` atomically"""
    # through the descriptor the temporary file was created with: creating a file is the expensive
    # part of a small write on these disks, so it is not opened a second time
    with _temp_beside(Path(path)) as (fd, _):
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    """write `text` to `path` atomically"""
    atomic_write_bytes(path, text.encode(encoding))


def write_text_if_changed(path: Path | str, text: str) -> None:
    """write `text` to `path` atomically, unless the file already holds exactly that (keeps its mtime)"""
    path = Path(path)
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)
