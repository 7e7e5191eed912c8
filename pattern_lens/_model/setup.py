"""what `activations` and `run` share before the forward passes: the prompt list, the model folder

Prompts come from `--prompts FILE` (cut to `--min-chars`/`--max-chars` with `--raw-prompts`, else
used as they are), or, without a file, from the model folder's `prompts.jsonl` (the reference's
non-raw mode), or else from the prompts shipped with the package. Bad lines become messages naming
the file and line; the other prompts go on.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from pattern_lens._layout import MODEL_CFG_FILE, PROMPT_FILE, PROMPTS_INDEX
from pattern_lens._model.interface import PatternModel
from pattern_lens._pipeline.atomic import atomic_write_text
from pattern_lens.prompts import BUILTIN_PROMPTS, read_prompts_file, split_prompts

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
) -> tuple[list[tuple[str, dict]], list[str], Path]:
    """the prompts of a run, each with where it came from

    `counts`, when given, gets `read` (good lines), `too_short` (texts shorter than `min_chars`) and
    `short_pieces` (last pieces of cut texts shorter than `min_chars`), all dropped by the cut.

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
    entries, bad = read_prompts_file(path)
    errors = [str(e) for e in bad]
    stats = {"read": len(entries), "too_short": 0, "short_pieces": 0}
    if raw_prompts:
        pieces: list[tuple[str, dict]] = []
        for where, prompt in entries:
            parts = split_prompts([prompt], min_chars, max_chars)
            n = len(prompt["text"])
            if min_chars is not None and n < min_chars:
                stats["too_short"] += 1
            elif max_chars is not None and max_chars > 0:
                stats["short_pieces"] += -(-n // max_chars) - len(parts)
            pieces.extend((where if len(parts) == 1 else f"{where} (piece {k + 1})", part) for k, part in enumerate(parts))
        entries = pieces
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
