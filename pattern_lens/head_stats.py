"""per-head statistics and previews: compute them for one pattern, read a run's, rank heads

The render pass (`pattern-lens render`, `figures_main`) writes, unless told not to, each prompt's
`head_stats.json` and each head's `preview.png` (format: `pattern_lens._summaries.summaries`;
definitions of the statistics: `pattern_lens._summaries.stats`). This module reads them back as a tidy
table (a list of dicts, one per prompt and head) and ranks heads by a statistic averaged over prompts,
which is what `pattern-lens stats` prints.

```python
from pattern_lens.head_stats import head_stats, load_head_stats, rank_heads
head_stats(attn)                                  # {"entropy": 0.41, "prev_token": 0.02, ...}
rows = load_head_stats("gpt2", "attn_data")       # [{"prompt": hash, "layer": 0, "head": 3, ...}, ...]
rank_heads("gpt2", "attn_data", "prev_token", top=5)  # [{"layer", "head", "mean", "std", ...}, ...]
```
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pattern_lens._errors import InputError
from pattern_lens._guard import check_hash, inside, leaves_root, resolved_root
from pattern_lens._input.inputs import model_folder, models_present, read_prompt_index
from pattern_lens._json_limits import dumps_strict
from pattern_lens._layout import HEAD_STATS_FILE, PROMPTS_INDEX
from pattern_lens._summaries.stats import LOCAL_WINDOW, PREVIEW_SIZE, STATISTICS, summarize_head
from pattern_lens._summaries.summaries import load_head_stats_file, preview
from pattern_lens.consts import DATA_DIR
from pattern_lens._command import positive_int

__all__ = [
    "STATISTICS",
    "LOCAL_WINDOW",
    "PREVIEW_SIZE",
    "head_stats",
    "head_preview",
    "preview",
    "load_head_stats",
    "rank_heads",
    "add_arguments",
    "run_from_args",
]

def head_stats(
    attn_matrix: np.ndarray, causal: bool | None = None, local_window: int = LOCAL_WINDOW
) -> dict[str, float]:
    """every statistic of `STATISTICS` for one head's pattern

    # Parameters:
     - `attn_matrix : np.ndarray` `(n_ctx, n_ctx)` pattern, finite values >= 0
     - `causal : bool | None` measure with the causal mask; `None` decides from the values above the
       diagonal (defaults to `None`)
     - `local_window : int` `w` of the `local` statistic (defaults to `LOCAL_WINDOW`)

    # Returns:
     - `dict[str, float]` statistic -> value (NaN where undefined)

    # Raises:
     - `ValueError` for a non-square pattern or a negative, NaN or inf value; `TypeError` for a non-array
    """
    return summarize_head(attn_matrix, causal, local_window).stats


def head_preview(attn_matrix: np.ndarray, size: int = PREVIEW_SIZE, causal: bool | None = None) -> np.ndarray:
    """the pattern block-averaged to at most `size` x `size` (the pattern itself when `n_ctx <= size`)

    # Parameters:
     - `attn_matrix : np.ndarray` `(n_ctx, n_ctx)` pattern
     - `size : int` largest side (defaults to `PREVIEW_SIZE`)
     - `causal : bool | None` average only `j <= i` in each block (defaults to `None`: decided
       from the values above the diagonal)

    # Returns:
     - `np.ndarray` `(k, k)`, `k = min(n_ctx, size)`
    """
    return summarize_head(attn_matrix, causal, LOCAL_WINDOW, size).preview


def _model_dir(model_name: str, save_path: Path | str) -> Path:
    """the model's folder, as `render` finds it (`model_folder`: older releases' names, nothing outside
    the save path); `InputError` listing the models present when absent"""
    model_dir = model_folder(save_path, model_name)
    if not model_dir.is_dir():
        raise InputError(f"model {model_name!r} not found: no folder {model_dir}; {models_present(Path(save_path))}")
    return model_dir


def load_head_stats(
    model_name: str, save_path: Path | str = DATA_DIR, n_samples: int | None = None
) -> list[dict]:
    """the statistics of every summarised head of every prompt, as a tidy table

    # Parameters:
     - `model_name : str`, `save_path : Path | str` the model folder `<save_path>/<model_name>`
       (defaults to `DATA_DIR`)
     - `n_samples : int | None` only the first `n_samples` prompts of `prompts.jsonl` (defaults to `None`: all)

    # Returns:
     - `list[dict]` one row per (prompt, head), in prompt order then `(layer, head)`: `prompt` (hash),
       `layer`, `head`, `n_ctx`, `causal`, and every statistic (`None` where undefined). Prompts
       without a `head_stats.json` are absent.

    # Raises:
     - `InputError` when the model folder is absent (the message lists the models present), or its
       `prompts.jsonl` is missing or unreadable
    """
    return [{k: v for k, v in row.items() if k != _NON_FINITE} for row in _read_table(model_name, save_path, n_samples).rows]


@dataclass
class _Table:
    """what `load_head_stats` read, and what it skipped: `damaged` (one message per file or prompt)"""

    rows: list[dict] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def _read_table(model_name: str, save_path: Path | str, n_samples: int | None) -> _Table:
    model_dir = _model_dir(model_name, save_path)
    index = model_dir / PROMPTS_INDEX
    prompts = [p for p in read_prompt_index(index) if isinstance(p, dict)]  # bad lines: render reports them
    if n_samples is not None:
        prompts = prompts[:n_samples]
    root = resolved_root(save_path)
    table = _Table()
    for i, prompt in enumerate(prompts, start=1):
        h = prompt.get("hash")
        try:  # the one guard: a hash that is a path, or a link leading out of the save path, is not read
            path = inside(model_dir, "prompts", check_hash(h, f"{index}: prompt {i} hash"), HEAD_STATS_FILE)
            if (outside := leaves_root(path, root)) is not None:
                raise InputError(outside)
            data = load_head_stats_file(path)
        except (InputError, ValueError) as e:
            table.damaged.append(str(e))
            continue
        if data is None:
            continue
        heads = data["heads"]
        tidy = [clean for row in heads if (clean := _tidy_row(row)) is not None]
        if len(tidy) < len(heads):
            table.damaged.append(f"{path}: {len(heads) - len(tidy)} of {len(heads)} rows without an integer layer and head, skipped")
        table.rows.extend({"prompt": h, **clean} for clean in tidy)
    return table


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tidy_row(row: object) -> dict | None:
    """a file's row with int `layer` and `head`, every statistic a number or `None`; `None` for a row
    without them (a file edited or written by something else must not stop a ranking)"""
    if not isinstance(row, dict) or not (_is_int(row.get("layer")) and _is_int(row.get("head"))):
        return None
    tidy = dict(row)
    for name in STATISTICS:
        v = tidy.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            tidy[name] = None  # NaN, infinite (a damaged or edited file), or not a number: undefined
            if isinstance(v, float) and not math.isfinite(v):
                tidy.setdefault(_NON_FINITE, []).append(name)
    return tidy


_NON_FINITE: str = "_non_finite"
"a tidy row's key listing its statistics that were NaN or infinite in the file (excluded, counted by `stats`)"


def rank_heads(
    model_name: str,
    save_path: Path | str = DATA_DIR,
    stat: str = "entropy",
    lowest: bool = False,
    top: int | None = None,
    n_samples: int | None = None,
    rows: list[dict] | None = None,
) -> list[dict]:
    """heads ranked by a statistic averaged over prompts, with its spread

    # Parameters:
     - `model_name : str`, `save_path : Path | str`, `n_samples : int | None`: see `load_head_stats`
     - `stat : str` a key of `STATISTICS` (defaults to `"entropy"`)
     - `lowest : bool` lowest mean first (defaults to `False`: highest first)
     - `top : int | None` keep the first `top` (defaults to `None`: all)
     - `rows : list[dict] | None` a table from `load_head_stats` to rank instead of reading the files
       (defaults to `None`)

    # Returns:
     - `list[dict]` per head: `layer`, `head`, `stat`, `mean`, `std` (population, over prompts),
       `min`, `max`, `n_prompts` (prompts where the statistic is defined). Heads where it is never
       defined come last. Ties keep `(layer, head)` order.

    # Raises:
     - `ValueError` for an unknown statistic; `InputError` as `load_head_stats`
    """
    if stat not in STATISTICS:
        raise ValueError(f"unknown statistic {stat!r}: expected one of {list(STATISTICS)}")
    if rows is None:
        rows = load_head_stats(model_name, save_path, n_samples)
    values: dict[tuple[int, int], list[float]] = {}
    for row in rows:
        v = row.get(stat)
        values.setdefault((int(row["layer"]), int(row["head"])), [])
        if v is not None:
            values[(int(row["layer"]), int(row["head"]))].append(float(v))
    table: list[dict] = []
    for (layer, head), vs in sorted(values.items()):
        arr = np.asarray(vs, dtype=np.float64)
        defined = len(arr) > 0
        table.append({
            "layer": layer,
            "head": head,
            "stat": stat,
            "mean": float(arr.mean()) if defined else None,
            "std": float(arr.std()) if defined else None,
            "min": float(arr.min()) if defined else None,
            "max": float(arr.max()) if defined else None,
            "n_prompts": len(arr),
        })
    sign = 1.0 if lowest else -1.0
    table.sort(key=lambda r: (r["mean"] is None, sign * r["mean"] if r["mean"] is not None else 0.0))
    return table[:top] if top is not None else table


# ---------------------------------------------------------------------------------------------------
# `pattern-lens stats`


def add_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens stats`"""
    p.add_argument("--model", "-m", type=str, required=True, help="model name")
    p.add_argument("--save-path", "-s", type=str, default=DATA_DIR, help=f"root folder (default: {DATA_DIR})")
    p.add_argument("--n-samples", "-n", type=positive_int, default=None, help="only the first N prompts (default: all)")
    p.add_argument(
        "--stat", choices=list(STATISTICS), default=None,
        help="rank by this statistic (default: the top heads of every statistic)",
    )
    p.add_argument("--lowest", action="store_true", help="lowest first (default: highest first)")
    p.add_argument("--top", type=positive_int, default=None, help="heads to show (default: 20 with --stat, else 5 per statistic)")
    p.add_argument("--json", action="store_true", help="print JSON (a list of rows) instead of a table")


def _fmt(v: float | None) -> str:
    return "-" if v is None else (f"{v:.4g}" if abs(v) >= 1000 else f"{v:.4f}")


def _table_lines(ranked: list[dict]) -> list[str]:
    lines = [f"{'rank':>4} {'layer':>5} {'head':>4} {'mean':>9} {'std':>9} {'min':>9} {'max':>9} {'prompts':>7}"]
    for k, r in enumerate(ranked, start=1):
        lines.append(
            f"{k:>4} {r['layer']:>5} {r['head']:>4} {_fmt(r['mean']):>9} {_fmt(r['std']):>9} "
            f"{_fmt(r['min']):>9} {_fmt(r['max']):>9} {r['n_prompts']:>7}"
        )
    return lines


def run_from_args(args: argparse.Namespace) -> int:
    """print the ranking(s); exit 1 when the model has no statistics yet, or some files are damaged"""
    table = _read_table(args.model, args.save_path, args.n_samples)
    rows = table.rows
    for message in table.damaged:  # named, skipped: the ranking uses the others
        print(f"skipped: {message}", file=sys.stderr)
    if not rows:
        model_dir = _model_dir(args.model, args.save_path)
        print(
            f"error: no head statistics under {model_dir / 'prompts'}/*/{HEAD_STATS_FILE}: render with summaries "
            f"first (pattern-lens render -m {args.model} -s {args.save_path}, or --summaries-only)",
            file=sys.stderr,
        )
        return 1
    stats = [args.stat] if args.stat else list(STATISTICS)
    top = args.top if args.top is not None else (20 if args.stat else 5)
    n_prompts = len({r["prompt"] for r in rows})
    order = "lowest" if args.lowest else "highest"
    excluded = {stat: sum(stat in r.get(_NON_FINITE, ()) for r in rows) for stat in stats}
    for stat, n in excluded.items():
        if n:
            print(f"{stat}: {n} values NaN or infinite in the files, excluded from the ranking", file=sys.stderr)
    if args.json:
        out = []
        for stat in stats:
            out.extend(rank_heads(args.model, stat=stat, lowest=args.lowest, top=top, rows=rows))
        print(dumps_strict(out, indent=1))
        return 1 if table.damaged else 0
    for stat in stats:
        print(f"{args.model}: {stat} ({STATISTICS[stat]}), {order} first, over {n_prompts} prompts")
        print("\n".join(_table_lines(rank_heads(args.model, stat=stat, lowest=args.lowest, top=top, rows=rows))))
        print()
    return 1 if table.damaged else 0
