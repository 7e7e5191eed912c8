"""loading a prompt's saved attention patterns from disk, and the prompt hash (the reference's `pattern_lens.load_activations`)

Same names, signatures, defaults and error types as the reference. `load_activations` also finds a
model folder written with the old naming (see `pattern_lens._output.indexes.find_model_dir`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import warnings
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
                f"Prompt file does not match prompt at key {key}: asked for {prompt.get(key)!r}, "
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
    return_fmt: Literal["numpy"] | None = None,
) -> tuple[Path, dict[str, np.ndarray]]:
    """load a prompt's attention patterns from `<save_path>/<model>/prompts/<hash>/activations.npz`

    As the reference's latest release: the arrays are always numpy (`get_activations(...,
    return_cache="torch")` converts); `return_fmt` is deprecated.

    # Parameters:
     - `model_name : str`
     - `prompt : dict` with `"text"` and/or `"hash"`
     - `save_path : Path`
     - `return_fmt : Literal["numpy"] | None` deprecated: `"numpy"` warns (`DeprecationWarning`) and
       changes nothing (defaults to `None`)

    # Returns:
     - `tuple[Path, dict[str, np.ndarray]]` the file and its arrays by key

    # Raises:
     - `ValueError` for any other `return_fmt` (`"torch"` included)
     - `ActivationsMissingError` (a `FileNotFoundError`) when `prompt.json` or `activations.npz` is missing
     - `ActivationsMismatchError` when the saved prompt has another text or hash
     - `InputError` when the prompt's `"hash"` is not a folder name (`inputs.check_prompt_hash`)
    """
    if return_fmt is not None:
        if return_fmt != "numpy":
            raise ValueError(
                f"Invalid return_fmt: {return_fmt!r}, expected 'numpy' or None: load_activations returns numpy "
                "arrays (return_fmt is deprecated); for torch tensors use torch.from_numpy, or "
                "get_activations(..., return_cache='torch')"
            )
        warnings.warn(
            "return_fmt is deprecated: load_activations always returns numpy arrays; drop the argument",
            DeprecationWarning,
            stacklevel=2,
        )
    folder: Path = _prompt_folder(model_name, prompt, Path(save_path))
    prompt_file: Path = folder / PROMPT_FILE
    if not prompt_file.exists():
        raise ActivationsMissingError(f"Prompt file {prompt_file} does not exist")
    compare_prompt_to_loaded(prompt, json.loads(prompt_file.read_text(encoding="utf-8")))
    path: Path = folder / ACTIVATIONS_FILE
    if not path.exists():
        raise ActivationsMissingError(f"Activations file {path} does not exist (the prompt file is there: a run was interrupted, or saved with --stacked-heads)")
    with np.load(path) as npz:
        cache: dict[str, np.ndarray] = {k: npz[k] for k in npz.files}
    return path, cache
