"""TransformerLens's table of models: the snapshot shipped in the wheel, the on-disk cache, parsing

No torch, no pandas, no network here: the public `pattern_lens.model_table` adds the download (on
request only) and the pandas view. A table is a list of rows (`dict[str, str]`) with at least
`name.default_alias`; the reference's columns `name.huggingface` and `n_params.as_int` are used when
present, and the snapshot's own `name.aliases` (every TransformerLens alias, space separated) lets
names resolve without TransformerLens installed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ModelInfo",
    "MODEL_TABLE_URL",
    "SNAPSHOT_PATH",
    "snapshot_info",
    "default_cache_path",
    "parse_csv",
    "table_from_rows",
    "aliases_from_rows",
]

MODEL_TABLE_URL: str = "https://raw.githubusercontent.com/mivanit/transformerlens-model-table/main/docs/model_table.csv"
"where the reference downloads the table from (and `-f` refreshes from)"

SNAPSHOT_PATH: Path = Path(__file__).resolve().parents[1] / "data" / "model_table.csv"
"the table shipped in the wheel (`pattern_lens/data/model_table.csv`); its date and sources in `model_table.meta.json`"

_CACHE_FILENAME: str = "model_table.csv"


@dataclass(frozen=True)
class ModelInfo:
    """one model of the table: its default alias and parameter count (TransformerLens's `cfg.n_params`)"""

    name: str
    n_params: int


def snapshot_info() -> dict:
    """the snapshot's date and sources (`model_table.meta.json`), `{}` when that file is missing"""
    try:
        return json.loads(SNAPSHOT_PATH.with_suffix(".meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def default_cache_path() -> Path:
    """`$XDG_CACHE_HOME/pattern_lens/model_table.csv`, else `~/.cache/pattern_lens/model_table.csv`
    (the reference's location outside a clone of its repository: a table it cached is reused)"""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pattern_lens" / _CACHE_FILENAME


def parse_csv(content: str) -> list[dict[str, str]]:
    """rows of a model table CSV, every value a string (`""` where empty)"""
    return [{k: (v or "") for k, v in row.items() if k is not None} for row in csv.DictReader(io.StringIO(content))]


def _int(text: object) -> int | None:
    try:
        return int(float(str(text)))  # pandas writes floats ("1179648.0") for a column with gaps
    except (TypeError, ValueError, OverflowError):
        return None


def table_from_rows(rows: list[dict]) -> dict[str, ModelInfo]:
    """`{default_alias: ModelInfo}` for the rows with both a default alias and a parameter count, as the reference"""
    table: dict[str, ModelInfo] = {}
    for row in rows:
        name = str(row.get("name.default_alias") or "")
        n = _int(row.get("n_params.as_int"))
        if name and n is not None:
            table[name] = ModelInfo(name=name, n_params=n)
    return table


def aliases_from_rows(rows: list[dict]) -> dict[str, str]:
    """TransformerLens's alias map, `{lower-cased alias or official name: official (hub) name}`, from
    the snapshot's `name.aliases` column (what `get_official_model_name` looks names up in)"""
    out: dict[str, str] = {}
    for row in rows:
        official = str(row.get("name.huggingface") or "")
        if not official:
            continue
        out.setdefault(official.lower(), official)
        for alias in str(row.get("name.aliases") or "").split():
            out.setdefault(alias.lower(), official)
    return out
