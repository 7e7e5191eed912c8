"""the adapter to the head summaries (statistics and previews), read only where present

The render pass (`pattern_lens._summaries.summaries`) writes, beside the figures:

- per prompt, the statistics of its heads: `<model>/prompts/<hash>/<HEAD_STATS_FILE>`;
- per head, one preview: `<model>/prompts/<hash>/L<l>/H<h>/<PREVIEW_FILE>` (the pattern block-averaged
  to at most S x S, coloured like `raw`), listed in `figures.jsonl` as the figure `PREVIEW_NAME`.

The names come from `pattern_lens._layout` (their one home); the page gets them from the generated
index data. The page works without either file; the gallery only looks at what exists.

A statistics file may have any of these shapes (all are read into `{stat: [[value per head] per
layer]}`, with `None` where a head has no value):

- the render pass's (`{"format": "pattern_lens.head_stats", "version": 1, "statistics": [...],
  "heads": [...]}`): only the names in `statistics` are statistics (a row's `n_ctx` and `causal`
  describe the head, they are not offered for sorting); `n_ctx` is kept apart, per head;
- `{"heads": [{"layer": 0, "head": 1, "entropy": 0.5, ...}, ...]}`, or that list alone;
- `{"L0": {"H1": {"entropy": 0.5, ...}, ...}, ...}` (the folder names);
- `{"entropy": [[...per head...] per layer], ...}`, optionally under a `"stats"` key.

Without a `statistics` list every finite number but `layer`, `head` (and a row's `n_ctx`) is a
statistic; anything else in the file is ignored, and a file that is not one of these shapes, or of a
`head_stats` version this reader does not know, counts as absent (with a warning from the caller).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from pattern_lens._json_limits import load_json_file
from pattern_lens._layout import HEAD_STATS_FILE, HEAD_STATS_FORMAT, HEAD_STATS_VERSION, PREVIEW_FILE, PREVIEW_NAME

__all__ = ["HEAD_STATS_VERSIONS", "HeadStats", "page_names", "read_head_stats"]

HEAD_STATS_VERSIONS: tuple[int, ...] = (HEAD_STATS_VERSION,)
"the versions of that format this reader understands"

_NOT_STATS: frozenset[str] = frozenset({"layer", "head", "n_ctx", "causal", "min", "max"})
"keys of a row that name or describe the head: never offered as statistics"

_LAYER = re.compile(r"L(\d+)$")
_HEAD = re.compile(r"H(\d+)$")


@dataclass(frozen=True)
class HeadStats:
    """what a prompt's statistics file says about its heads

    # Fields:
     - `values : dict[str, list[list[float | None]]]` `{stat: [[value per head] per layer]}`, in the
       file's `statistics` order (else sorted by name)
     - `n_ctx : list[list[int | None]] | None` each head's pattern side where the file gives it (the
       page needs it to tell a full image from a preview), else `None`
     - `vmin`, `vmax : list[list[float | None]] | None` each head's smallest and largest weight where
       the file gives them (the range `raw` is normalised to: the page turns a colour bin into weights)
    """

    values: dict[str, list[list[float | None]]]
    n_ctx: list[list[int | None]] | None = None
    vmin: list[list[float | None]] | None = None
    vmax: list[list[float | None]] | None = None

    def page_data(self) -> dict:
        """what the page gets: `{"values": ..., "n_ctx": ..., "min": ..., "max": ...}`"""
        return {"values": self.values, "n_ctx": self.n_ctx, "min": self.vmin, "max": self.vmax}


def page_names() -> dict[str, str]:
    """the summaries' names the page needs, from `pattern_lens._layout`

    # Returns:
     - `dict` `preview_file` (in a head folder), `preview_figure` (its name among the figures),
       `stats_file` (in a prompt folder; shown in messages)
    """
    return {"preview_file": PREVIEW_FILE, "preview_figure": PREVIEW_NAME, "stats_file": HEAD_STATS_FILE}


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _put(out: dict[str, dict[tuple[int, int], float]], layer: int, head: int, stats: dict, names: set[str] | None) -> None:
    for name, value in stats.items():
        v = _number(value)
        if v is not None and (name in names if names is not None else name not in _NOT_STATS):
            out.setdefault(str(name), {})[(layer, head)] = v


def _statistic_names(data) -> list[str] | None:
    """the file's `statistics` list, when it has one"""
    names = data.get("statistics") if isinstance(data, dict) else None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return names
    return None


def _collect(data, names: list[str] | None) -> dict[str, dict[tuple[int, int], float]]:
    out: dict[str, dict[tuple[int, int], float]] = {}
    wanted = set(names) if names is not None else None
    if isinstance(data, dict) and isinstance(data.get("heads"), list):
        data = data["heads"]
    if isinstance(data, dict) and isinstance(data.get("stats"), dict):
        data = data["stats"]
    if isinstance(data, list):  # rows with layer and head
        for row in data:
            if isinstance(row, dict) and isinstance(row.get("layer"), int) and isinstance(row.get("head"), int):
                _put(out, row["layer"], row["head"], row, wanted)
        return out
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        layer_match = _LAYER.match(str(key))
        if layer_match and isinstance(value, dict):  # {"L0": {"H1": {...}}}
            for head_key, stats in value.items():
                head_match = _HEAD.match(str(head_key))
                if head_match and isinstance(stats, dict):
                    _put(out, int(layer_match.group(1)), int(head_match.group(1)), stats, wanted)
        elif isinstance(value, list) and all(isinstance(row, list) for row in value):  # {"stat": [[...]]}
            for layer, row in enumerate(value):
                for head, v in enumerate(row):
                    v = _number(v)
                    if v is not None:
                        out.setdefault(str(key), {})[(layer, head)] = v
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _sides(data, n_layers: int, n_heads: int, key: str = "n_ctx") -> list[list[int | float | None]] | None:
    """each head's `key` (`n_ctx`: an int; `min`, `max`: finite numbers) from the rows of `heads`,
    or `None` when no row gives one"""
    rows = data.get("heads") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        return None
    sides: dict[tuple[int, int], int | float] = {}
    for row in rows:
        if not (isinstance(row, dict) and _is_int(row.get("layer")) and _is_int(row.get("head"))):
            continue
        v = row.get(key)
        if _is_int(v) if key == "n_ctx" else (_number(v) is not None):
            sides[(row["layer"], row["head"])] = v if key == "n_ctx" else _number(v)
    if not sides:
        return None
    return [[sides.get((layer, head)) for head in range(n_heads)] for layer in range(n_layers)]


def _check_version(path: Path, data) -> None:
    if isinstance(data, dict) and data.get("format") == HEAD_STATS_FORMAT and data.get("version") not in HEAD_STATS_VERSIONS:
        raise ValueError(f"{path}: {HEAD_STATS_FORMAT} version {data.get('version')!r}, this gallery reads {list(HEAD_STATS_VERSIONS)}")


def read_head_stats(prompt_dir: Path, n_layers: int, n_heads: int) -> HeadStats | None:
    """the statistics of every head of one prompt, from its `HEAD_STATS_FILE`

    # Parameters:
     - `prompt_dir : Path` the prompt's folder
     - `n_layers : int`, `n_heads : int` the model's shape: heads outside it are ignored, heads the
       file lacks are `None`

    # Returns:
     - `HeadStats`, or `None` when the file is absent or lists no head

    # Raises:
     - `ValueError` naming the file when it is present but unreadable, of no known shape, or of an
       unknown version
    """
    path = Path(prompt_dir) / HEAD_STATS_FILE
    if not path.is_file():
        return None
    try:
        data = load_json_file(path)
    except ValueError as e:
        raise ValueError(f"cannot read head statistics: {e}") from None
    _check_version(path, data)
    names = _statistic_names(data)
    collected = _collect(data, names)
    if names is not None and not (isinstance(data.get("heads"), list) and data["heads"]):
        return None  # the render pass's file before any head of the prompt was summarised
    if not collected and names is None:
        raise ValueError(f"{path}: no per-head numbers found (expected one of the shapes in pattern_lens._view.summaries)")
    # the file's order of statistics (entropy, prev_token, ...) is the one its writer chose; a name
    # of the list without any number (undefined for every head) stays, so the page lists them all
    order = names if names is not None else sorted(collected)
    values = {
        name: [[collected.get(name, {}).get((layer, head)) for head in range(n_heads)] for layer in range(n_layers)]
        for name in order
    }
    return HeadStats(
        values=values, n_ctx=_sides(data, n_layers, n_heads),
        vmin=_sides(data, n_layers, n_heads, "min"), vmax=_sides(data, n_layers, n_heads, "max"),
    )
