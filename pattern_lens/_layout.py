"""the on-disk layout, one home per naming convention (the reference's layout)

```
<save_path>/models.jsonl, figures.jsonl
<save_path>/<model>/model_cfg.json, prompts.jsonl
<save_path>/<model>/prompts/<hash>/prompt.json, activations.npz
<save_path>/<model>/prompts/<hash>/L<layer>/H<head>/<func>.<fmt>        a single-figure function
<save_path>/<model>/prompts/<hash>/L<layer>/H<head>/<func>.<fig>.<fmt>  each figure of a multi-figure one
<save_path>/<model>/prompts/<hash>/L<layer>/H<head>/<func>.error.txt    a function that failed there
<save_path>/index.html, pattern_lens_gallery/                            the offline gallery (`pattern-lens gallery`)
<save_path>/<model>/prompts/<hash>/L<layer>/H<head>/preview.png         the head's preview (summaries)
<save_path>/<model>/prompts/<hash>/head_stats.json                      statistics of the prompt's heads
```

Temporary files (atomic writes) are `.<final name>.pl<pid>@<host>.<random>.tmp` beside their final
file: the writing process and machine are in the name, so a run deletes only the temporary files of
processes that are gone (see `pattern_lens._output.atomic.is_stale_temp`).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "ACTIVATIONS_FILE",
    "MODELS_INDEX",
    "FIGURES_INDEX",
    "PROMPT_FILE",
    "MODEL_CFG_FILE",
    "PROMPTS_INDEX",
    "ERROR_SUFFIX",
    "TMP_SUFFIX",
    "GALLERY_INDEX",
    "GALLERY_DIR",
    "PREVIEW_NAME",
    "PREVIEW_FILE",
    "HEAD_STATS_FILE",
    "HEAD_STATS_FORMAT",
    "HEAD_STATS_VERSION",
    "layer_key",
    "prompt_dir",
    "head_dir",
    "FIGURE_NAMES_ATTR",
    "READS_ONLY_ATTR",
    "figure_name",
    "figure_names",
    "figure_file_name",
    "error_file_name",
    "temp_prefix",
    "is_temp_name",
    "temp_owner",
    "this_host",
]

ACTIVATIONS_FILE: str = "activations.npz"
PROMPT_FILE: str = "prompt.json"
MODEL_CFG_FILE: str = "model_cfg.json"
PROMPTS_INDEX: str = "prompts.jsonl"
MODELS_INDEX: str = "models.jsonl"
FIGURES_INDEX: str = "figures.jsonl"

ERROR_SUFFIX: str = ".error.txt"
"suffix of the file a failing figure function leaves in the head folder: `<func>.error.txt`"

TMP_SUFFIX: str = ".tmp"
"suffix of temporary files of atomic writes"

PREVIEW_NAME: str = "preview"
"the name of a head's preview among its figures (`figures.jsonl`); no figure function may take it"

PREVIEW_FILE: str = f"{PREVIEW_NAME}.png"
"a head's preview image in its head folder (`pattern_lens._summaries.summaries`)"

HEAD_STATS_FILE: str = "head_stats.json"
"the statistics of every summarised head of a prompt, in its prompt folder (`pattern_lens._summaries.summaries`)"

HEAD_STATS_FORMAT: str = "pattern_lens.head_stats"
"the `format` field of `HEAD_STATS_FILE`, which a reader checks before anything else"

HEAD_STATS_VERSION: int = 1
"the `version` field of `HEAD_STATS_FILE` as written now (the format: `pattern_lens._summaries.summaries`)"


GALLERY_INDEX: str = "index.html"
"the gallery's page, at the top of the data folder (where the reference's viewer put its `index.html`)"

GALLERY_DIR: str = "pattern_lens_gallery"
"the gallery's scripts, style and generated index data, beside `GALLERY_INDEX`"


def layer_key(layer: int) -> str:
    """the `activations.npz` key of layer `layer`'s attention pattern: `blocks.<layer>.attn.hook_pattern`"""
    return f"blocks.{layer}.attn.hook_pattern"


def prompt_dir(model_dir: Path | str, prompt_hash: str) -> Path:
    """`<model_dir>/prompts/<hash>`"""
    return Path(model_dir) / "prompts" / prompt_hash


def head_dir(prompt_dir: Path | str, layer: int, head: int) -> Path:
    """`<prompt_dir>/L<layer>/H<head>`"""
    return Path(prompt_dir) / f"L{layer}" / f"H{head}"


FIGURE_NAMES_ATTR: str = "_figure_names"
"""the attribute naming a figure function's figures, as the reference sets it: `("<func>",)` for a
single-figure function, `("<func>.<figure>", ...)` for a multi-figure one"""

READS_ONLY_ATTR: str = "_pattern_lens_reads_only"
"""set to `True` on a figure function that never writes into the pattern it is given (the built-in
`raw`): the head summaries may then read the pattern before such functions run, and share what
they found (its min and max) with them (`pattern_lens._export.extremes`)"""


def figure_name(func_name: str, figure: str | None = None) -> str:
    """`<func>`, or `<func>.<figure>` for one figure of a multi-figure function"""
    return func_name if figure is None else f"{func_name}.{figure}"


def figure_names(func: Callable) -> tuple[str, ...]:
    """the names of the figures `func` saves: its `_figure_names`, else `(func.__name__,)`"""
    names = getattr(func, FIGURE_NAMES_ATTR, None)
    return tuple(names) if names else (getattr(func, "__name__", "<unknown>"),)


def figure_file_name(func_name: str, fmt: str, figure: str | None = None) -> str:
    """`<func>.<fmt>`, or `<func>.<figure>.<fmt>` for one figure of a multi-figure function"""
    return f"{figure_name(func_name, figure)}.{fmt}"


def error_file_name(func_name: str) -> str:
    """`<func>.error.txt`"""
    return f"{func_name}{ERROR_SUFFIX}"


_HOST: str = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64]
_OWNER: re.Pattern = re.compile(r"\.pl(\d+)@([A-Za-z0-9-]*)\.[^.]*\.tmp$")


def temp_prefix(final_name: str, owned: bool = False) -> str:
    """the start of a temporary file's name for the final file `final_name`

    `owned=True`: with this process's id and host, `.<final_name>.pl<pid>@<host>.` (what atomic writes
    use); `False`: `.<final_name>.`, the part every temporary file of `final_name` starts with
    """
    return f".{final_name}.pl{os.getpid()}@{_HOST}." if owned else f".{final_name}."


def temp_owner(name: str) -> tuple[int, str] | None:
    """`(pid, host)` of the process that made the temporary file `name`; `None` when not in the name"""
    m = _OWNER.search(name)
    return (int(m.group(1)), m.group(2)) if m else None


def this_host() -> str:
    """this machine's name as it appears in temporary file names"""
    return _HOST


def is_temp_name(name: str) -> bool:
    """whether a folder entry is a temporary file of an atomic write"""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)
