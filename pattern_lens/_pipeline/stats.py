"""per-head statistics and previews of attention patterns: the definitions, and the dtype dispatch

Notation, for a pattern `A` of shape `(n, n)` (row `i` = query position, column `j` = key position):

- **causal mask.** A causal pattern's row `i` has the positions `j in [0, i]` (`L_i = i + 1`); a full
  (bidirectional) pattern's row has every `j in [0, n)` (`L_i = n`). With `causal=None` a pattern is
  taken as causal when every value above the diagonal is zero; for a causal pattern the values above
  the diagonal are never read.
- **rows.** `s_i = sum_j A_ij` is row `i`'s mass and `p_ij = A_ij / s_i` its distribution, so rows that
  do not sum to exactly 1 (float16 rounding, a cut-off softmax) are measured as distributions.
  A row **counts** when it has a choice and some mass: `L_i >= 2` and `s_i > 0`. A causal pattern's
  row 0 (one position) never counts, and neither does an all-zero row. Every statistic is a plain
  mean over the counting rows (each row weighs the same whatever its length), and NaN when no row
  counts. Zeros inside a row are ordinary values (`0 log 0 = 0`).

The statistics (`STATISTICS`, in this order):

- `entropy`: `mean_i H_i / log(L_i)`, `H_i = -sum_j p_ij log p_ij`: 0 attends one position, 1 spreads
  evenly over every position the row can see (the row's possible maximum, so short and long rows
  compare).
- `prev_token`: `mean_i p_{i,i-1}` over the counting rows with `i >= 1` (all of them when causal).
- `self`: `mean_i p_ii`, attention to the query's own position.
- `first_token`: `mean_i p_i0`, attention to the first position (an attention sink / BOS).
- `local`: `mean_i sum_{j : |i - j| < w, j != i - 1} p_ij`, the mass within the local window `w`
  (`local_window`, default `LOCAL_WINDOW`; causal: the last `w` positions up to and including `i`)
  other than the previous token, which has its own statistic: `local` finds heads spread over a
  neighbourhood, not previous-token heads again (the window's whole mass is `local + prev_token`).
- `distance`: `mean_i sum_j p_ij |i - j|`, the mean attention distance in tokens.
- `row_max`: `mean_i max_j p_ij`, how peaked the rows are.
- `key_max_share`: `max_j C_j / sum_j C_j` with `C_j = sum_i A_ij` over the counting rows: the share of
  the head's attention that its most attended key position receives (a sink anywhere, not only at 0).
  Raw values, not `p`: the same for rows summing to 1.
- `key_max_position`: that position `j` (the first one on a tie).

Accuracy: logs are computed in float32 arithmetic (relative error ~1e-7) and sums are reordered for
speed, so values agree with a float64 numpy evaluation to about 1e-6 relative; `row_max` is the
row's maximum rounded to float32.

**Preview.** The pattern downsampled to at most `S x S` (`preview_size`, default `PREVIEW_SIZE`) by
block averaging: `k = min(n, S)` blocks per side with edges `b_t = floor(t * n / k)`; block `(I, J)`
holds rows `[b_I, b_{I+1})` and columns `[b_J, b_{J+1})`, and its value is the mean of its values,
for a causal pattern the mean of its values with `j <= i` only (so the diagonal blocks are not dimmed
by the masked half), and 0 for a block of a causal pattern without any such value. For `n <= S` the
preview is the pattern itself (same dtype), so it colours into exactly the full image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pattern_lens.kernels import HEAD_STAT_NAMES, head_summary, strict_upper_nonzero

__all__ = [
    "STATISTICS",
    "LOCAL_WINDOW",
    "PREVIEW_SIZE",
    "HeadSummary",
    "summarize_head",
    "is_causal",
    "block_edges",
]

STATISTICS: dict[str, str] = {
    "entropy": "mean row entropy / log(row length): 0 one position, 1 uniform",
    "prev_token": "mean attention to the previous token",
    "self": "mean attention to the query's own position",
    "first_token": "mean attention to the first token (sink)",
    "local": "mean attention within the local window |i - j| < w, previous token excluded",
    "distance": "mean attention distance |i - j|, tokens",
    "row_max": "mean of each row's largest attention",
    "key_max_share": "share of all attention received by the most attended key position",
    "key_max_position": "the most attended key position",
}
"every statistic, in the kernel's order, with a one-line description (the definitions: module docstring)"
assert tuple(STATISTICS) == HEAD_STAT_NAMES

LOCAL_WINDOW: int = 8
"default local window `w` of the `local` statistic: positions with `|i - j| < 8`"

PREVIEW_SIZE: int = 64
"default largest preview side, pixels: a grid cell; a 4096-token head becomes 64 x 64 blocks of 64 x 64"

_F32_BITS = (np.int32, np.int32(0x7FFFFFFF))
_F64_BITS = (np.int64, np.int64(0x7FFFFFFFFFFFFFFF))


@dataclass(frozen=True)
class HeadSummary:
    """what `summarize_head` computes for one head

    # Fields:
     - `stats : dict[str, float]` every statistic of `STATISTICS` (NaN when no row counts)
     - `preview : np.ndarray` `(k, k)`, `k = min(n, preview_size)`; float32 (float64 for float64 input),
       or the pattern itself when `n <= preview_size`
     - `causal : bool` whether the pattern was measured as causal
     - `n_ctx : int` the pattern's side
     - `min`, `max : float | None` the smallest and largest value of the whole pattern (masked part
       included: what a min-max normalised figure such as `raw` is scaled by), so a viewer can turn a
       colour back into weights
    """

    stats: dict[str, float]
    preview: np.ndarray
    causal: bool
    n_ctx: int
    min: float | None = None
    max: float | None = None


def _as_kernel_input(pattern: np.ndarray) -> np.ndarray:
    if not isinstance(pattern, np.ndarray):
        raise TypeError(f"attention pattern must be a numpy array, got {type(pattern).__name__}")
    if pattern.ndim != 2 or pattern.shape[0] != pattern.shape[1] or pattern.shape[0] < 1:
        raise ValueError(f"attention pattern must be a square 2D array (n_ctx, n_ctx), got shape {pattern.shape}")
    if pattern.dtype.kind not in "fiub":
        raise TypeError(f"attention pattern must hold real numbers, got dtype {pattern.dtype}")
    if pattern.dtype == np.float64 or pattern.dtype == np.float32:
        return np.ascontiguousarray(pattern, dtype=pattern.dtype.newbyteorder("="))
    # float16 widens exactly; integers and bools as float64
    return np.ascontiguousarray(pattern, dtype=np.float32 if pattern.dtype == np.float16 else np.float64)


def _zero_above_diagonal(x: np.ndarray) -> bool:
    """`is_causal` of a kernel input (`_as_kernel_input`): the kernel reads the floats' bits"""
    int_type, mask = _F32_BITS if x.dtype == np.float32 else _F64_BITS
    return not strict_upper_nonzero(x.view(int_type), mask)


def is_causal(pattern: np.ndarray) -> bool:
    """whether every value above the diagonal of the square `pattern` is zero (NaN is not zero)"""
    return _zero_above_diagonal(_as_kernel_input(pattern))


def block_edges(n: int, size: int) -> np.ndarray:
    """the preview's block edges: `floor(t * n / k)` for `t = 0..k`, `k = min(n, size)` (int64)"""
    k = min(n, size)
    return (np.arange(k + 1, dtype=np.int64) * n) // k


def summarize_head(
    pattern: np.ndarray,
    causal: bool | None = None,
    local_window: int = LOCAL_WINDOW,
    preview_size: int = PREVIEW_SIZE,
) -> HeadSummary:
    """the statistics and the preview of one head, in one pass over its pattern

    # Parameters:
     - `pattern : np.ndarray` `(n, n)` attention pattern, float16/32/64 (other real dtypes are taken
       as float64), values finite and >= 0
     - `causal : bool | None` measure with the causal mask; `None` decides by the values above the
       diagonal (defaults to `None`)
     - `local_window : int` `w` of the `local` statistic, >= 1 (defaults to `LOCAL_WINDOW`)
     - `preview_size : int` largest preview side, >= 1 (defaults to `PREVIEW_SIZE`)

    # Returns:
     - `HeadSummary`

    # Raises:
     - `TypeError` for a non-array or non-numeric pattern
     - `ValueError` for a non-square pattern, a negative or NaN value, or a bad window / size
    """
    x = _as_kernel_input(pattern)
    if int(local_window) < 1 or int(preview_size) < 1:
        raise ValueError(f"local_window and preview_size must be >= 1, got {local_window} and {preview_size}")
    n = x.shape[0]
    if causal is None:
        causal = _zero_above_diagonal(x)
    edges = block_edges(n, int(preview_size))
    k = len(edges) - 1
    stats = np.empty(len(HEAD_STAT_NAMES), dtype=np.float64)
    preview = np.empty((k, k), dtype=x.dtype)
    # the float32 bits the kernel's log reads: free for float32, one conversion for float64
    xbits = (x if x.dtype == np.float32 else x.astype(np.float32)).view(np.int32)
    low, high, _ = head_summary(x, xbits, bool(causal), int(local_window), edges, stats, preview)
    if not (low >= 0 and np.isfinite(high)):  # NaN compares false
        what = f"a negative value ({low:g})" if low < 0 else "a NaN or inf"
        raise ValueError(
            f"attention pattern holds {what}{' in its causal part' if causal else ''}; expected "
            "finite values >= 0"
        )
    return HeadSummary(
        stats=dict(zip(HEAD_STAT_NAMES, stats.tolist())),
        # the pattern itself (its own dtype: it colours into exactly the full image), unless it holds
        # no floats (the image functions want numbers they can normalise)
        preview=(pattern if pattern.dtype.kind == "f" else x) if n <= preview_size else preview,
        causal=bool(causal),
        n_ctx=n,
        min=float(x.min()),
        max=float(x.max()),
    )
