"""what `activations` and `run` share before the forward passes: the prompt list, the model folder

Prompts come from `--prompts FILE` (cut to `--min-chars`/`--max-chars` with `--raw-prompts`, else
used as they are), or, without a file, from the model folder's `prompts.jsonl` (the reference's
non-raw mode), or else from the prompts shipped with the package. Bad lines become messages naming
the file and line; the other prompts go on.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from pattern_lens._layout import MODEL_CFG_FILE, PROMPT_FILE, PROMPTS_INDEX
from pattern_lens._model.interface import PatternModel
from pattern_lens._output.atomic import atomic_write_text
from pattern_lens.prompts import BUILTIN_PROMPTS, load_text_data, read_prompts_file

__all__ = ["load_prompt_list", "write_model_cfg", "write_prompt_json"]


def load_prompt_list(
    prompts_path: str | Path | None,
    model_dir: Path,
    raw_prompts: bool = False,
    min_chars: int | None = None,
    max_chars: int | None = None,
    shuffle: bool = False,
    n_samples: int | None = None,
    counts: dict | None = None,
    text_loader: Callable[..., list[dict]] | None = None,
) -> tuple[list[tuple[str, dict]], list[str], Path]:
    """the prompts of a run, each with where it came from

    `counts`, when given, gets `read` (good lines), `too_short` (texts shorter than `min_chars`) and
    `short_pieces` (last pieces of cut texts shorter than `min_chars`), all dropped by the cut.
    `text_loader` reads and cuts a file with `raw_prompts` (defaults to `pattern_lens.prompts.load_text_data`,
    called with `bad_lines=` and `counts=`).

    # Returns:
     - `tuple[list[tuple[str, dict]], list[str], Path]` `(where, prompt)` pairs, error messages, the file read

    # Raises:
     - `PromptsFileError` when the file cannot be read at all
    """
    if prompts_path is not None:
        path = Path(prompts_path)
    elif (model_dir / PROMPTS_INDEX).is_file():
        path = model_dir / PROMPTS_INDEX
    else:
        path = BUILTIN_PROMPTS
    stats = {"read": 0, "too_short": 0, "short_pieces": 0}
    if raw_prompts:
        bad: list = []
        pieces = (text_loader or load_text_data)(path, min_chars, max_chars, False, bad_lines=bad, counts=stats)
        errors = [str(e) for e in bad]
        entries = [(getattr(p, "where", "") or f"{path}: prompt {i + 1}", p) for i, p in enumerate(pieces)]
        stats["read"] = stats["read"] or len(entries)  # a loader that does not count
    else:
        entries, bad_entries = read_prompts_file(path)
        errors = [str(e) for e in bad_entries]
        stats["read"] = len(entries)
    if shuffle:
        random.shuffle(entries)
    if n_samples is not None:
        entries = entries[:n_samples]
    if counts is not None:
        counts.update(stats)
    return entries, errors, path


def write_model_cfg(model_dir: Path, model: PatternModel) -> Path:
    """`<model_dir>/model_cfg.json` from the model's config (written atomically)"""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / MODEL_CFG_FILE
    atomic_write_text(path, json.dumps(model.config_dict()))
    return path


def write_prompt_json(prompt_dir: Path, prompt: dict) -> Path:
    """`<prompt_dir>/prompt.json` (written atomically), as the reference writes it"""
    prompt_dir.mkdir(parents=True, exist_ok=True)
    path = prompt_dir / PROMPT_FILE
    atomic_write_text(path, json.dumps(prompt))
    return path
