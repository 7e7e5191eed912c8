"""loading a model by Hugging Face hub name or local folder, with eager attention

Eager attention is the implementation that computes the attention weights (SDPA and flash kernels
never materialise them). The base model is loaded (`AutoModel`): the patterns need no LM head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pattern_lens._errors import InputError
from pattern_lens._model.adapters import HFPatternModel, PatternModel, model_display_name, wrap_model

__all__ = ["ModelLoadError", "load_model", "model_display_name", "resolve_device"]


class ModelLoadError(InputError):
    """a model could not be loaded: unknown name or folder, no tokenizer, or an unsupported model"""


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
     - `ModelLoadError` naming the model when it cannot be found or loaded
    """
    if not isinstance(model, (str, Path)):
        return wrap_model(model, model_name)
    name_or_path = str(model)
    name = model_name or model_display_name(name_or_path)
    try:
        import transformers
    except ImportError as e:
        raise ModelLoadError(
            f"loading {name_or_path!r} needs torch and transformers: pip install 'pattern_lens[model]'"
        ) from e
    dev = resolve_device(device)
    where = "local folder" if Path(name_or_path).is_dir() else "Hugging Face hub name"
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name_or_path)
        hf_model = transformers.AutoModel.from_pretrained(name_or_path, attn_implementation="eager")
    except (OSError, ValueError, KeyError) as e:
        hint = (
            "expected a folder written by save_pretrained (config.json, weights, tokenizer files)"
            if where == "local folder"
            else "not a local folder, and not found on the Hugging Face hub (or offline and not in the local cache)"
        )
        raise ModelLoadError(f"cannot load model {name_or_path!r} ({where}): {hint}; {type(e).__name__}: {e}") from e
    hf_model.to(dev)
    try:
        return HFPatternModel(hf_model, tokenizer, name)
    except (AttributeError, TypeError, ValueError) as e:
        raise ModelLoadError(f"model {name_or_path!r} is not supported: {e}") from e
