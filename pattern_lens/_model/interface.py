"""what the package needs of a model it takes patterns from, without importing torch

`PatternModel` is implemented in `pattern_lens._model.adapters` (which imports torch); this module
holds only the interface, so that code checking for the `model` extra, and every annotation that
names the interface, works on a core install (a runtime type checker resolves the annotations).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PatternModel", "OnLayer", "model_display_name"]

OnLayer = Callable[[int, Any], None]
"called with (layer, patterns: a `torch.Tensor` of shape (batch, n_heads, seq, seq)) during the forward pass"


class PatternModel:
    """the interface (a name, sizes, a tokenizer, `forward`): see `pattern_lens._model.adapters`"""

    model_name: str
    n_layers: int
    n_heads: int
    n_ctx: int | None

    def tokenize(self, text: str) -> list[str]:
        """the prompt's tokens as strings, without special tokens (the reference's `prompt["tokens"]`)"""
        raise NotImplementedError

    def pattern_tokens(self, text: str) -> list[str] | None:
        """the tokens the model sees for this text, special tokens included, one per position of the
        pattern; `None` when the model cannot say (`prompt.json` then has no `pattern_tokens`)"""
        return None

    def seq_len(self, text: str) -> int | None:
        """positions the model sees for this text (special tokens included): the patterns' side;
        `None` when only the forward pass tells (the prompt then runs alone, untrimmed)"""
        raise NotImplementedError

    def forward(self, texts: Sequence[str], layers: Sequence[int], on_layer: OnLayer) -> None:
        """one forward pass over `texts`, right-padded; `on_layer` gets each layer in `layers`"""
        raise NotImplementedError

    def config_dict(self) -> dict:
        """what `model_cfg.json` holds: the model's config plus `model_name`, `n_layers`, `n_heads`, `n_ctx`"""
        raise NotImplementedError


def model_display_name(name_or_path: str) -> str:
    """the model's name for the data folder: a local folder's own name, else the name as given"""
    p = Path(name_or_path)
    return p.resolve().name if p.is_dir() else name_or_path
