"""what `activations` and `run` check before loading a model: the prompts

Loading a model takes seconds to minutes and writes `model_cfg.json`; a missing or unreadable
prompts file, or a `--min-chars` / `--max-chars` cut that leaves no prompt, is said first, in one
line (a `PromptsFileError`), and a cut that drops prompts says how many and why.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pattern_lens._model.setup import load_prompt_list
from pattern_lens._input.inputs import model_folder
from pattern_lens.prompts import PromptsFileError

__all__ = ["prompts_before_model", "dropped_line"]


def dropped_line(counts: dict, min_chars: int | None, max_chars: int | None) -> str:
    """why prompts were dropped by the cut (`""` when none were)"""
    parts = []
    if counts.get("too_short"):
        parts.append(f"{counts['too_short']} shorter than --min-chars {min_chars}")
    if counts.get("short_pieces"):
        parts.append(f"{counts['short_pieces']} last pieces of texts cut at --max-chars {max_chars} shorter than --min-chars")
    return ", ".join(parts)


def prompts_before_model(
    prompts_path: str | Path | None,
    save_path: Path,
    folder_name: str,
    raw_prompts: bool,
    min_chars: int | None,
    max_chars: int | None,
    shuffle: bool,
    n_samples: int | None,
    verbose: bool = True,
    text_loader: Callable[..., list[dict]] | None = None,
) -> tuple[list[tuple[str, dict]], list[str], Path]:
    """`load_prompt_list`, refusing a prompt list that leaves nothing to compute

    # Parameters:
     - `folder_name : str` the model's data folder name (its `prompts.jsonl` is read when no file is given)
     - the others: those of `load_prompt_list`; `verbose` prints the dropped line to stderr

    # Returns:
     - `tuple[list[tuple[str, dict]], list[str], Path]` as `load_prompt_list`

    # Raises:
     - `PromptsFileError` when the file is missing or unreadable, or no prompt is left, saying why
    """
    counts: dict[str, Any] = {}
    entries, errors, source = load_prompt_list(
        prompts_path, model_folder(Path(save_path), folder_name), raw_prompts, min_chars, max_chars,
        shuffle, n_samples, counts, text_loader,
    )
    cut = dropped_line(counts, min_chars, max_chars)
    n_dropped = counts.get("too_short", 0) + counts.get("short_pieces", 0)
    if not entries:
        if cut:
            why = f"all {counts.get('read', 0)} prompts read were dropped by the cut ({cut}): lower --min-chars"
        elif errors:
            why = f"no usable prompt, {len(errors)} bad lines:" + "".join(f"\n  {e}" for e in errors[:5])
        else:
            why = "no prompt in it"
        raise PromptsFileError(f"nothing to compute from {source}: {why}")
    if verbose and n_dropped:
        print(f"{source}: {n_dropped} prompts dropped ({cut}); {len(entries)} left", file=sys.stderr)
    return entries, errors, source
