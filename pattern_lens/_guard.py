"""the one guard between a data folder's content and the file system: names read from a folder become paths here

A data folder is untrusted input (a colleague's `attn_data`, a download): model names, prompt hashes,
`sanitized_name`, figure names and file names found in it are data, and only this module turns them
into paths. Every reader and writer (render, the gallery, the server, `stats`) goes through it:

- `check_name(name, what)`: one path component: a non-empty string, not `.` or `..`, without `/`,
  `\\`, NUL or other control characters, at most `MAX_NAME_BYTES` bytes as UTF-8.
- `check_hash(h, what)`: a prompt hash: `check_name`, and only letters, digits and `_-=.`.
- `leaves_root(path, root)`: why `path` (symbolic links followed, as far as it exists) is not inside
  `root`, or `None`: a link inside the folder pointing outside is refused, for reading as for writing,
  and so is a link loop.
- `inside(root, *names, what=...)`: `root / name / ...` after `check_name` on each name and
  `leaves_root` on the result; the one call a new reader or writer needs.
- `is_inside(path, root)`: the same test as a bool (for the server's per-request check).

Every refusal is an `InputError` whose message says what was refused, where it came from and why.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pattern_lens._errors import InputError

__all__ = ["MAX_NAME_BYTES", "shown", "check_name", "check_hash", "leaves_root", "is_inside", "inside", "resolved_root"]

MAX_NAME_BYTES: int = 255
"the longest path component most file systems take (ext4, APFS, NTFS: 255)"

_CONTROL: re.Pattern = re.compile(r"[\x00-\x1f\x7f]")
_SAFE_HASH: re.Pattern = re.compile(r"^[A-Za-z0-9_\-=.]+$")


def shown(name: object) -> str:
    """`repr(name)`, cut to 80 characters (a name of 100,000 characters is not printed whole)"""
    text = repr(name)
    return text if len(text) <= 80 else f"{text[:60]}...{text[-12:]} ({len(str(name))} characters)"


def check_name(name: object, what: str = "name") -> str:
    """`name` when it is one safe path component, else `InputError` saying why

    # Parameters:
     - `name : object` the value read from the data folder
     - `what : str` what it is and where it was read, for the message (defaults to `"name"`)

    # Raises:
     - `InputError` for a non-string, an empty name, `.`, `..`, a `/` or `\\`, NUL or another control
       character, or a name longer than `MAX_NAME_BYTES` bytes
    """
    if not isinstance(name, str):
        raise InputError(f"{what}: {shown(name)} is not a string (expected a file or folder name)")
    why = None
    if name in ("", ".", ".."):
        why = "empty or a dot name"
    elif "/" in name or "\\" in name:
        why = "has a path separator: a name may not leave its folder"
    elif "\x00" in name:
        why = "has a NUL character"
    elif _CONTROL.search(name):
        why = "has a control character"
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        why = f"is longer than {MAX_NAME_BYTES} bytes"
    if why is not None:
        raise InputError(f"{what}: {shown(name)} is not a folder name ({why}); refused")
    return name


def check_hash(prompt_hash: object, what: str = "prompt hash") -> str:
    """a prompt hash that is a plain folder name (letters, digits, `_-=.`; not `.` or `..`)

    # Raises:
     - `InputError` otherwise (see `check_name`)
    """
    check_name(prompt_hash, what)
    if not _SAFE_HASH.match(prompt_hash):  # type: ignore[arg-type]
        raise InputError(f"{what}: {shown(prompt_hash)} is not a folder name (expected letters, digits, '_-=.'); refused")
    return prompt_hash  # type: ignore[return-value]


def _unresolvable(path: Path | str, e: BaseException) -> str:
    return f"{path}: cannot be resolved ({type(e).__name__}: {' '.join(str(e).split())}; a symbolic link loop?); refused"


def resolved_root(root: Path | str) -> Path:
    """`root` with its links resolved (the save path itself may be a link)

    # Raises:
     - `InputError` when it cannot be resolved (a link loop)
    """
    try:
        return Path(root).resolve()
    except (RuntimeError, OSError, ValueError) as e:
        raise InputError(_unresolvable(root, e)) from None


def leaves_root(path: Path | str, root: Path | str | None) -> str | None:
    """why reading or writing `path` would leave the folder `root`, or `None` when it stays inside

    `path` is resolved (symbolic links followed, as far as it exists); `root` is taken as resolved
    (see `resolved_root`); `root=None` checks nothing. A path that cannot be resolved (a link loop,
    a NUL) is refused too.
    """
    if root is None:
        return None
    try:
        resolved = Path(path).resolve()
    except (RuntimeError, OSError, ValueError) as e:
        return _unresolvable(path, e)
    if resolved == Path(root) or resolved.is_relative_to(root):
        return None
    return f"{path}: leads outside the save path {root} (to {resolved}, through a symbolic link); refused"


def is_inside(path: Path | str, root: Path | str) -> bool:
    """whether `path` (links followed) is `root` or under it; `root` resolved by the caller"""
    try:
        real = os.path.realpath(path, strict=False)
    except (OSError, ValueError):
        return False
    root = os.fspath(root)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def inside(root: Path | str, *names: object, what: str = "name") -> Path:
    """`root / names[0] / names[1] / ...`, each name one safe component, the result inside `root`

    # Parameters:
     - `root : Path | str` the save path (or a folder under it); resolved here
     - `*names : object` names read from the data folder
     - `what : str` what the names are and where they were read, for the message

    # Returns:
     - `Path` the joined path, under `root` as given (not resolved)

    # Raises:
     - `InputError` when a name is not a safe component (`check_name`) or the path leads outside
       `root` through a symbolic link, or is a link loop
    """
    path = Path(root)
    for name in names:
        path = path / check_name(name, what)
    if (outside := leaves_root(path, resolved_root(root))) is not None:
        raise InputError(outside)
    return path
