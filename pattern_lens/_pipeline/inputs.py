"""a run's inputs: the model config, the prompt index, the prompts that can be rendered, the selection

The reference's layout: `<save_path>/<model>/model_cfg.json`, `prompts.jsonl`, and
`prompts/<hash>/activations.npz`. Every problem is an `InputError` naming the file and what was
expected; a bad prompt is reported in the summary and costs only that prompt.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from pattern_lens._errors import InputError
from pattern_lens._layout import MODEL_CFG_FILE, TMP_SUFFIX, temp_prefix
from pattern_lens._pipeline.indexes import sanitize_model_name
from pattern_lens._pipeline.npz import peek_n_ctx
from pattern_lens._pipeline.planner import PromptWork
from pattern_lens._pipeline.summary import RenderSummary

__all__ = ["HTConfigMock", "load_model_cfg", "prompt_work", "check_layers", "clean_index_temp"]


class HTConfigMock:
    """stand-in for `transformer_lens.HookedTransformerConfig`, loaded from `model_cfg.json`

    Takes any keyword arguments into `__dict__`; the pipeline needs `n_layers: int`,
    `n_heads: int` and `model_name: str`. (Importing transformer_lens in every worker would cost
    seconds per process.)
    """

    def __init__(self, **kwargs) -> None:
        self.n_layers: int
        self.n_heads: int
        self.model_name: str
        self.__dict__.update(kwargs)

    @property
    def model_name_sanitized(self) -> str:
        """`model_name` made safe as a folder name (see `pattern_lens._pipeline.indexes.sanitize_model_name`)"""
        return sanitize_model_name(self.model_name)

    def serialize(self) -> dict:
        """the config as a JSON-compatible dict; values JSON cannot hold become their `str()`"""
        return json.loads(json.dumps(self.__dict__, default=str))

    @classmethod
    def load(cls, data: dict) -> HTConfigMock:
        """make a config from a dict (as read from `model_cfg.json`)"""
        return cls(**data)


def _models_present(save_path: Path) -> str:
    """which models `save_path` holds (folders with a `model_cfg.json`), for an unknown-model error"""
    try:
        models = sorted(p.name for p in save_path.iterdir() if (p / MODEL_CFG_FILE).is_file())
    except OSError:
        return f"{save_path} is not a readable folder"
    return f"models under {save_path}: {', '.join(models)}" if models else f"no models under {save_path}"


def load_model_cfg(model_dir: Path | str) -> HTConfigMock:
    """read and check `<model_dir>/model_cfg.json`

    # Raises:
     - `InputError` naming the file when it is missing, not JSON, or lacks a positive integer
       `n_layers` / `n_heads` or a string `model_name`
    """
    path = Path(model_dir) / MODEL_CFG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"model config not found: {path} (expected <save_path>/<model>/model_cfg.json with "
            f"n_layers, n_heads, model_name); {_models_present(path.parent.parent)}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read model config {path}: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key, kind in (("n_layers", int), ("n_heads", int), ("model_name", str)):
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 1):
            raise InputError(
                f"{path}: {key!r} is {value!r}, expected a {'positive integer' if kind is int else 'string'}"
            )
    return HTConfigMock.load(data)


_SAFE_HASH: re.Pattern = re.compile(r"^[A-Za-z0-9_\-=.]+$")


def prompt_work(
    prompts: list[dict], model_dir: Path, summary: RenderSummary, heads_per_prompt: int
) -> list[PromptWork]:
    """the prompts that can be rendered; the others become input errors in `summary`"""
    index = model_dir / "prompts.jsonl"
    out: list[PromptWork] = []
    for i, prompt in enumerate(prompts, start=1):
        h = prompt.get("hash")
        if not isinstance(h, str) or not _SAFE_HASH.match(h) or h in {".", ".."}:
            summary.add_input_error(
                f"{index}: prompt {i} has hash {h!r}, expected a folder name under {model_dir / 'prompts'}",
                heads_per_prompt,
            )
            continue
        prompt_dir = model_dir / "prompts" / h
        npz = prompt_dir / "activations.npz"
        if not npz.is_file():
            summary.add_input_error(f"{npz}: activations file not found (prompt {i} of {index})", heads_per_prompt)
            continue
        n_ctx = prompt.get("n_tokens")
        if not isinstance(n_ctx, int) or n_ctx < 1:
            n_ctx = peek_n_ctx(npz) or 64
        out.append(PromptWork(str(prompt_dir), int(n_ctx)))
    return out


_STALE_INDEX_TEMP_S: float = 600.0
"index temp files younger than this may belong to another run writing the same save path"


def clean_index_temp(folder: Path, names: Iterable[str]) -> None:
    """remove temporary files of the indexes left by a killed run (not another live run's)"""
    now = time.time()
    for name in names:
        for tmp in folder.glob(f"{temp_prefix(name)}*{TMP_SUFFIX}"):
            try:
                if now - tmp.stat().st_mtime > _STALE_INDEX_TEMP_S:
                    tmp.unlink(missing_ok=True)
            except FileNotFoundError:
                pass


def check_layers(selection: Sequence[int] | None, n: int, what: str, source: Path) -> list[int]:
    """validate a layer or head selection against the model config

    # Parameters:
     - `selection : Sequence[int] | None` indices, `None` for all of `range(n)`
     - `n : int` how many the model has
     - `what : str` `"layer"` or `"head"`, for the message
     - `source : Path` the model config, for the message

    # Returns:
     - `list[int]` sorted, without duplicates

    # Raises:
     - `InputError` for an index outside `0..n-1`
    """
    if selection is None:
        return list(range(n))
    out = sorted(set(int(i) for i in selection))
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise InputError(f"{what} {bad} out of range: {source} has {n} {what}s (0..{n - 1})")
    return out
