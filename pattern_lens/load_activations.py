"""loading a prompt's saved attention patterns from disk, and the prompt hash (the reference's `pattern_lens.load_activations`)

Same names, signatures, defaults and error types as the reference. `load_activations` also finds a
model folder written with the old naming (see `pattern_lens._output.indexes.find_model_dir`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np

from pattern_lens._layout import ACTIVATIONS_FILE, PROMPT_FILE, prompt_dir as _prompt_dir
from pattern_lens._input.inputs import check_prompt_hash, model_folder

__all__ = [
    "GetActivationsError",
    "ActivationsMissingError",
    "ActivationsMismatchError",
    "InvalidPromptError",
    "compare_prompt_to_loaded",
    "augment_prompt_with_hash",
    "activations_exist",
    "load_activations",
]


class GetActivationsError(ValueError):
    """base class for errors in getting activations"""


class ActivationsMissingError(GetActivationsError, FileNotFoundError):
    """the prompt file or the activations file is missing"""


class ActivationsMismatchError(GetActivationsError):
    """the saved prompt's text or hash differs from the prompt asked for (raised by `compare_prompt_to_loaded`)"""


class InvalidPromptError(GetActivationsError):
    """the prompt has neither a `"hash"` nor a `"text"` field (raised by `augment_prompt_with_hash`)"""


def compare_prompt_to_loaded(prompt: dict, prompt_loaded: dict) -> None:
    """check that a prompt and the one loaded from `prompt.json` agree on `text` and `hash`

    # Parameters:
     - `prompt : dict`
     - `prompt_loaded : dict`

    # Raises:
     - `ActivationsMismatchError` naming the key that differs and both values
    """
    for key in ("text", "hash"):
        if prompt.get(key) != prompt_loaded.get(key):
            raise ActivationsMismatchError(
                f"saved prompt does not match at key {key!r}: asked for {prompt.get(key)!r}, "
                f"saved {prompt_loaded.get(key)!r}"
            )


def augment_prompt_with_hash(prompt: dict) -> dict:
    """add `"hash"` to a prompt that has none: urlsafe base64 of the md5 of its text, without `=` padding

    A prompt without `"text"` is accepted only when it already has `"hash"`.

    # Parameters:
     - `prompt : dict`

    # Returns:
     - `dict` the same dictionary (modified in place)

    # Raises:
     - `InvalidPromptError` when the prompt has neither `"hash"` nor `"text"`
    """
    if "hash" not in prompt:
        if "text" not in prompt:
            raise InvalidPromptError(f"prompt has neither a 'text' nor a 'hash' field: {prompt}")
        digest: bytes = hashlib.md5(str(prompt["text"]).encode()).digest()
        prompt["hash"] = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return prompt


def _prompt_folder(model_name: str, prompt: dict, save_path: Path) -> Path:
    augment_prompt_with_hash(prompt)
    # a hash given with the prompt is a folder name, never a path (`InputError` otherwise)
    return _prompt_dir(model_folder(save_path, model_name), check_prompt_hash(prompt["hash"]))


def activations_exist(model_name: str, prompt: dict, save_path: Path) -> bool:
    """whether both `prompt.json` and `activations.npz` of a prompt exist (nothing is read)

    # Parameters:
     - `model_name : str`
     - `prompt : dict` with `"hash"` (call `augment_prompt_with_hash` first)
     - `save_path : Path`

    # Returns:
     - `bool`

    # Raises:
     - `InvalidPromptError` when the prompt has no `"hash"`, as the reference's HEAD: the check
       neither hashes nor changes the prompt
    """
    if "hash" not in prompt:
        raise InvalidPromptError(
            f"prompt must have 'hash' key (call augment_prompt_with_hash first); keys: {sorted(prompt)}"
        )
    folder: Path = _prompt_folder(model_name, prompt, Path(save_path))
    return (folder / PROMPT_FILE).exists() and (folder / ACTIVATIONS_FILE).exists()


def load_activations(
    model_name: str,
    prompt: dict,
    save_path: Path,
    return_fmt: Literal["torch", "numpy"] = "torch",
) -> tuple[Path, dict]:
    """load a prompt's attention patterns from `<save_path>/<model>/prompts/<hash>/activations.npz`

    # Parameters:
     - `model_name : str`
     - `prompt : dict` with `"text"` and/or `"hash"`
     - `save_path : Path`
     - `return_fmt : Literal["torch", "numpy"]`
       (defaults to `"torch"`: needs torch installed)

    # Returns:
     - `tuple[Path, dict[str, torch.Tensor] | dict[str, np.ndarray]]` the file and its arrays by key

    # Raises:
     - `ValueError` for another `return_fmt`
     - `ActivationsMissingError` when `prompt.json` or `activations.npz` is missing
     - `ActivationsMismatchError` when the saved prompt has another text or hash
     - `InputError` when the prompt's `"hash"` is not a folder name (`inputs.check_prompt_hash`)
    """
    if return_fmt not in ("torch", "numpy"):
        raise ValueError(f"invalid return_fmt {return_fmt!r}: expected 'torch' or 'numpy'")
    folder: Path = _prompt_folder(model_name, prompt, Path(save_path))
    prompt_file: Path = folder / PROMPT_FILE
    if not prompt_file.exists():
        raise ActivationsMissingError(f"prompt file {prompt_file} does not exist")
    compare_prompt_to_loaded(prompt, json.loads(prompt_file.read_text(encoding="utf-8")))
    path: Path = folder / ACTIVATIONS_FILE
    if not path.exists():
        raise ActivationsMissingError(f"activations file {path} does not exist")
    with np.load(path) as npz:
        cache: dict = {k: npz[k] for k in npz.files}
    if return_fmt == "torch":
        import torch

        cache = {k: torch.from_numpy(v) for k, v in cache.items()}
    return path, cache
