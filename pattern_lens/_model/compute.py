"""from prompts to per-prompt attention patterns: check, tokenize, batch, run, trim

`prepare_prompts` turns prompt dicts into `PreparedPrompt`s (hash, tokens, sequence length) and
turns bad ones into messages naming them (empty text, longer than the model's context);
`make_batches` groups them by length, longest first, like the reference; `run_batch` runs one
forward pass and calls `sink(prompt, layer, patterns)` with each prompt's layer, trimmed to its own
length (`(n_heads, seq, seq)`, numpy, float32 for bfloat16 models), while the forward pass goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pattern_lens._errors import InputError
from pattern_lens._model.interface import PatternModel
from pattern_lens._input.inputs import check_prompt_hash
from pattern_lens._tokens import pattern_fields
from pattern_lens.load_activations import augment_prompt_with_hash

__all__ = ["PreparedPrompt", "prepare_prompts", "make_batches", "run_batch", "layer_to_numpy", "StageTimes", "Sink"]


@dataclass
class PreparedPrompt:
    """a prompt ready for the model

    # Fields:
     - `prompt : dict` with `text`, `hash`, `tokens`, `n_tokens` (what `prompt.json` holds), and
       `pattern_tokens`, `first_text_token` where the model tells them (`pattern_lens._tokens`)
     - `seq_len : int | None` positions the model sees (special tokens included): the patterns'
       side; `None` when the model cannot say before the forward pass (a TransformerLens-style
       object without `to_tokens`): the prompt then runs in a batch of its own
     - `where : str` where the prompt came from, for messages (`file:line` or `prompt 3`)
    """

    prompt: dict
    seq_len: int | None
    where: str


Sink = Callable[[PreparedPrompt, int, np.ndarray], None]
"called with (prompt, layer, patterns (n_heads, seq, seq)) for each prompt of a batch and each layer"


@dataclass
class StageTimes:
    """seconds spent per stage (summed over batches)"""

    forward: float = 0.0
    "the forward passes, hooks excluded"
    copy_out: float = 0.0
    "trimming and copying each layer out of the model's tensor into numpy"
    sink: float = 0.0
    "handing layers on (writing `.npz` members, queueing for the render workers)"
    n_batches: int = 0
    "forward passes run"


def prepare_prompts(
    model: PatternModel, prompts: Iterable[tuple[str, dict]]
) -> tuple[list[PreparedPrompt], list[str]]:
    """hash, tokenize and check prompts; the bad ones become messages naming them

    # Parameters:
     - `model : PatternModel`
     - `prompts : Iterable[tuple[str, dict]]` `(where, prompt)` pairs; `where` names the prompt in messages

    # Returns:
     - `tuple[list[PreparedPrompt], list[str]]` good prompts (duplicates by hash dropped) and error messages
    """
    out: list[PreparedPrompt] = []
    errors: list[str] = []
    seen: set[str] = set()
    for where, prompt in prompts:
        text = prompt.get("text")
        if not isinstance(text, str):
            errors.append(f"{where}: no string 'text' (keys: {sorted(prompt)})")
            continue
        if not text.strip():
            errors.append(f"{where}: empty prompt: 'text' has no characters to tokenize")
            continue
        augment_prompt_with_hash(prompt)
        try:  # a hash given with the prompt names its folder: never a path leaving the save path
            check_prompt_hash(prompt["hash"])
        except InputError as e:
            errors.append(f"{where}: {e}")
            continue
        if prompt["hash"] in seen:
            continue
        tokens: list[str] = prompt.get("tokens") or model.tokenize(text)
        seq_len: int | None = model.seq_len(text)
        if model.n_ctx is not None and seq_len is not None and seq_len > model.n_ctx:
            errors.append(
                f"{where}: prompt is {seq_len} tokens, longer than the context of {model.model_name} "
                f"({model.n_ctx} positions); shorten it (e.g. --max-chars) (text starts {text[:40]!r})"
            )
            continue
        seen.add(prompt["hash"])
        prompt.update(n_tokens=len(tokens), tokens=tokens)
        prompt.update(pattern_fields(model.pattern_tokens(text), tokens, seq_len))
        out.append(PreparedPrompt(prompt, seq_len, where))
    return out, errors


def make_batches(prompts: Sequence[PreparedPrompt], batch_size: int) -> list[list[PreparedPrompt]]:
    """longest first, `batch_size` a batch: similar lengths share a batch (little padding) and the
    largest batch runs first, so running out of memory shows at once; a prompt of unknown length
    (`seq_len` `None`) gets a batch of its own, at the end: without its length its padding could
    not be trimmed"""
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    ordered = sorted((p for p in prompts if p.seq_len is not None), key=lambda p: p.seq_len, reverse=True)
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    return batches + [[p] for p in prompts if p.seq_len is None]


def layer_to_numpy(patterns: torch.Tensor, index: int, seq_len: int | None) -> np.ndarray:
    """one prompt's `(n_heads, seq_len, seq_len)` from a batch's `(batch, n_heads, S, S)`, in numpy
    (`seq_len` `None`: all of `S`, for a prompt that ran alone)

    float32 and float16 stay as they are (the reference saves the model's dtype); bfloat16, which
    numpy has no type for (the reference fails on it), becomes float32, which holds it exactly.
    """
    t = patterns[index, :, :seq_len, :seq_len].detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return np.ascontiguousarray(t.cpu().numpy())


def run_batch(
    model: PatternModel,
    batch: Sequence[PreparedPrompt],
    layers: Sequence[int],
    sink: Sink,
    times: StageTimes | None = None,
) -> None:
    """one forward pass over `batch`; `sink` gets each prompt's trimmed layer as soon as it is computed"""
    if len(batch) > 1 and any(p.seq_len is None for p in batch):
        # the padding of a prompt of unknown length could not be trimmed: make_batches never does this
        unknown = next(p.where for p in batch if p.seq_len is None)
        raise ValueError(f"{unknown}: length unknown before the forward pass (the model has no to_tokens); it must run alone")
    times = times if times is not None else StageTimes()
    in_hooks = 0.0

    def on_layer(layer: int, patterns: torch.Tensor) -> None:
        nonlocal in_hooks
        t0 = time.perf_counter()
        arrays = [layer_to_numpy(patterns, i, p.seq_len) for i, p in enumerate(batch)]
        t1 = time.perf_counter()
        for p, arr in zip(batch, arrays):
            sink(p, layer, arr)
        t2 = time.perf_counter()
        times.copy_out += t1 - t0
        times.sink += t2 - t1
        in_hooks += t2 - t0

    t_start = time.perf_counter()
    model.forward([p.prompt["text"] for p in batch], layers, on_layer)
    times.forward += time.perf_counter() - t_start - in_hooks
    times.n_batches += 1
