"""a run's inputs: the model config, the prompt index, the prompts that can be rendered, the selection

The reference's layout: `<save_path>/<model>/model_cfg.json`, `prompts.jsonl`, and
`prompts/<hash>/activations.npz`. Every problem is an `InputError` naming the file and what was
expected; a bad prompt (or a bad line of `prompts.jsonl`) is reported in the summary and costs only
that prompt.

Path safety: nothing is written outside the save path. A model name that is empty, `.` or `..`
(after sanitising) and a prompt hash that is not a plain folder name are refused; symbolic links are
followed only while they stay inside the save path: the model folder, a prompt folder, or an `L*` /
`H*` folder that resolves outside it is refused (`leaves_root`), with a message naming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from pattern_lens import _guard
from pattern_lens._errors import InputError
from pattern_lens._json_limits import loads_bounded
from pattern_lens._layout import ACTIVATIONS_FILE, MODEL_CFG_FILE, PROMPTS_INDEX, PROMPT_FILE, TMP_SUFFIX, temp_prefix
from pattern_lens._output.atomic import remove_stale_temp
from pattern_lens._output.indexes import find_model_dir, read_jsonl_tolerant, sanitize_model_name
from pattern_lens._input.npz import peek_n_ctx
from pattern_lens._engine.planner import PromptWork
from pattern_lens._summaries.summary import RenderSummary
from pattern_lens._input.cfg_shape import check_sizes

__all__ = [
    "models_present",
    "HTConfigMock",
    "load_model_cfg",
    "prompt_work",
    "check_layers",
    "clean_index_temp",
    "leaves_root",
    "model_folder",
    "check_prompt_hash",
    "read_prompt_index",
]


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
        """`model_name` made safe as a folder name (see `pattern_lens._output.indexes.sanitize_model_name`)"""
        return sanitize_model_name(self.model_name)

    def serialize(self) -> dict:
        """the config as a JSON-compatible dict; values JSON cannot hold become their `str()`"""
        return json.loads(json.dumps(self.__dict__, default=str))

    @classmethod
    def load(cls, data: dict) -> HTConfigMock:
        """make a config from a dict (as read from `model_cfg.json`)"""
        return cls(**data)


def models_present(save_path: Path) -> str:
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
        data = loads_bounded(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise InputError(
            f"model config not found: {path} (expected <save_path>/<model>/model_cfg.json with "
            f"n_layers, n_heads, model_name); {models_present(path.parent.parent)}"
        ) from None
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read model config {path}: {e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key, kind in (("n_layers", int), ("n_heads", int), ("model_name", str)):
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 1):
            raise InputError(
                f"{path}: {key!r} is {value!r}, expected a {'positive integer' if kind is int else 'string'}"
            )
    check_sizes(path, data["n_layers"], data["n_heads"])  # before anything is sized from them
    return HTConfigMock.load(data)


# the path rules live in `pattern_lens._guard` (the one guard); these names stay for their importers
leaves_root = _guard.leaves_root


def model_folder(save_path: Path | str, model_name: str) -> Path:
    """`<save_path>/<sanitised model_name>`, checked to be a folder name inside the save path

    # Raises:
     - `InputError` when the sanitised name is empty, `.` or `..`, or the folder is a symbolic link
       leading outside the save path or a link loop
    """
    name = sanitize_model_name(str(model_name))
    if name in ("", ".", ".."):
        raise InputError(f"model name {model_name!r} is not a folder name (sanitised: {name!r}); expected e.g. 'pythia-14m'")
    _guard.check_name(name, f"model name {model_name!r} (sanitised)")
    model_dir = find_model_dir(save_path, model_name)  # an old-style folder name is still found
    root = _guard.resolved_root(save_path)  # the save path itself may be a link loop
    if (outside := leaves_root(model_dir, root)) is not None:
        raise InputError(outside)
    return model_dir


def check_prompt_hash(prompt_hash: object) -> str:
    """a prompt hash that is a plain folder name (letters, digits, `_-=.`; not `.` or `..`)

    # Raises:
     - `InputError` otherwise
    """
    return _guard.check_hash(prompt_hash)


def read_prompt_index(path: Path) -> list[dict | str]:
    """the prompts of `prompts.jsonl`, one per non-blank line: a dict, or for a bad line (not UTF-8,
    not a JSON object; each line is decoded alone) a message saying why

    # Raises:
     - `InputError` when the file is missing or cannot be read at all
    """
    try:
        lines = read_jsonl_tolerant(Path(path))
    except FileNotFoundError:
        raise InputError(f"prompt index not found: {path} (expected one JSON object a line, with 'hash')") from None
    except OSError as e:
        raise InputError(f"cannot read prompt index {path}: {e}") from e
    return [row if isinstance(row, dict) else f"{row}; this prompt is skipped" for _, row in lines]


def prompt_work(
    prompts: list[dict | str], model_dir: Path, summary: RenderSummary, heads_per_prompt: int
) -> list[PromptWork]:
    """the prompts that can be rendered; the others become input errors in `summary`

    `prompts` as from `read_prompt_index` (a string is a bad line's message). A prompt whose
    `prompt.json` is missing is rendered and reported (the viewer cannot list it).
    """
    index = model_dir / PROMPTS_INDEX
    root = model_dir.parent.resolve()
    out: list[PromptWork] = []
    for i, prompt in enumerate(prompts, start=1):
        if isinstance(prompt, str):
            summary.add_input_error(prompt, heads_per_prompt)
            continue
        h = prompt.get("hash")
        try:
            check_prompt_hash(h)
        except InputError:
            summary.add_input_error(
                f"{index}: prompt {i} has hash {_guard.shown(h)}, expected a folder name under {model_dir / 'prompts'}",
                heads_per_prompt,
            )
            continue
        prompt_dir = model_dir / "prompts" / h
        if (outside := leaves_root(prompt_dir, root)) is not None:
            summary.add_input_error(outside, heads_per_prompt)
            continue
        npz = prompt_dir / ACTIVATIONS_FILE
        if (outside := leaves_root(npz, root)) is not None:  # a link to a file outside: not read
            summary.add_input_error(outside, heads_per_prompt)
            continue
        if not npz.is_file():
            summary.add_input_error(f"{npz}: activations file not found (prompt {i} of {index})", heads_per_prompt)
            continue
        if not (prompt_dir / PROMPT_FILE).is_file():
            summary.add_input_error(
                f"{prompt_dir / PROMPT_FILE}: missing (prompt {i} of {index}); its figures are rendered, "
                "but the viewer lists prompts from these files",
                0,
            )
        n_ctx = prompt.get("n_tokens")
        if not isinstance(n_ctx, int) or n_ctx < 1:
            n_ctx = peek_n_ctx(npz) or 64
        out.append(PromptWork(str(prompt_dir), int(n_ctx)))
    return out


def clean_index_temp(folder: Path, names: Iterable[str]) -> None:
    """remove temporary files of the indexes left by a killed run (not another live run's)"""
    for name in names:
        for tmp in folder.glob(f"{temp_prefix(name)}*{TMP_SUFFIX}"):
            remove_stale_temp(tmp)


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
