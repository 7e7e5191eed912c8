"""the reference's `pattern_lens.indexes`: the jsonl indexes a viewer reads, and the gallery page

Thin names over `pattern_lens._output.indexes` (which rebuilds each file atomically and leaves it
untouched when nothing changed) and `pattern_lens._view.gallery`. `figures_main` calls them itself at
the end of a run; they are here for code written against the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pattern_lens._output.indexes import figure_metadata, write_figures_jsonl, write_models_jsonl, write_prompts_jsonl

__all__ = [
    "generate_prompts_jsonl",
    "generate_models_jsonl",
    "get_func_metadata",
    "generate_functions_jsonl",
    "write_html_index",
]


def generate_prompts_jsonl(model_dir: Path) -> None:
    """(re)write `<model_dir>/prompts.jsonl` from every `prompts/<hash>/prompt.json`

    # Parameters:
     - `model_dir : Path` a model's folder (`<save_path>/<model>`)
    """
    write_prompts_jsonl(Path(model_dir))


def generate_models_jsonl(path: Path) -> None:
    """(re)write `<path>/models.jsonl` from every `<model>/model_cfg.json` under `path`

    # Parameters:
     - `path : Path` the data folder (`save_path`)
    """
    write_models_jsonl(Path(path))


def get_func_metadata(func: Callable) -> list[dict[str, str | None]]:
    """the `figures.jsonl` rows of one figure function

    # Parameters:
     - `func : Callable` a figure function

    # Returns:
     - `list[dict[str, str | None]]` one row per figure it saves (one, or one per name of a
       multi-figure function): `name`, `func_name`, `doc`, `figure_save_fmt`, `source`, `code`
    """
    return figure_metadata(func)


def generate_functions_jsonl(path: Path) -> None:
    """merge the registered figure functions (`ATTENTION_MATRIX_FIGURE_FUNCS`) into `<path>/figures.jsonl`

    Rows of functions not registered now are kept.

    # Parameters:
     - `path : Path` the data folder (`save_path`)
    """
    from pattern_lens.attn_figure_funcs import ATTENTION_MATRIX_FIGURE_FUNCS

    write_figures_jsonl(Path(path), ATTENTION_MATRIX_FIGURE_FUNCS)


def write_html_index(path: Path) -> None:
    """write the gallery (`index.html` and `pattern_lens_gallery/`) into the data folder `path`

    # Parameters:
     - `path : Path` the data folder (`save_path`)
    """
    from pattern_lens._view.gallery import write_gallery  # imported when used: rendering never needs it

    write_gallery(Path(path))
