"""synthetic but realistic causal attention patterns, in memory or written in the reference layout

Each head has a kind, fixed per (seed, layer, head) like a real model's head, chosen with depth in
mind (early layers: previous-token and local heads; later layers: induction-like heads and
mixtures): previous-token, first-token sink, local window, induction-like offset diagonals, uniform
averaging, or a mixture of two. Per prompt, the logits get noise and prompt-dependent details (the
induction period), then every row is a softmax over the causal positions `j <= i`: the patterns are
lower-triangular float32 with rows summing to 1. Everything is deterministic from the seed
(`numpy.random.Generator`), and a layer can be made on its own, so writing streams layer by layer.

```python
from pattern_lens.synthetic import synthetic_patterns, write_synthetic_model
pats = synthetic_patterns(n_layers=2, n_heads=4, n_ctx=64)  # (2, 4, 64, 64) float32, no disk
model_dir = write_synthetic_model("attn_data", n_layers=12, n_heads=12, n_ctx=256, n_prompts=2)
```
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pattern_lens._command import (
    add_execution_arguments,
    add_selection_arguments,
    import_modules,
    positive_int,
    refresh_gallery,
    run_options,
)
from pattern_lens._layout import ACTIVATIONS_FILE, MODEL_CFG_FILE, PROMPTS_INDEX, PROMPT_FILE, layer_key
from pattern_lens._output.atomic import atomic_path, atomic_write_text, write_text_if_changed

__all__ = [
    "HEAD_KINDS",
    "ModelShape",
    "SHAPES",
    "DEFAULT_SHAPE",
    "head_kinds",
    "synthetic_layer",
    "synthetic_patterns",
    "synthetic_prompt",
    "synthetic_model_name",
    "write_synthetic_model",
    "add_demo_arguments",
    "run_demo",
]

HEAD_KINDS: tuple[str, ...] = (
    "previous_token",
    "first_token",
    "local_window",
    "induction",
    "uniform",
    "mixture",
)
"the kinds of heads generated"


@dataclass(frozen=True)
class ModelShape:
    """a model's attention shape: `n_layers` x `n_heads`, context `n_ctx`"""

    n_layers: int
    n_heads: int
    n_ctx: int


SHAPES: dict[str, ModelShape] = {
    "tiny": ModelShape(2, 2, 32),
    "small": ModelShape(4, 4, 64),
    "gpt2": ModelShape(12, 12, 256),
    "pythia-1b": ModelShape(16, 8, 256),
    "gpt2-medium": ModelShape(24, 16, 256),
    "llama-7b": ModelShape(32, 32, 256),
}
"named shapes (layers x heads as in the real models; n_ctx kept at 256 or less)"

DEFAULT_SHAPE: str = "gpt2"
"the demo's shape: 12 layers x 12 heads, n_ctx 256"

# kind probabilities at the first and the last layer, interpolated in between
_KIND_P_FIRST = np.array([0.30, 0.15, 0.30, 0.02, 0.13, 0.10])
_KIND_P_LAST = np.array([0.08, 0.22, 0.10, 0.25, 0.10, 0.25])


def head_kinds(n_layers: int, n_heads: int, seed: int = 0) -> list[list[str]]:
    """the kind of every head, `[layer][head]`, from `HEAD_KINDS`; same for every prompt"""
    out: list[list[str]] = []
    for layer in range(n_layers):
        depth = layer / max(1, n_layers - 1)
        p = (1 - depth) * _KIND_P_FIRST + depth * _KIND_P_LAST
        rng = np.random.default_rng([seed, layer, 0x6B])
        out.append([HEAD_KINDS[k] for k in rng.choice(len(HEAD_KINDS), size=n_heads, p=p / p.sum())])
    return out


def _kind_logits(kind: str, dist: np.ndarray, j: np.ndarray, rng: np.random.Generator, depth: float) -> np.ndarray:
    """logits (before the causal mask) of one head of `kind`; `dist = i - j`"""
    n = dist.shape[0]
    if kind == "previous_token":
        return rng.uniform(4.0, 8.0) * (dist == 1)
    if kind == "first_token":
        return rng.uniform(3.0, 7.0) * (j == 0) - 0.02 * np.abs(dist)
    if kind == "local_window":
        width = rng.uniform(2.0, 3.0 + 8.0 * depth)
        return rng.uniform(2.0, 5.0) * np.exp(-np.maximum(dist, 0) / width)
    if kind == "induction":
        period = int(rng.integers(max(2, n // 16), max(3, n // 3) + 1))
        hit = (dist >= period - 1) & ((dist - (period - 1)) % period == 0)
        return rng.uniform(4.0, 7.0) * hit + 1.5 * (j == 0)
    if kind == "uniform":
        return np.zeros((n, n))
    if kind == "mixture":
        a, b = rng.choice(["previous_token", "first_token", "local_window", "induction"], size=2, replace=False)
        w = rng.uniform(0.3, 0.7)
        return w * _kind_logits(str(a), dist, j, rng, depth) + (1 - w) * _kind_logits(str(b), dist, j, rng, depth)
    raise ValueError(f"unknown head kind {kind!r}: expected one of {HEAD_KINDS}")


def synthetic_layer(
    layer: int,
    n_layers: int = 12,
    n_heads: int = 12,
    n_ctx: int = 256,
    seed: int = 0,
    prompt_index: int = 0,
) -> np.ndarray:
    """one layer's attention patterns for one prompt

    # Parameters:
     - `layer : int` which layer (`0 .. n_layers-1`): sets the head kinds and the randomness
     - `n_layers : int` layers of the model, for the kinds' depth (defaults to `12`)
     - `n_heads : int` (defaults to `12`)
     - `n_ctx : int` context length (defaults to `256`)
     - `seed : int` (defaults to `0`)
     - `prompt_index : int` which prompt: the noise and details differ per prompt (defaults to `0`)

    # Returns:
     - `np.ndarray` float32 `(n_heads, n_ctx, n_ctx)`: lower-triangular, rows summing to 1
    """
    kinds = head_kinds(n_layers, n_heads, seed)[layer]
    rng = np.random.default_rng([seed, layer, prompt_index, 0x5A])
    depth = layer / max(1, n_layers - 1)
    i = np.arange(n_ctx)[:, None]
    j = np.arange(n_ctx)[None, :]
    dist = i - j
    causal = dist >= 0
    out = np.empty((n_heads, n_ctx, n_ctx), dtype=np.float32)
    for h, kind in enumerate(kinds):
        logits = _kind_logits(kind, dist, j, rng, depth)
        logits = logits + rng.normal(0.0, rng.uniform(0.3, 1.2), size=(n_ctx, n_ctx))
        logits = np.where(causal, logits, -np.inf)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        out[h] = probs
    return out


def synthetic_patterns(
    n_layers: int = 12,
    n_heads: int = 12,
    n_ctx: int = 256,
    seed: int = 0,
    prompt_index: int = 0,
) -> np.ndarray:
    """every layer's attention patterns for one prompt, in memory (no disk)

    # Parameters: as `synthetic_layer`

    # Returns:
     - `np.ndarray` float32 `(n_layers, n_heads, n_ctx, n_ctx)`, equal to stacking
       `synthetic_layer(layer, ...)` for every layer
    """
    return np.stack([synthetic_layer(L, n_layers, n_heads, n_ctx, seed, prompt_index) for L in range(n_layers)])


_WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there one all we their been has when who will more no if "
    "out so said what up its about into than them can only other new some could time these two may"
).split()


def synthetic_prompt(prompt_index: int, n_ctx: int, seed: int = 0) -> dict:
    """the `prompt.json` of a synthetic prompt: `text`, `hash`, `n_tokens` (= n_ctx), `tokens`, `meta`

    `hash` is a 22-character url-safe base64 digest of the text, like the reference's
    """
    rng = np.random.default_rng([seed, prompt_index, 0x77])
    tokens = [("" if k == 0 else " ") + _WORDS[w] for k, w in enumerate(rng.integers(0, len(_WORDS), size=n_ctx))]
    text = "".join(tokens)
    digest = hashlib.sha256(f"{seed}:{prompt_index}:{text}".encode()).digest()
    return {
        "text": text,
        "meta": {"synthetic": True, "seed": seed, "prompt_index": prompt_index},
        "hash": base64.urlsafe_b64encode(digest[:16]).decode().rstrip("="),
        "n_tokens": n_ctx,
        "tokens": tokens,
    }


def synthetic_model_name(n_layers: int, n_heads: int, n_ctx: int) -> str:
    """folder name of a synthetic model: `synthetic-<L>x<H>-ctx<n_ctx>`"""
    return f"synthetic-{n_layers}x{n_heads}-ctx{n_ctx}"


def _write_npz_streaming(path: Path, layers: int, make_layer, compress: bool) -> None:
    """write `activations.npz` one layer at a time (what `np.savez[_compressed]` writes, without holding every layer)"""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(
            tmp, "w", compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED, allowZip64=True
        ) as zf:
            for layer in range(layers):
                arr = make_layer(layer)[None]  # (1, n_heads, n_ctx, n_ctx) as transformer_lens saves
                with zf.open(layer_key(layer) + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, arr, allow_pickle=False)


def write_synthetic_model(
    save_path: Path | str,
    model_name: str | None = None,
    n_layers: int = 12,
    n_heads: int = 12,
    n_ctx: int = 256,
    n_prompts: int = 2,
    seed: int = 0,
    compress: bool = True,
    overwrite: bool = False,
) -> Path:
    """write a synthetic model in the reference layout

    `<save_path>/<model>/model_cfg.json`, `<model>/prompts.jsonl`, and per prompt
    `<model>/prompts/<hash>/prompt.json` and `activations.npz` (keys `blocks.<L>.attn.hook_pattern`,
    float32 `(1, n_heads, n_ctx, n_ctx)`). Files that exist are kept unless `overwrite` (the content
    is deterministic), so calling it again is cheap.

    # Parameters:
     - `save_path : Path | str` root folder
     - `model_name : str | None` (defaults to `None`: `synthetic_model_name(n_layers, n_heads, n_ctx)`)
     - `n_layers : int`, `n_heads : int`, `n_ctx : int` (defaults to `12`, `12`, `256`)
     - `n_prompts : int` (defaults to `2`)
     - `seed : int` (defaults to `0`)
     - `compress : bool` deflate the archives like `np.savez_compressed` (the reference's) (defaults to `True`)
     - `overwrite : bool` rewrite existing files (defaults to `False`)

    # Returns:
     - `Path` the model folder, `<save_path>/<sanitised model_name>`

    # Raises:
     - `InputError` for a model name that is not a folder name (`.`, `..`, empty after sanitising)
    """
    model_name = model_name or synthetic_model_name(n_layers, n_heads, n_ctx)
    from pattern_lens._input.inputs import model_folder  # the folder figures_main reads: sanitised, inside save_path

    model_dir = model_folder(save_path, model_name)
    (model_dir / "prompts").mkdir(parents=True, exist_ok=True)
    cfg = {
        "model_name": model_name,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "n_ctx": n_ctx,
        "d_model": 64 * n_heads,
        "d_head": 64,
        "attention_dir": "causal",
        "original_architecture": "synthetic",
        "seed": seed,
    }
    write_text_if_changed(model_dir / MODEL_CFG_FILE, json.dumps(cfg, indent=2))
    prompts = [synthetic_prompt(k, n_ctx, seed) for k in range(n_prompts)]
    for k, prompt in enumerate(prompts):
        prompt_dir = model_dir / "prompts" / prompt["hash"]
        prompt_dir.mkdir(parents=True, exist_ok=True)
        if overwrite or not (prompt_dir / PROMPT_FILE).exists():
            atomic_write_text(prompt_dir / PROMPT_FILE, json.dumps(prompt))
        npz = prompt_dir / ACTIVATIONS_FILE
        if overwrite or not npz.exists():
            _write_npz_streaming(
                npz, n_layers, lambda L, k=k: synthetic_layer(L, n_layers, n_heads, n_ctx, seed, k), compress
            )
    write_text_if_changed(model_dir / PROMPTS_INDEX, "".join(json.dumps(p) + "\n" for p in prompts))
    return model_dir


# ---------------------------------------------------------------------------------------------------
# `pattern-lens demo`


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens demo`"""
    p.add_argument("--out", "-o", type=str, default="pattern_lens_demo", help="folder to write into (default: ./pattern_lens_demo)")
    p.add_argument(
        "--shape", choices=sorted(SHAPES), default=DEFAULT_SHAPE,
        help=f"model shape (default: {DEFAULT_SHAPE}: " + ", ".join(
            f"{k} {s.n_layers}x{s.n_heads} ctx {s.n_ctx}" for k, s in SHAPES.items()
        ) + ")",
    )
    p.add_argument("--n-layers", type=positive_int, default=None, help="override the shape's layers")
    p.add_argument("--n-heads", type=positive_int, default=None, help="override the shape's heads")
    p.add_argument("--n-ctx", type=positive_int, default=None, help="override the shape's context length")
    p.add_argument("--n-prompts", type=positive_int, default=2, help="prompts (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_selection_arguments(p)
    add_execution_arguments(p)


def run_demo(args: argparse.Namespace) -> int:
    """write a synthetic model into `args.out` (unless there already) and render every head"""
    from pattern_lens.figures import figures_main

    import_modules(args.imports)
    shape = SHAPES[args.shape]
    n_layers = args.n_layers or shape.n_layers
    n_heads = args.n_heads or shape.n_heads
    n_ctx = args.n_ctx or shape.n_ctx
    out = Path(args.out)
    model_dir = write_synthetic_model(
        out, n_layers=n_layers, n_heads=n_heads, n_ctx=n_ctx, n_prompts=args.n_prompts, seed=args.seed
    )
    if not args.quiet:
        print(f"synthetic model {model_dir.name}: {args.n_prompts} prompts, {n_layers} layers x {n_heads} heads, n_ctx {n_ctx}")
    summary = figures_main(
        model_name=model_dir.name,
        save_path=out,
        n_samples=None,
        verbose=False,
        **run_options(args),
    )
    print(summary.format())
    print(f"figures: {model_dir / 'prompts'}/<hash>/L<layer>/H<head>/")
    if args.summaries or args.summaries_only:
        print(
            f"summaries: {model_dir / 'prompts'}/<hash>/head_stats.json and L<layer>/H<head>/preview.png;"
            f" rank heads: pattern-lens stats -m {model_dir.name} -s {out}"
        )
    print(f"indexes: {out / 'figures.jsonl'}, {out / 'models.jsonl'}, {model_dir / 'prompts.jsonl'}")
    print(f"speed: {summary.heads_per_s:.1f} heads/s on {summary.n_jobs} workers")
    gallery_code = refresh_gallery(out, quiet=True)
    if not gallery_code:
        from pattern_lens._view.gallery import gallery_url

        print(f"look at them: open {gallery_url(out)} in a browser, or run: pattern-lens serve {out}")
    return 1 if gallery_code or not summary.ok else 0
