"""TransformerLens's table of models and their parameter counts (the reference's `pattern_lens.model_table`)

```bash
python -m pattern_lens.model_table              # print the table
python -m pattern_lens.model_table -f           # download the newest table into the cache, then print it
python -m pattern_lens.model_table --cache-path # where the cache is
```

Same names and signatures as the reference, one difference: offline first. The table is shipped in
the wheel (`pattern_lens/data/model_table.csv`, a snapshot; its date and sources in
`model_table.meta.json`), and the network is touched only when asked (`force_refresh=True`, `-f`),
never at import. A table in the cache (`MODEL_TABLE_CACHE`: `~/.cache/pattern_lens/model_table.csv`,
or under `$XDG_CACHE_HOME`, where the reference caches it too) is used before the snapshot.
`fetch_model_table_df` needs pandas (as the reference); everything else works without it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pattern_lens._model.model_table import (
    MODEL_TABLE_URL,
    SNAPSHOT_PATH,
    ModelInfo,
    default_cache_path,
    parse_csv,
    snapshot_info,
    table_from_rows,
)

__all__ = [
    "MODEL_TABLE_URL",
    "MODEL_TABLE_CACHE",
    "SNAPSHOT_PATH",
    "ModelInfo",
    "fetch_model_table_df",
    "fetch_model_table",
    "get_model_params",
    "main",
]

MODEL_TABLE_CACHE: Path = default_cache_path()
"the cached table: written by a refresh (`-f`), read before the shipped snapshot"

DOWNLOAD_TIMEOUT_S: float = 30.0
"one try, this long at most: a refresh without network fails in one line, not after retries"


def _download_csv(url: str, cache_path: Path) -> str:
    """download the table's CSV from `url` and save it to `cache_path` (atomically); returns the text

    # Raises:
     - `urllib.error.URLError` (no network, bad address) and `OSError` as they come
    """
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310 (a fixed https URL)
        content: str = response.read().decode("utf-8")
    cache_path = Path(cache_path)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_path.parent, prefix=f".{cache_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, cache_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return content


def _source(force_refresh: bool = False) -> str:
    """where `_fetch_csv_content` would read the table from, for people"""
    if force_refresh:
        return f"{MODEL_TABLE_URL} (cached to {MODEL_TABLE_CACHE})"
    if Path(MODEL_TABLE_CACHE).is_file():
        return f"the cache {MODEL_TABLE_CACHE}"
    info = snapshot_info()
    return f"the snapshot shipped with pattern_lens ({SNAPSHOT_PATH}, {info.get('date', 'date unknown')})"


def _fetch_csv_content(force_refresh: bool = False) -> str:
    """the table's CSV text: downloaded when `force_refresh`, else the cache, else the shipped snapshot"""
    cache = Path(MODEL_TABLE_CACHE)
    if force_refresh:
        return _download_csv(MODEL_TABLE_URL, cache)
    if cache.is_file():
        return cache.read_text(encoding="utf-8")
    return SNAPSHOT_PATH.read_text(encoding="utf-8")


def fetch_model_table_df(force_refresh: bool = False) -> Any:
    """the model table as a `pandas.DataFrame` (every column of the CSV)

    # Parameters:
     - `force_refresh : bool` download the newest table into the cache first (defaults to `False`:
       the cache, else the shipped snapshot; no network)

    # Returns:
     - `pandas.DataFrame`

    # Raises:
     - `ImportError` when pandas is not installed (`fetch_model_table` needs no pandas)
     - `urllib.error.URLError` when a refresh cannot reach the table
    """
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError(
            "fetch_model_table_df needs pandas (pip install pandas); fetch_model_table() gives the table without it"
        ) from e
    import io

    return pd.read_csv(io.StringIO(_fetch_csv_content(force_refresh=force_refresh)))


def fetch_model_table(force_refresh: bool = False) -> dict[str, ModelInfo]:
    """`{default alias: ModelInfo(name, n_params)}` for every model of the table with a parameter count

    # Parameters:
     - `force_refresh : bool` download the newest table into the cache first (defaults to `False`:
       the cache, else the shipped snapshot; no network)

    # Returns:
     - `dict[str, ModelInfo]`

    # Raises:
     - `urllib.error.URLError` when a refresh cannot reach the table
    """
    return table_from_rows(parse_csv(_fetch_csv_content(force_refresh=force_refresh)))


def get_model_params(model_name: str, table: dict[str, ModelInfo]) -> int:
    """a model's parameter count, by its default alias

    # Parameters:
     - `model_name : str` a default alias (`pattern_lens.load_model.resolve_model_name` gives it for any variant)
     - `table : dict[str, ModelInfo]` from `fetch_model_table`

    # Returns:
     - `int`

    # Raises:
     - `KeyError` naming the model and the models the table has
    """
    if model_name in table:
        return table[model_name].n_params
    raise KeyError(f"Model {model_name!r} not found in model table. Available models: {sorted(table)}")


def _print_table(rows: list[dict[str, str]]) -> None:
    cols = ["name.default_alias", "name.huggingface", "n_params.as_int"]
    cols = [c for c in cols if rows and c in rows[0]] or (list(rows[0]) if rows else [])
    widths = [max([len(c)] + [len(r.get(c, "")) for r in rows]) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(r.get(c, "").ljust(w) for c, w in zip(cols, widths)).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pattern_lens.model_table [-f] [--cache-path]`; returns the exit code"""
    parser = argparse.ArgumentParser(
        prog="python -m pattern_lens.model_table",
        description="Show TransformerLens's table of models (shipped with pattern_lens; -f downloads the newest).",
    )
    parser.add_argument("-f", "--force-refresh", action="store_true", help="download the newest table into the cache first")
    parser.add_argument("--cache-path", action="store_true", help="print where the cached table is (or would be) and exit")
    args = parser.parse_args(argv)
    if args.cache_path:
        print(MODEL_TABLE_CACHE)
        return 0
    print(f"model table from {_source(args.force_refresh)}", file=sys.stderr)
    try:
        content = _fetch_csv_content(force_refresh=args.force_refresh)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        print(
            f"error: cannot download the model table from {MODEL_TABLE_URL}: {reason} "
            f"(offline? the shipped snapshot still works: run without -f)",
            file=sys.stderr,
        )
        return 1
    rows = parse_csv(content)
    try:
        import pandas as pd
        import io

        print(pd.read_csv(io.StringIO(content)))
    except ImportError:
        _print_table(rows)
    return 0


if __name__ == "__main__":
    from pattern_lens._command import as_process

    sys.exit(as_process(main))
