"""the token axis of each prompt for the page: recorded by the run, or rebuilt for older data

`prompt_axis(prompt, prompt_dir, cfg)` returns the fields the gallery adds to a prompt's row in
`prompts.js` (the page reads them, `prompts.jsonl` is not changed):

- `axis : list[str]` the tokens along the pattern's side, when rebuilt around the prompt's
  `tokens` (a `<BOS>` before them, `[CLS]` ... `[SEP]` around them): absent when the prompt records
  `pattern_tokens` (the page takes those) or its `tokens` fill the side
- `axis_side : int` the pattern's side, where known
- `axis_note : str` how the axis was made, or why it could not be (the page shows it)

The pattern's side of a prompt without recorded tokens is read cheaply: the `raw.png` header of its
first head, else the header of its `activations.npz`'s first layer.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pattern_lens._layout import ACTIVATIONS_FILE
from pattern_lens._input.npz import peek_n_ctx
from pattern_lens._tokens import align_tokens

__all__ = ["pattern_side", "prompt_axis"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int] | None:
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _first_raw_png(prompt_dir: Path) -> Path | None:
    first = prompt_dir / "L0" / "H0" / "raw.png"
    if first.is_file():
        return first
    for layer_dir in sorted(prompt_dir.glob("L*"))[:4]:
        for head_dir in sorted(layer_dir.glob("H*"))[:4]:
            if (head_dir / "raw.png").is_file():
                return head_dir / "raw.png"
    return None


def pattern_side(prompt_dir: Path) -> int | None:
    """the side of the prompt's patterns: from a `raw.png` (one pixel per token pair), else from
    the `.npz` header; `None` when neither tells"""
    raw = _first_raw_png(prompt_dir)
    size = _png_size(raw) if raw is not None else None
    if size is not None and size[0] == size[1]:
        return int(size[0])
    if (prompt_dir / ACTIVATIONS_FILE).is_file():
        return peek_n_ctx(prompt_dir / ACTIVATIONS_FILE)
    return None


def prompt_axis(prompt: dict, prompt_dir: Path, cfg: dict | None) -> dict:
    """the fields the page needs to put tokens on the prompt's axes (see the module docstring)"""
    recorded = prompt.get("pattern_tokens")
    side = len(recorded) if isinstance(recorded, list) and recorded else pattern_side(prompt_dir)
    axis = align_tokens(prompt, side, cfg)
    out: dict = {"axis_note": axis.note}
    if side is not None:
        out["axis_side"] = side
    if axis.how in ("bos", "cls_sep"):
        out["axis"] = axis.tokens
    return out
