"""loading a model by Hugging Face hub name or local folder, with eager attention

Eager attention is the implementation that computes the attention weights (SDPA and flash kernels
never materialise them). The base model is loaded (`AutoModel`): the patterns need no LM head.

This module imports neither torch nor transformers at import time: `require_model_extra` must be
able to say what to install when they are missing (the adapters import torch, so they are imported
only once it has passed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pattern_lens._errors import InputError
from pattern_lens._model.interface import PatternModel, model_display_name
from pattern_lens._model.offline import hub_offline

__all__ = ["ModelLoadError", "INSTALL_ADVICE", "require_model_extra", "load_model", "model_display_name", "resolve_device"]

INSTALL_ADVICE: str = (
    "install a torch build first, CPU: pip install torch --index-url https://download.pytorch.org/whl/cpu, "
    "or CUDA: pip install torch --index-url https://download.pytorch.org/whl/cu124 (matching your driver); "
    "then: pip install 'pattern_lens[model]'"
)
"how to get the `model` extra, as the README says (torch first: PyPI's default Linux build is multi-GB with CUDA)"


class ModelLoadError(InputError):
    """a model could not be loaded: unknown name or folder, no tokenizer, an unsupported model, a bad
    device, or the `model` extra (torch, transformers) is not installed"""


def _installed(module: str) -> bool:
    """whether `module` can be imported, without importing it (a module already imported counts)"""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # an import hook refusing it, or a broken parent package
        return False
    except ValueError:  # in sys.modules without a __spec__ (set by hand): it is there
        return True


def require_model_extra(what: str = "computing attention patterns", transformers: bool = True) -> None:
    """check that the `model` extra is installed before anything imports torch

    # Parameters:
     - `what : str` what needs it, for the message (defaults to `"computing attention patterns"`)
     - `transformers : bool` also require transformers (defaults to `True`; a model object that is
       already loaded needs torch only)

    # Raises:
     - `ModelLoadError` one line naming what is missing and how to install it (CPU and CUDA)
    """
    wanted = ["torch", "transformers"] if transformers else ["torch"]
    missing = [m for m in wanted if not _installed(m)]
    if missing:
        raise ModelLoadError(
            f"{what} needs the `model` extra (torch, transformers), not installed here "
            f"(missing: {', '.join(missing)}): {INSTALL_ADVICE}"
        )


def resolve_device(device: Any = None) -> Any:
    """a `torch.device`: the one given (str or device), else cuda when available, else cpu"""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        return device
    if isinstance(device, str):
        try:
            return torch.device(device)
        except RuntimeError as e:
            raise InputError(f"invalid device {device!r}: {e}") from e
    raise TypeError(f"invalid device: {device!r} (expected a str or torch.device)")


def _move_to_device(module: Any, device: Any, name: str) -> None:
    """`module.to(device)`, a failure naming the model and the device

    torch raises `AssertionError` ("Torch not compiled with CUDA enabled") for cuda on a CPU build,
    and `RuntimeError` for a device index the machine lacks: both are the user's input.

    # Raises:
     - `ModelLoadError` naming the model and the device
    """
    import torch

    try:
        module.to(device)
    except (AssertionError, RuntimeError) as e:
        hint = (
            "this torch build has no CUDA (install a CUDA build, or pass --device cpu)"
            if not torch.cuda.is_available()
            else f"this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
        first_line = (str(e).strip().splitlines() or [""])[0]  # CUDA errors append lines of advice
        raise ModelLoadError(
            f"cannot move model {name!r} to device {str(device)!r}: {hint}; {type(e).__name__}: {first_line}"
        ) from e


def load_model(model: Any, device: Any = None, model_name: str | None = None) -> PatternModel:
    """a `PatternModel` from a hub name, a local folder, or an already loaded model object

    # Parameters:
     - `model : str | object` hub name (`"gpt2"`, `"EleutherAI/pythia-14m"`), a folder written by
       `save_pretrained` (config, weights and tokenizer), or a TransformerLens-style model
     - `device : str | torch.device | None` (defaults to `None`: cuda when available, else cpu)
     - `model_name : str | None` name for the data folder (defaults to `None`: the hub name, or the
       folder's name)

    # Returns:
     - `PatternModel`

    # Raises:
     - `ModelLoadError` naming the model when it cannot be found or loaded, when it cannot be moved
       to `device`, or when torch / transformers are not installed
    """
    if not isinstance(model, (str, Path)):
        require_model_extra(f"taking patterns from a {type(model).__name__}", transformers=False)
        from pattern_lens._model.adapters import wrap_model

        return wrap_model(model, model_name)
    name_or_path = str(model)
    require_model_extra(f"loading model {name_or_path!r}")
    import transformers

    from pattern_lens._model.adapters import HFPatternModel

    name = model_name or model_display_name(name_or_path)
    dev = resolve_device(device)
    where = "local folder" if Path(name_or_path).is_dir() else "Hugging Face hub name"
    # offline: the local cache only, decided once (else ~50 s of retries before the same error)
    offline = hub_offline() if where != "local folder" else None
    kwargs: dict = {"local_files_only": True} if offline else {}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        hf_model = transformers.AutoModel.from_pretrained(name_or_path, attn_implementation="eager", **kwargs)
    except (OSError, ValueError, KeyError) as e:
        hint = (
            "expected a folder written by save_pretrained (config.json, weights, tokenizer files)"
            if where == "local folder"
            else f"not a local folder, and not in the local Hugging Face cache; the hub cannot be reached ({offline})"
            if offline
            else "not a local folder, and not found on the Hugging Face hub"
        )
        first_line = (str(e).strip().splitlines() or [""])[0]  # transformers appends lines of advice
        raise ModelLoadError(f"cannot load model {name_or_path!r} ({where}): {hint}; {type(e).__name__}: {first_line}") from e
    _move_to_device(hf_model, dev, name_or_path)
    try:
        return HFPatternModel(hf_model, tokenizer, name)
    except (AttributeError, TypeError, ValueError) as e:
        raise ModelLoadError(f"model {name_or_path!r} is not supported: {e}") from e
