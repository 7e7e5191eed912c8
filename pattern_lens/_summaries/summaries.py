"""head summaries in the render pass: statistics and a preview of every head, from the layer read for its figures

A worker that renders a head also summarises it (`add_head`), from the same pattern in memory: it
writes the head's preview (`L<layer>/H<head>/preview.png`) and sends the head's statistics back in its
`TaskResult`. The parent (`PromptStatsWriter`) collects them and writes one file per prompt,
`<prompt_dir>/head_stats.json`, once every selected head of that prompt is accounted for, merged with
the heads the file already holds (other layers / heads of earlier runs). Only the parent writes it,
atomically (temporary file + rename), so tasks rendering different layers of one prompt at the same
time never race on it and a killed run never leaves it half-written.

Resuming, like the figures: a head is summarised when its preview is missing or broken, or the
prompt's file (with this run's settings) lacks its row, or with `force`. Each preview also carries
its head's row in a PNG text chunk (`PREVIEW_TEXT_KEY`): after a kill, the heads whose previews were
written but whose rows never reached the parent are completed from their previews, without reading
their layers again, and the rerun writes the same bytes an uninterrupted run writes (values are
deterministic; rows are sorted).

# `head_stats.json` (format version 1)

One JSON object:

```
{"format": "pattern_lens.head_stats", "version": 1,
 "statistics": ["entropy", "prev_token", ...],        # the statistic keys, in this order
 "local_window": 8,                                   # w of the `local` statistic
 "preview": {"file": "preview.png", "size": 64, "cmap": "Blues"},
 "heads": [
  {"layer": 0, "head": 0, "n_ctx": 256, "causal": true, "min": 0.0, "max": 1.0, "entropy": 0.81, ..., "key_max_position": 0},
  ...
 ]}
```

- `heads`: one object per summarised head, sorted by `(layer, head)`, one per line. Keys: `layer`,
  `head` (ints), `n_ctx` (int, the pattern's side), `causal` (bool: measured with the causal mask),
  `min`, `max` (floats: the whole pattern's extremes, the range the `raw` figure is normalised to),
  then every key of `statistics`: a float (7 significant digits), or `null` where undefined (no row with a choice);
  `key_max_position` is an int. Definitions: `pattern_lens._summaries.stats`.
- the preview of head `(L, H)` is `L<L>/H<H>/<preview.file>` beside the file: a PNG of at most
  `size` x `size` pixels (exactly `n_ctx` x `n_ctx`, and the same pixels as the `raw` figure, when
  `n_ctx <= size`), coloured with `cmap` after min-max normalisation. `figures.jsonl` lists it as
  the figure `preview` (format `png`), so a viewer finds it like any figure.
- a reader should check `format` and `version`, and take the statistic names from `statistics`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pattern_lens._errors import PatternLensError
from pattern_lens._export.extremes import known_extremes
from pattern_lens._export.png_fast import read_text
from pattern_lens._json_limits import load_json_file, loads_bounded
from pattern_lens._export.preview import PREVIEW_CMAP, preview_png
from pattern_lens._layout import (
    HEAD_STATS_FILE,
    HEAD_STATS_FORMAT,
    HEAD_STATS_VERSION,
    PREVIEW_FILE,
    PREVIEW_NAME,
    READS_ONLY_ATTR,
)
from pattern_lens._output.atomic import atomic_write_bytes, write_text_if_changed
from pattern_lens._output.outputs import discard_broken, figure_func_name
from pattern_lens._summaries.stats import LOCAL_WINDOW, PREVIEW_SIZE, STATISTICS, HeadSummary, summarize_head
from pattern_lens._summaries.summary import TaskResult

__all__ = [
    "SUMMARY_FAILURE_NAME",
    "SummarySpec",
    "summary_spec",
    "indexed_funcs",
    "PREVIEW_TEXT_KEY",
    "head_row",
    "summary_needed",
    "first_pass",
    "add_head",
    "read_head_stats_file",
    "load_head_stats_file",
    "format_head_stats",
    "PromptStatsWriter",
]


SUMMARY_FAILURE_NAME: str = "summaries"
"the name under which a head that could not be summarised is counted in the run's failures"

PREVIEW_TEXT_KEY: str = "pattern_lens.head_stats"
"""keyword of the preview's `tEXt` chunk: `{"header": <the file's header>, "row": <the head's row>}`
as JSON, so a run killed before the parent wrote `head_stats.json` loses no statistics"""

_PREVIEW_TEXT_READ: int = 1 << 16  # the chunk comes right after IHDR: the first 64 KiB hold it


@dataclass(frozen=True)
class SummarySpec:
    """what to summarise and how; carried by every task

    # Fields:
     - `preview_size : int` largest preview side (defaults to `PREVIEW_SIZE`)
     - `local_window : int` `w` of the `local` statistic (defaults to `LOCAL_WINDOW`)
     - `cmap : str` preview colormap (defaults to `PREVIEW_CMAP`)
     - `causal : bool | None` measure with the causal mask; `None` decides per head from its values
       (defaults to `None`; the pipeline passes the model config's `attention_dir`)
    """

    preview_size: int = PREVIEW_SIZE
    local_window: int = LOCAL_WINDOW
    cmap: str = PREVIEW_CMAP
    causal: bool | None = None

    def header(self) -> dict:
        """the file's fields other than `heads`: a file whose header differs is stale"""
        return {
            "format": HEAD_STATS_FORMAT,
            "version": HEAD_STATS_VERSION,
            "statistics": list(STATISTICS),
            "local_window": self.local_window,
            "preview": {"file": PREVIEW_FILE, "size": self.preview_size, "cmap": self.cmap},
        }


def summary_spec(model_cfg: object, preview_size: int = PREVIEW_SIZE) -> SummarySpec:
    """the run's `SummarySpec`: causal from the model config's `attention_dir` when it says

    `"causal"` -> measured with the causal mask, `"bidirectional"` -> full rows; absent or another
    value -> decided per head from its values (`pattern_lens._summaries.stats.is_causal`).

    # Raises:
     - `PatternLensError` for a `preview_size` below 1
    """
    if isinstance(preview_size, bool) or not isinstance(preview_size, (int, np.integer)) or preview_size < 1:
        raise PatternLensError(f"preview_size must be a positive number of pixels, got {preview_size!r}")
    direction = getattr(model_cfg, "attention_dir", None)
    causal = {"causal": True, "bidirectional": False}.get(direction) if isinstance(direction, str) else None
    return SummarySpec(preview_size=int(preview_size), causal=causal)


def _json_number(value: float) -> float | None:
    # 7 significant digits: the statistics are accurate to about 1e-6 relative (float32 logs)
    return None if math.isnan(value) else float(f"{value:.7g}")


def head_row(layer: int, head: int, summary: HeadSummary) -> dict:
    """the `heads` entry of one head"""
    row: dict = {"layer": int(layer), "head": int(head), "n_ctx": summary.n_ctx, "causal": summary.causal}
    # the range `raw` is normalised to: the page's colour -> weight
    row.update(min=_json_number(float(summary.minimum)), max=_json_number(float(summary.maximum)))
    for name, value in summary.stats.items():
        row[name] = _json_number(value)
    if row["key_max_position"] is not None:
        row["key_max_position"] = int(row["key_max_position"])
    return row


def format_head_stats(spec: SummarySpec, rows: Iterable[dict]) -> str:
    """the file's text: the header, then `heads` sorted by `(layer, head)`, one per line"""
    ordered = sorted(rows, key=lambda r: (r["layer"], r["head"]))
    head = json.dumps(spec.header())[:-1]  # without the closing brace
    body = ",\n".join(json.dumps(r) for r in ordered)
    return f'{head}, "heads": [\n{body}\n]}}\n' if ordered else f'{head}, "heads": []}}\n'


def read_head_stats_file(path: Path | str) -> dict | None:
    """a prompt's `head_stats.json` as a dict, or `None` when missing, unreadable, or not this format and version"""
    try:
        return load_head_stats_file(path)
    except ValueError:
        return None


def load_head_stats_file(path: Path | str) -> dict | None:
    """a prompt's `head_stats.json` as a dict, `None` when there is none

    # Raises:
     - `ValueError` saying what is wrong with a file that is there but damaged (unreadable, a
       folder, not JSON, not this format, another version, no `heads` list)
    """
    path = Path(path)
    if not os.path.lexists(path):
        return None
    data = load_json_file(path)  # bounded: a hostile file costs a message, not a crash
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != HEAD_STATS_FORMAT:
        raise ValueError(f"{path}: 'format' is {str(data.get('format'))[:40]!r}, expected {HEAD_STATS_FORMAT!r}")
    if data.get("version") != HEAD_STATS_VERSION:  # another version's fields may mean other things
        raise ValueError(f"{path}: version {str(data.get('version'))[:20]}, this release reads {HEAD_STATS_VERSION}")
    if not isinstance(data.get("heads"), list):
        raise ValueError(f"{path}: no 'heads' list")
    return data


def _rows_for(data: dict | None, spec: SummarySpec) -> dict[tuple[int, int], dict]:
    """the file's rows when it was written with `spec`'s settings, by `(layer, head)`"""
    if data is None or {k: data.get(k) for k in spec.header()} != spec.header():
        return {}
    # a damaged row (a list or a string for its layer) is dropped: the head is summarised again
    return {(r["layer"], r["head"]): r for r in data["heads"] if isinstance(r, dict) and _index(r.get("layer")) and _index(r.get("head"))}


def _index(v: object) -> bool:
    """whether `v` is a layer or head number as a statistics row holds it: an int, not a bool"""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


@functools.lru_cache(maxsize=16)
def _done_heads(path: str, mtime_ns: int, size: int, spec: SummarySpec) -> frozenset[tuple[int, int]]:
    del mtime_ns, size  # part of the cache key only: a rewritten file is read again
    return frozenset(_rows_for(read_head_stats_file(path), spec))


def _heads_in_file(prompt_dir: str, spec: SummarySpec) -> frozenset[tuple[int, int]]:
    path = os.path.join(prompt_dir, HEAD_STATS_FILE)
    try:
        st = os.stat(path)
    except OSError:
        return frozenset()
    return _done_heads(path, st.st_mtime_ns, st.st_size, spec)


_COMPACT = (",", ":")


@functools.lru_cache(maxsize=16)
def _header_json(spec: SummarySpec) -> str:
    return json.dumps(spec.header(), separators=_COMPACT)


def _preview_text(spec: SummarySpec, row: dict) -> str:
    """what a preview carries: the head's row and the settings it was computed with, as
    `json.dumps({"header": spec.header(), "row": row})` (compact), the header's part made once"""
    return f'{{"header":{_header_json(spec)},"row":{json.dumps(row, separators=_COMPACT)}}}'


def _row_in_preview(path: Path, spec: SummarySpec, layer: int, head: int) -> dict | None:
    """the statistics row a complete preview carries, if computed with `spec`'s settings for this head"""
    try:
        with open(path, "rb") as f:
            data = f.read(_PREVIEW_TEXT_READ)
        carried = loads_bounded(read_text(data, PREVIEW_TEXT_KEY) or "null", str(path))
    except (OSError, ValueError):  # unreadable, or JSON that is not
        return None
    if not isinstance(carried, dict) or carried.get("header") != spec.header():
        return None
    row = carried.get("row")
    if not isinstance(row, dict) or row.get("layer") != layer or row.get("head") != head:
        return None
    return row


def summary_needed(
    spec: SummarySpec | None,
    res: TaskResult,
    prompt_dir: str,
    layer: int,
    head: int,
    save_dir: Path,
    listing: set[str],
    force: bool,
) -> bool:
    """whether a head must be summarised now (its layer read); a row it already has goes into `res`

    Needed: with `force`, when its preview is missing or not a complete PNG (a broken one is deleted
    and reported in `res.repaired`, like a broken figure), or when the prompt's file lacks its row
    and the preview does not carry one computed with these settings. A row carried by the preview
    (a run killed before the parent wrote the prompt's file) is put into `res.head_stats`, so the
    file is completed without reading the layer again.
    """
    if spec is None:
        return False
    if force or PREVIEW_FILE not in listing or discard_broken(save_dir, PREVIEW_FILE, listing, res.repaired):
        return True
    if (layer, head) in _heads_in_file(prompt_dir, spec):
        return False
    row = _row_in_preview(save_dir / PREVIEW_FILE, spec, layer, head)
    if row is None:
        return True
    res.head_stats.setdefault(prompt_dir, []).append(row)
    return False


@contextlib.contextmanager
def first_pass(
    spec: SummarySpec | None, pattern: np.ndarray, funcs: Sequence[Callable]
) -> Iterator[HeadSummary | Exception | None]:
    """the head's summary before its figure functions run, its min and max known to them meanwhile

    Yields the summary (or the `ValueError` / `TypeError` it ended with, for `add_head` to report)
    when `spec` is given and every function in `funcs` leaves its input as it is
    (`READS_ONLY_ATTR`, e.g. `raw`): within the block, the `raw` figure's normalisation takes the
    pattern's min and max from the summary's pass (`pattern_lens._export.extremes`) instead of two
    numpy passes. Otherwise yields `None`: `add_head` summarises after the figures, as it reads
    whatever they left in the pattern.
    """
    if spec is None or not all(getattr(f, READS_ONLY_ATTR, False) is True for f in funcs):
        yield None
        return
    try:
        summary = summarize_head(pattern, spec.causal, spec.local_window, spec.preview_size)
    except (ValueError, TypeError) as e:
        yield e
        return
    with known_extremes(pattern, summary.minimum, summary.maximum):
        yield summary


def add_head(
    spec: SummarySpec,
    res: TaskResult,
    prompt_dir: str,
    layer: int,
    head: int,
    save_dir: Path,
    pattern: np.ndarray,
    early: HeadSummary | Exception | None = None,
) -> None:
    """summarise one head: write its preview (carrying its row), put its statistics into `res.head_stats`

    `early`: what `first_pass` yielded for this head (`None`: summarise `pattern` now).
    A pattern that cannot be summarised (negative values, ...) or a preview that cannot be written
    counts as a failure named `SUMMARY_FAILURE_NAME`; the figures are not affected.
    """
    try:
        if isinstance(early, Exception):
            raise early
        summary = early if early is not None else summarize_head(pattern, spec.causal, spec.local_window, spec.preview_size)
        row = head_row(layer, head, summary)
        clip = summary.causal and summary.preview.shape[0] < summary.n_ctx  # blocks, not the pattern itself
        png = preview_png(summary.preview, spec.cmap, (PREVIEW_TEXT_KEY, _preview_text(spec, row)), clip_first_block=clip)
        atomic_write_bytes(Path(save_dir) / PREVIEW_FILE, png)
    except (ValueError, TypeError, OSError) as e:
        res.add_failure(SUMMARY_FAILURE_NAME, f"{type(e).__name__}: {e}", str(save_dir))
        return
    res.n_summarised += 1
    res.head_stats.setdefault(prompt_dir, []).append(row)


def preview(attn_matrix: np.ndarray, save_dir: Path | str) -> None:
    """the head's preview: block averages of the pattern, min-max normalised, "Blues" (as `raw`)

    At most S x S pixels (`--preview-size`, default 64), exactly the pattern when it is no larger.
    Written by the render pass for every head it summarises, with the head's statistics in a text
    chunk; listed in `figures.jsonl` as `preview`. Usable as a figure function (default size, no
    statistics), but not registered: the render pass makes it from the same pass as the statistics.
    """
    atomic_write_bytes(Path(save_dir) / PREVIEW_FILE, preview_png(summarize_head(attn_matrix, None, LOCAL_WINDOW, PREVIEW_SIZE).preview))


preview.figure_save_fmt = "png"  # type: ignore[attr-defined]


def indexed_funcs(funcs: Sequence[Callable], spec: SummarySpec | None) -> list[Callable]:
    """what `figures.jsonl` lists besides the registered functions: `funcs`, and with summaries the
    heads' `preview`

    # Raises:
     - `PatternLensError` when summaries are on and a figure function is named like the preview
    """
    if spec is None:
        return list(funcs)
    if PREVIEW_NAME in {figure_func_name(f) for f in funcs}:
        raise PatternLensError(
            f"a figure function named {PREVIEW_NAME!r} would overwrite the heads' previews: rename it "
            "or pass summaries=False (--no-summaries)"
        )
    return [*funcs, preview]


class PromptStatsWriter:
    """the parent's side: collect the statistics from task results, write each prompt's file when complete

    # Parameters:
     - `spec : SummarySpec`
     - `heads_per_prompt : int` selected heads per prompt (layers x heads)
     - `on_error : Callable[[str], None]` called with a one-line message for a file that cannot be
       written (the run reports it and goes on; its heads are summarised again by the next run)

    The file is read, merged and replaced: two runs writing one prompt's file at the same moment may
    each drop the other's new rows; the next run completes it from the previews' text chunks.
    """

    def __init__(self, spec: SummarySpec, heads_per_prompt: int, on_error: Callable[[str], None]) -> None:
        self.spec = spec
        self.heads_per_prompt = heads_per_prompt
        self.on_error = on_error
        self._covered: dict[str, int] = {}  # prompt folder -> heads of it accounted for so far
        self._rows: dict[str, list[dict]] = {}

    def add(self, res: TaskResult) -> None:
        """take one task's result; write the files of the prompts it completed"""
        for prompt_dir, rows in res.head_stats.items():
            self._rows.setdefault(prompt_dir, []).extend(rows)
        for prompt_dir, n in res.heads_covered.items():
            self._covered[prompt_dir] = self._covered.get(prompt_dir, 0) + n
            if self._covered[prompt_dir] >= self.heads_per_prompt:
                self._write(prompt_dir)

    def close(self) -> None:
        """write what is left (prompts some of whose heads never came back)"""
        for prompt_dir in list(self._rows):
            self._write(prompt_dir)

    def _write(self, prompt_dir: str) -> None:
        new = self._rows.pop(prompt_dir, [])
        path = Path(prompt_dir) / HEAD_STATS_FILE
        if not new:
            return  # nothing summarised here: the file (if any) already holds every head
        rows = _rows_for(read_head_stats_file(path), self.spec)
        rows.update({(r["layer"], r["head"]): r for r in new})
        try:
            write_text_if_changed(path, format_head_stats(self.spec, rows.values()))
        except OSError as e:
            self.on_error(f"{path}: cannot write the head statistics ({type(e).__name__}: {e})")
