"""the adapter to per-head summaries (statistics and small previews), read only where present

Another part of the package (the head summaries) may write, beside the figures:

- per prompt, one JSON file of per-head statistics: `<model>/prompts/<hash>/<STATS_FILE>`;
- per head and figure, a small preview PNG: `<model>/prompts/<hash>/L<l>/H<h>/<PREVIEW_FILE>`
  with `{figure}` replaced by the figure's name.

THE FILE NAMES ARE HERE AND NOWHERE ELSE: the gallery's page gets them from the generated index
data (`gallery.py` writes `SUMMARY_NAMES` into it), so wiring other names is editing this one dict.
The page works without either file; the gallery only looks at what exists.

A statistics file may have any of these shapes (all are read into `{stat: [[value per head] per
layer]}`, with `None` where a head has no value):

- `{"heads": [{"layer": 0, "head": 1, "entropy": 0.5, ...}, ...]}`, or that list alone;
- `{"L0": {"H1": {"entropy": 0.5, ...}, ...}, ...}` (the folder names);
- `{"entropy": [[...per head...] per layer], ...}`, optionally under a `"stats"` key.

Only finite numbers are kept; anything else in the file is ignored, and a file that is not one
of these shapes counts as absent (with a warning from the caller).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

__all__ = ["SUMMARY_NAMES", "preview_file_name", "read_head_stats"]

SUMMARY_NAMES: dict[str, str] = {
    "stats": "head_stats.json",
    "preview": "{figure}.preview.png",
}
"file names of the optional summaries: `stats` per prompt folder, `preview` per head folder (`{figure}` filled in)"

_LAYER = re.compile(r"L(\d+)$")
_HEAD = re.compile(r"H(\d+)$")


def preview_file_name(figure: str) -> str:
    """the preview file of `figure` in a head folder"""
    return SUMMARY_NAMES["preview"].replace("{figure}", figure)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _put(out: dict[str, dict[tuple[int, int], float]], layer: int, head: int, stats: dict) -> None:
    for name, value in stats.items():
        v = _number(value)
        if v is not None and name not in ("layer", "head"):
            out.setdefault(str(name), {})[(layer, head)] = v


def _collect(data) -> dict[str, dict[tuple[int, int], float]]:
    out: dict[str, dict[tuple[int, int], float]] = {}
    if isinstance(data, dict) and isinstance(data.get("heads"), list):
        data = data["heads"]
    if isinstance(data, dict) and isinstance(data.get("stats"), dict):
        data = data["stats"]
    if isinstance(data, list):  # rows with layer and head
        for row in data:
            if isinstance(row, dict) and isinstance(row.get("layer"), int) and isinstance(row.get("head"), int):
                _put(out, row["layer"], row["head"], row)
        return out
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        layer_match = _LAYER.match(str(key))
        if layer_match and isinstance(value, dict):  # {"L0": {"H1": {...}}}
            for head_key, stats in value.items():
                head_match = _HEAD.match(str(head_key))
                if head_match and isinstance(stats, dict):
                    _put(out, int(layer_match.group(1)), int(head_match.group(1)), stats)
        elif isinstance(value, list) and all(isinstance(row, list) for row in value):  # {"stat": [[...]]}
            for layer, row in enumerate(value):
                for head, v in enumerate(row):
                    v = _number(v)
                    if v is not None:
                        out.setdefault(str(key), {})[(layer, head)] = v
    return out


def read_head_stats(prompt_dir: Path, n_layers: int, n_heads: int) -> dict[str, list[list[float | None]]] | None:
    """the statistics of every head of one prompt, `{stat: [[value per head] per layer]}`

    # Returns:
     - `dict` as above (stats sorted by name), or `None` when the file is absent
    # Raises:
     - `ValueError` naming the file when it is present but unreadable or of no known shape
    """
    path = Path(prompt_dir) / SUMMARY_NAMES["stats"]
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read head statistics ({e})") from e
    collected = _collect(data)
    if not collected:
        raise ValueError(f"{path}: no per-head numbers found (expected one of the shapes in pattern_lens._view.summaries)")
    return {
        name: [[values.get((layer, head)) for head in range(n_heads)] for layer in range(n_layers)]
        for name, values in sorted(collected.items())
    }
