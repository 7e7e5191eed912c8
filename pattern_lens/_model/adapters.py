"""one interface over the models we take patterns from: Hugging Face models and TransformerLens-style objects

`PatternModel` is what the rest of the package uses: a name, `n_layers`, `n_heads`, `n_ctx`, a
tokenizer, and `forward(texts, layers, on_layer)`, which runs one forward pass over a batch
(right-padded) and calls `on_layer(layer, patterns)` with each layer's `(batch, n_heads, seq, seq)`
attention pattern *while the forward pass is running*, from a hook, so a caller can hand a layer on
(to a file, to the render workers) before the next layer is computed and nothing keeps every
layer's patterns at once.

- `HFPatternModel`: any `transformers` model (causal LM or encoder) loaded with eager attention; a
  forward hook on each layer's attention module takes its `(attn_output, attn_weights, ...)` output.
  The model is run without `output_attentions`, so it does not also collect every layer (a
  `transformers` version whose attention modules return weights only when asked falls back to
  `output_attentions=True`, which holds every layer).
- `TLPatternModel`: anything with TransformerLens's interface (`HookedTransformer` of
  TransformerLens < 4; TransformerLens 4's `TransformerBridge`, whose hook dict has
  `blocks.<L>.attn.hook_pattern` too: checked by hand with transformer-lens 4.3.0 booted on a tiny
  local GPT-2, whose patterns came out equal to its own `run_with_cache` and to `HFPatternModel`'s):
  passes the text to `run_with_cache` and reads `blocks.<L>.attn.hook_pattern` from its cache, as
  the reference does (an object with only `run_with_hooks` gets hooks on those names instead).

torch is imported by this module: only the model paths import it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pattern_lens._layout import layer_key
from pattern_lens._model.interface import OnLayer, PatternModel, model_display_name  # defined there: they need no torch

__all__ = ["PatternModel", "HFPatternModel", "TLPatternModel", "OnLayer", "wrap_model", "model_display_name"]

def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


class HFPatternModel(PatternModel):
    """a `transformers` model with eager attention and its tokenizer

    # Parameters:
     - `model` a `transformers.PreTrainedModel` (base model or with a head), eager attention
     - `tokenizer` its tokenizer
     - `model_name : str` name for the data folder and `model_cfg.json`
    """

    def __init__(self, model: Any, tokenizer: Any, model_name: str) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_name = model_name
        cfg = model.config
        self.n_layers = int(cfg.num_hidden_layers)
        self.n_heads = int(cfg.num_attention_heads)
        n_ctx = getattr(cfg, "max_position_embeddings", None)
        self.n_ctx = int(n_ctx) if isinstance(n_ctx, int) else None
        self.blocks = self._find_blocks()
        # like TransformerLens's to_tokens: a causal model's text starts with the BOS token when
        # the tokenizer has one and does not add it itself (GPT-2)
        self._prepend: list[int] = []
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is not None:
            probe = tokenizer("a", add_special_tokens=True)["input_ids"]
            if not probe or probe[0] != bos:
                self._prepend = [int(bos)]

    def _find_blocks(self) -> Any:
        for _, module in self.model.named_modules():
            if isinstance(module, torch.nn.ModuleList) and len(module) == self.n_layers:
                return module
        raise ValueError(
            f"{self.model_name}: cannot find the list of {self.n_layers} transformer layers in "
            f"{type(self.model).__name__}"
        )

    def ids(self, text: str) -> list[int]:
        """token ids as the model sees them (special tokens, and a BOS where TransformerLens would add one)"""
        return self._prepend + list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def tokenize(self, text: str) -> list[str]:
        return list(self.tokenizer.tokenize(text))

    def seq_len(self, text: str) -> int:
        return len(self.ids(text))

    def pattern_tokens(self, text: str) -> list[str]:
        return [str(t) for t in self.tokenizer.convert_ids_to_tokens(self.ids(text))]

    def config_dict(self) -> dict:
        cfg = _jsonable(self.model.config.to_dict())
        cfg.update(
            model_name=self.model_name,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_ctx=self.n_ctx,
            d_model=getattr(self.model.config, "hidden_size", None),
            source="transformers",
        )
        return cfg

    def forward(self, texts: Sequence[str], layers: Sequence[int], on_layer: OnLayer) -> None:
        ids = [self.ids(t) for t in texts]
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # right padding: a real position never attends to a later one in a causal model, and the
        # attention mask hides the pad keys from an encoder; the patterns are trimmed per prompt
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], dtype=torch.long)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], dtype=torch.long)
        device = next(self.model.parameters()).device
        wanted = set(layers)
        done: set[int] = set()

        def make_hook(layer: int) -> Callable:
            def hook(module: Any, args: Any, output: Any) -> None:
                # the innermost module returning (output, weights) fires first; outer wrappers
                # passing the same weights on are ignored
                if layer in done or not isinstance(output, tuple):
                    return
                for t in output[1:]:
                    if (
                        isinstance(t, torch.Tensor)
                        and t.ndim == 4
                        and t.shape[0] == len(texts)
                        and t.shape[1] == self.n_heads
                        and t.shape[2] == t.shape[3] == width
                    ):
                        done.add(layer)
                        on_layer(layer, t)
                        return

            return hook

        handles = []
        try:
            for layer in sorted(wanted):
                hook = make_hook(layer)
                for module in self.blocks[layer].modules():
                    handles.append(module.register_forward_hook(hook))
            with torch.inference_mode():
                self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False)
        finally:
            for h in handles:
                h.remove()
        missing = sorted(wanted - done)
        if missing:
            # fallback, not failure: transformers versions whose attention modules return their
            # weights only when asked; the model then collects every layer (more memory)
            with torch.inference_mode():
                out = self.model(
                    input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False, output_attentions=True
                )
            attentions = getattr(out, "attentions", None)
            if not attentions or len(attentions) != self.n_layers:
                raise RuntimeError(
                    f"{self.model_name}: no attention weights in layers {missing}; the model must run with "
                    "eager attention (attn_implementation='eager') and return its attention weights"
                )
            for layer in missing:
                on_layer(layer, attentions[layer])


class TLPatternModel(PatternModel):
    """an object with TransformerLens's interface: `cfg` (`n_layers`, `n_heads`, `n_ctx`,
    `model_name`), `tokenizer`, `run_with_hooks` or `run_with_cache`, and `to_tokens`: optional, as
    in the reference's single-prompt path; without it a prompt's length is its pattern's side, so
    each prompt runs in a batch of its own"""

    def __init__(self, model: Any, model_name: str | None = None) -> None:
        self.model = model
        cfg = model.cfg
        # TransformerLens 4's bridge booted from a local folder names the model by its path
        self.model_name = model_name or model_display_name(str(getattr(cfg, "model_name", None) or type(model).__name__))
        self.n_layers = int(cfg.n_layers)
        self.n_heads = int(cfg.n_heads)
        n_ctx = getattr(cfg, "n_ctx", None)
        self.n_ctx = int(n_ctx) if isinstance(n_ctx, int) else None

    def tokenize(self, text: str) -> list[str]:
        return list(self.model.tokenizer.tokenize(text))

    def seq_len(self, text: str) -> int | None:
        if not hasattr(self.model, "to_tokens"):
            return None  # known from the pattern once the prompt has run (alone: no padding to trim)
        try:
            return int(self.model.to_tokens(text).shape[1])
        except (AssertionError, AttributeError, TypeError, ValueError):
            # a tokenizer that is only a stub (TransformerLens asserts "Set the tokenizer"): as for
            # no `to_tokens`, the prompt runs alone and its pattern tells its length
            return None

    def pattern_tokens(self, text: str) -> list[str] | None:
        convert = getattr(getattr(self.model, "tokenizer", None), "convert_ids_to_tokens", None)
        if not hasattr(self.model, "to_tokens") or convert is None:
            return None
        try:
            ids = self.model.to_tokens(text)[0].tolist()
        except (AssertionError, AttributeError, TypeError, ValueError):
            return None  # a stub tokenizer, as in `seq_len`: the viewer aligns the tokens by the pattern's side
        return [str(t) for t in convert(ids)]

    def config_dict(self) -> dict:
        cfg = self.model.cfg
        d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(vars(cfg))
        d = _jsonable(d)
        d.update(model_name=self.model_name, n_layers=self.n_layers, n_heads=self.n_heads, n_ctx=self.n_ctx)
        return d

    def forward(self, texts: Sequence[str], layers: Sequence[int], on_layer: OnLayer) -> None:
        names = {layer_key(layer): layer for layer in layers}
        inp: str | list[str] = texts[0] if len(texts) == 1 else list(texts)
        kwargs: dict = {"return_type": None}
        if len(texts) > 1:
            kwargs["padding_side"] = "right"
        if not hasattr(self.model, "run_with_cache"):  # hooks only: each layer as it is computed
            def make_hook(layer: int) -> Callable:
                def hook(t: torch.Tensor, hook: Any = None) -> None:
                    on_layer(layer, t)

                return hook

            with torch.inference_mode():
                self.model.run_with_hooks(inp, fwd_hooks=[(n, make_hook(l)) for n, l in names.items()], **kwargs)
            return
        # as the reference: the text to `run_with_cache` (the model tokenizes it itself), so an
        # object whose tokenizer is a stub works; the cache holds the batch's selected layers at once
        with torch.inference_mode():
            _, cache = self.model.run_with_cache(inp, names_filter=lambda n: n in names, **kwargs)
        for name, layer in sorted(names.items(), key=lambda kv: kv[1]):
            on_layer(layer, cache[name])


def wrap_model(model: Any, model_name: str | None = None) -> PatternModel:
    """a `PatternModel` for a loaded model object: ours, TransformerLens-style, or a `transformers` model

    # Raises:
     - `TypeError` for any other object
    """
    if isinstance(model, PatternModel):
        return model
    if hasattr(model, "cfg") and (hasattr(model, "run_with_hooks") or hasattr(model, "run_with_cache")):
        return TLPatternModel(model, model_name)
    if hasattr(model, "config") and isinstance(model, torch.nn.Module):
        raise TypeError(
            "a transformers model needs its tokenizer: load it with "
            "pattern_lens._model.load.load_model(name_or_folder), or wrap it as HFPatternModel(model, tokenizer, name)"
        )
    raise TypeError(
        f"cannot take attention patterns from a {type(model).__name__}: expected a model name or folder, "
        "a TransformerLens-style model (run_with_cache / run_with_hooks, hooks blocks.<L>.attn.hook_pattern)"
    )
