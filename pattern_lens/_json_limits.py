"""JSON read from a data folder, with limits: a hostile file costs a clear error, not a crash

`json.loads` recurses once per nesting level: a line of 100,000 `[` raised `RecursionError` and
stopped a whole render. Here a text nested deeper than `MAX_DEPTH` or longer than `MAX_BYTES` is a
`ValueError` naming where it came from; so is anything `json` itself refuses. Out, `dumps_strict`
writes standard JSON only (NaN and infinities become `null`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["MAX_DEPTH", "MAX_BYTES", "loads_bounded", "load_json_file", "finite", "dumps_strict"]

MAX_DEPTH: int = 64
"deepest nesting of arrays and objects accepted (the files pattern_lens writes nest 4 deep at most)"

MAX_BYTES: int = 256 * 1024 * 1024
"longest JSON text (one line of a `.jsonl` file, or a whole `.json` file) accepted"


def _too_deep(text: str, limit: int) -> bool:
    """whether `text` nests arrays/objects deeper than `limit` (brackets inside strings not counted)"""
    if text.count("[") + text.count("{") <= limit:
        return False  # cannot be deeper: the common case costs two counts
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def loads_bounded(text: str | bytes, source: str) -> object:
    """`json.loads(text)` within `MAX_BYTES` and `MAX_DEPTH`

    # Parameters:
     - `text : str | bytes` the JSON text
     - `source : str` where it was read (`"<file>:<line>"`), for the message

    # Raises:
     - `ValueError` `"<source>: ..."` for a text too long, too deep, or not JSON
    """
    if len(text) > MAX_BYTES:
        raise ValueError(f"{source}: {len(text)} bytes of JSON, more than the {MAX_BYTES} accepted")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{source}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if _too_deep(text, MAX_DEPTH):
        raise ValueError(f"{source}: JSON nested more than {MAX_DEPTH} levels deep; refused")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{source}: JSON nested too deeply; refused") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: not valid JSON ({e})") from None


def load_json_file(path: Path | str) -> object:
    """a whole `.json` file, bounded as `loads_bounded`

    # Raises:
     - `ValueError` naming the file when it cannot be read (missing, a folder, not UTF-8, not JSON,
       too long or too deep)
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ValueError(f"{path}: {size} bytes, more than the {MAX_BYTES} accepted")
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({type(e).__name__}: {e.strerror or e})") from None
    return loads_bounded(data, str(path))


def finite(value: object) -> object:
    """`value` with every NaN or infinite float (at any depth) made `None`"""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps_strict(value: object, **kwargs) -> str:
    """`json.dumps` of `finite(value)`, refusing anything that is not standard JSON"""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
