"""a model config's sizes checked before anything is sized from them: a damaged `model_cfg.json` fails fast

`n_layers` and `n_heads` size every plan, list and array of a run. A config saying
`"n_layers": 100000000000` ran out of memory building the plan; `"n_heads": 100000000` against
`.npz` files of 3 heads was still planning after two minutes. Two checks, before any allocation:

- `check_sizes`: at most `MAX_LAYERS_OR_HEADS` of each (more than any model has);
- `check_against_activations`: `n_heads` equal to the head axis of a prompt's stored pattern (read
  from the `.npy` header only), and `n_layers` not more than the layers that file holds, for at least
  one of the first prompts' files (a single damaged file is its prompt's error, not the config's).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pattern_lens._errors import InputError
from pattern_lens._layout import ACTIVATIONS_FILE
from pattern_lens._input.npz import ActivationsError, ActivationsFile

__all__ = ["MAX_LAYERS_OR_HEADS", "check_sizes", "check_against_activations"]

MAX_LAYERS_OR_HEADS: int = 1 << 16
"more layers (or heads per layer) than any transformer has: a config saying more is damaged"

_LAYER_KEY: re.Pattern = re.compile(r"^blocks\.(\d+)\.attn\.hook_pattern$")


def check_sizes(path: Path | str, n_layers: int, n_heads: int) -> None:
    """`InputError` naming the config when `n_layers` or `n_heads` is beyond `MAX_LAYERS_OR_HEADS`"""
    for key, value in (("n_layers", n_layers), ("n_heads", n_heads)):
        if value > MAX_LAYERS_OR_HEADS:
            raise InputError(
                f"{path}: {key!r} is {value}, more than any model has (at most {MAX_LAYERS_OR_HEADS} accepted); "
                "the config is damaged"
            )


def check_against_activations(cfg_path: Path | str, n_layers: int, n_heads: int, prompt_dirs: Sequence[str]) -> None:
    """compare the config with the readable `activations.npz` of the first `prompt_dirs` (headers only)

    The config is damaged only when no file agrees with it: one damaged file (a missing layer) is that
    prompt's error, reported when it is rendered, while the others render. A file that cannot be read
    is skipped here too.

    # Raises:
     - `InputError` when every file read disagrees: its head axis differs from `n_heads`, or it holds
       fewer layers than `n_layers` (the first file's reason is given)
    """
    first_reason: str | None = None
    for d in prompt_dirs[:8]:
        npz = Path(d) / ACTIVATIONS_FILE
        try:
            with ActivationsFile(npz) as acts:
                layers = sorted(int(m.group(1)) for k in acts.keys if (m := _LAYER_KEY.match(k)))
                if not layers:
                    continue
                shape = acts.layer_shape(layers[0])
        except (ActivationsError, OSError):
            continue
        reason = None
        if len(shape) == 4 and shape[1] != n_heads:
            reason = (
                f"{cfg_path}: 'n_heads' is {n_heads}, but {npz} holds {shape[1]} heads per layer "
                f"(shape {tuple(shape)}): the config does not belong to these activations"
            )
        elif n_layers > len(layers) and n_layers > layers[-1] + 1:
            reason = (
                f"{cfg_path}: 'n_layers' is {n_layers}, but {npz} holds {len(layers)} layers "
                f"(up to {layers[-1]}): the config does not belong to these activations"
            )
        if reason is None:
            return
        first_reason = first_reason or reason
    if first_reason is not None:
        raise InputError(first_reason)
