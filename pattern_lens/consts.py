"""constants and type aliases shared by the whole package (same names as the reference `pattern_lens.consts`)"""

import re

import numpy as np
from jaxtyping import Float

__all__ = [
    "AttentionMatrix",
    "ActivationCacheNp",
    "DATA_DIR",
    "ATTN_PATTERN_REGEX",
    "SPINNER_KWARGS",
    "DIVIDER_S1",
    "DIVIDER_S2",
    "sanitize_name_str",
]

AttentionMatrix = Float[np.ndarray, "n_ctx n_ctx"]
"type alias for one head's attention pattern"

ActivationCacheNp = dict[str, np.ndarray]
"type alias for a cache of activations, as loaded from an `activations.npz` file"

DATA_DIR: str = "attn_data"
"default directory for attention data and figures"

ATTN_PATTERN_REGEX: re.Pattern = re.compile(r"blocks\.(\d+)\.attn\.hook_pattern")
"regex matching the activation-cache keys of attention patterns; group 1 is the layer index"

SPINNER_KWARGS: dict = dict(config=dict(success="✔️ "))
"the reference's keyword arguments for `SpinnerContext` (a tick when a step succeeds)"

DIVIDER_S1: str = "=" * 70
"the reference's divider between sections of its output"

DIVIDER_S2: str = "-" * 50
"the reference's divider between subsections of its output"


_UNSAFE_NAME_CHARS: re.Pattern = re.compile(r"[^A-Za-z0-9._-]")


def sanitize_name_str(name: str) -> str:
    """a name made safe as a folder name, as the reference does it

    `/` becomes `-` (`"google/gemma-2b"` -> `"google-gemma-2b"`), every other character outside
    `A-Z a-z 0-9 . _ -` becomes `_` (`"model name"` -> `"model_name"`); idempotent.

    # Parameters:
     - `name : str`

    # Returns:
     - `str`
    """
    return _UNSAFE_NAME_CHARS.sub("_", name.replace("/", "-"))
