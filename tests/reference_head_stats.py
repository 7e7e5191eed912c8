"""the head statistics and the preview written out plainly in numpy: the oracle of test_head_stats

Straight from the definitions in `pattern_lens._summaries.stats` (float64, one row at a time, numpy's
own log). Nothing here imports pattern_lens.
"""

import numpy as np

NAMES = (
    "entropy", "prev_token", "self", "first_token", "local", "distance", "row_max",
    "key_max_share", "key_max_position",
)


def row_positions(n: int, i: int, causal: bool) -> int:
    """L_i: how many positions row i may attend"""
    return i + 1 if causal else n


def head_stats(a: np.ndarray, causal: bool, window: int) -> dict[str, float]:
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    per_row: dict[str, list[float]] = {k: [] for k in NAMES[:7]}
    col = np.zeros(n)
    for i in range(n):
        length = row_positions(n, i, causal)
        row = a[i, :length]
        s = row.sum()
        if length < 2 or s <= 0:
            continue
        p = row / s
        nz = p[p > 0]
        per_row["entropy"].append(-(nz * np.log(nz)).sum() / np.log(length))
        if i >= 1:
            per_row["prev_token"].append(p[i - 1])
        per_row["self"].append(p[i])
        per_row["first_token"].append(p[0])
        j = np.arange(length)
        per_row["local"].append(p[(np.abs(i - j) < window) & (j != i - 1)].sum())
        per_row["distance"].append((p * np.abs(i - j)).sum())
        per_row["row_max"].append(p.max())
        col[:length] += row
    out = {k: (float(np.mean(v)) if v else float("nan")) for k, v in per_row.items()}
    if per_row["entropy"] and col.sum() > 0:
        out["key_max_share"] = float(col.max() / col.sum())
        out["key_max_position"] = float(np.argmax(col))
    else:
        out["key_max_share"] = out["key_max_position"] = float("nan")
    return out


def preview(a: np.ndarray, causal: bool, size: int) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    k = min(n, size)
    edges = [(t * n) // k for t in range(k + 1)]
    inside = np.tril(np.ones((n, n), dtype=bool)) if causal else np.ones((n, n), dtype=bool)
    out = np.zeros((k, k))
    for bi in range(k):
        for bj in range(k):
            rows = slice(edges[bi], edges[bi + 1])
            cols = slice(edges[bj], edges[bj + 1])
            m = inside[rows, cols]
            out[bi, bj] = a[rows, cols][m].mean() if m.any() else 0.0
    return out
