"""per-head statistics and a block-averaged preview of one attention pattern, in one pass

`head_summary` reads each row of the pattern from memory once (its causal part only, for a causal
pattern; the loops below go over it while it is in cache) and accumulates, per row, the sums every
statistic needs, plus the block sums of the preview. The definitions (what each statistic means, which rows count) are documented with the
names in `pattern_lens._summaries.stats`; the numbers here follow them:

for row `i` with positions `j in [0, L_i)` (causal: `L_i = i + 1`; full: `L_i = n`), values `a_ij`,
mass `s_i = sum_j a_ij`, `p_ij = a_ij / s_i`; a row counts when `L_i >= 2` and `s_i > 0`.

Per row, three loops LLVM vectorises: `_bits_range` finds the smallest and largest float32 bits (and
any subnormal), `_add_row` adds `a` into the preview's block-row sums, and `_log_sums` sums `a`,
`a log a` and `a |i - j|`, taking each value's exponent and mantissa from its bits by integer operations;
then `sum_j p log p = (sum_j a log a) / s - log s`. The log (`_log_from_parts`) is `e ln 2 + log(m)`
with `log(m)` for `m` in `[sqrt(1/2), sqrt(2))` as `2 atanh((m - 1) / (m + 1))` to the 9th power, in
float32 (relative error ~1e-7, the accuracy of a float32 input): numba's own `log` is one scalar
call per value, 1.3 ms more per 1024 x 1024 head. Against the earlier split (bits into scratch
rows, then a sums loop that never vectorised), interleaved in one process, causal 1024 x 1024
float32: median 2.47 -> 1.48 ms (`bench_summaries.py --base`, benchmarks/README.md). Tried and
dropped, side by side on one day: one loop doing the bit scan too (1.0 against 0.82 ms; an int64
constant, or counting the subnormals instead of flagging them, also kept a loop scalar), the store
into the block sums inside `_log_sums` (scalar again), and a division-free log polynomial (within
noise). Once the loops no longer gathered (next paragraph), the bit scan and the block sums were
tried inside `_log_sums` again: 0.54-0.55 ms, against 0.35-0.46 ms for the three loops apart.
Every loop indexes from 0 (a chunk or a row's part is sliced first): with an index LLVM cannot
prove >= 0 (`range(c0, c1)`) numba keeps its negative-index wraparound, and LLVM then loaded every
lane with a gather instead of a vector load (the log sums 0.91 -> 0.22 ms per causal 1024 x 1024
head, in cache, when that was found). The sums' order changed with it: statistics moved in their
7th digit (130 of 6,912 values of pythia-14m's heads, at most 2.2e-6 relative).
A row with float32-subnormal values (wrong exponent field) or a mass outside `(1e-30, 1e30)` takes
the exact path `_plogp_row`: the values scaled to `p` first, then the same log.
The same row loop also gives the whole matrix's smallest and largest value (the masked part of a
causal row by one more `_bits_range`, while the row is in cache), which the `raw` figure's min-max
normalisation needs: with them, a fast `raw` figure plus summaries reads the pattern twice (this
kernel, then the colormap kernel) instead of four times (numpy's min, max, the colormap kernel,
this kernel). The extra scan costs 0.10-0.12 ms per causal 1024 x 1024 head (in cache); the
numpy min + max it replaces, 0.5 ms from memory (benchmarks/README.md, "One pass per head").
"""

import numpy as np

from ._jit import jit, jit_reduce
from ._prefetch import prefetch_items

__all__ = ["HEAD_STAT_NAMES", "head_summary", "strict_upper_nonzero"]

HEAD_STAT_NAMES: tuple[str, ...] = (
    "entropy",
    "prev_token",
    "self",
    "first_token",
    "local",
    "distance",
    "row_max",
    "key_max_share",
    "key_max_position",
)
"the order of the values `head_summary` writes into `stats`"

_NEG_ZERO = np.int32(-0x80000000)  # the bits of -0.0 as int32, the smallest int32
_I32_MAX = np.int32(0x7FFFFFFF)
_SUBNORMAL_END = np.int32(0x00800000)  # the bits of the smallest normal float32
_MANTISSA = np.int32(0x007FFFFF)
_I0 = np.int32(0)
_I1 = np.int32(1)
_I23 = np.int32(23)
_BIAS = np.int32(127)

_F32 = np.float32
_LN2 = _F32(0.6931471805599453)
_SQRT2 = _F32(1.4142135623730951)
_ONE = _F32(1.0)
_HALF = _F32(0.5)
_C3 = _F32(1.0 / 3.0)
_C5 = _F32(1.0 / 5.0)
_C7 = _F32(1.0 / 7.0)
_C9 = _F32(1.0 / 9.0)
_INV23 = _F32(2.0**-23)
_CHUNK = 1024  # values summed in float32 before the sum moves to float64


@jit_reduce
def _log_from_parts(m, e):
    """`log(m * 2**e)` for a float32 mantissa `m` in `[1, 2)` and exponent `e`, in float32 arithmetic

    `m` is first brought into `[sqrt(1/2), sqrt(2))`, then `log(m) = 2 atanh(t)`, `t = (m - 1) / (m + 1)`,
    `|t| < 0.172`, by its series to `t**9` (next term below 4e-10): accurate to float32 rounding.
    """
    big = m > _SQRT2
    m = m * _HALF if big else m
    e = e + _ONE if big else e
    t = (m - _ONE) / (m + _ONE)
    t2 = t * t
    return e * _LN2 + (t + t) * (_ONE + t2 * (_C3 + t2 * (_C5 + t2 * (_C7 + t2 * _C9))))


@jit_reduce
def _bits_range(bits, hi):
    """`(smallest bits, largest bits, 1 if any subnormal else 0)` of the float32 values whose bits are `bits[:hi]`

    For values >= 0 the int32 bit patterns order like the values (an integer min/max vectorises; a
    float one does not without `nnan`); a negative value (not -0.0, which counts as 0) gives a
    negative minimum, NaN a maximum above inf's `0x7F800000` (a negative NaN, a negative minimum).
    A subnormal's exponent field is wrong for the log: a row with any takes the exact path.
    """
    bmin = _I32_MAX
    bmax = _NEG_ZERO
    sub = _I0
    for j in range(hi):
        b = bits[j]
        # -0.0 has the smallest bits of all (0x80000000): taken as +0.0, or it would hide a negative value
        bmin = min(bmin, b if b != _NEG_ZERO else _I0)
        bmax = max(bmax, b)
        sub = max(sub, _I1 if (b > _I0) & (b < _SUBNORMAL_END) else _I0)
    return bmin, bmax, sub


@jit_reduce
def _log_sums(row, bits, hi, pos, at):
    """`(sum a, sum a log a, sum a |j - at|)` over `j in [0, hi)`, the log from the float32 bits `bits[j]` of `a`

    One loop that LLVM vectorises (8 float32 lanes): the exponent and mantissa come from the bits by
    integer operations and an int-to-float conversion (`m = 1 + mantissa field / 2**23`, exact), `j`
    from `pos` (float32 positions: int64 to float does not vectorise on AVX2). `|j - at|` is exact in
    float32 below 2**24 tokens, so the distance carries no cancellation (`at sum a - sum a j` lost
    ~6 digits at 32k tokens in float32). The sums are float32 within chunks of `_CHUNK` values and
    float64 across them, so a 32k-token row loses no more than a 1k one. A float64 row sums in
    float64 (its log is still float32's).
    """
    s = 0.0
    sal = 0.0
    sd = 0.0
    for c0 in range(0, hi, _CHUNK):
        c1 = min(hi, c0 + _CHUNK)
        # each chunk as slices indexed from 0: an index LLVM cannot prove >= 0 (`range(c0, c1)`)
        # keeps numba's negative-index wraparound, and the loop then gathered every lane (0.91 ->
        # 0.22 ms over a causal 1024 x 1024 head)
        row_c, bits_c, pos_c = row[c0:c1], bits[c0:c1], pos[c0:c1]
        cs = _F32(0.0)
        csal = _F32(0.0)
        csd = _F32(0.0)
        for j in range(c1 - c0):
            b = bits_c[j]
            a = row_c[j]
            cs += a
            csal += a * _log_from_parts(_ONE + _F32(b & _MANTISSA) * _INV23, _F32((b >> _I23) - _BIAS))
            csd += a * abs(pos_c[j] - at)
        s += cs
        sal += csal
        sd += csd
    return s, sal, sd


@jit_reduce
def _add_row(row, hi, acc):
    """`acc[j] += row[j]` for `j in [0, hi)` (the preview's block-row sums: its own loop, which
    vectorises; a store inside `_log_sums` kept that loop scalar)"""
    for j in range(hi):
        acc[j] += row[j]


@jit_reduce
def _plogp_row(row, hi, scale, f32, bits, pos):
    """`sum_j p log p` with `p = row[j] * scale` for `j in [0, hi)`: the exact path of `head_summary`

    `f32` (float32) with `bits` its int32 view: a scratch row of the same length. Scaling to `p`
    first keeps the values normal floats whatever the row's scale. Returns `(sum p log p, smallest
    bits, largest bits)` of the `p`.
    """
    for j in range(hi):
        f32[j] = row[j] * scale
    bmin, bmax, _ = _bits_range(bits, hi)
    _, total, _ = _log_sums(f32, bits, hi, pos, _F32(0.0))
    return total, bmin, bmax


@jit
def _divide(row, hi, s, out):
    """`out[j] = row[j] / s` in float64 (no reassociation: never `row[j] * (1 / s)`)"""
    for j in range(hi):
        out[j] = row[j] / s


@jit_reduce
def _flush_block_row(acc, bounds, block_row, first_row, stop_row, causal, preview, col):
    """block averages of one preview row from the summed rows in `acc`; moves `acc` into `col`

    Causal: the rows before `stop_row` hold nothing at or after it, so only `acc[:stop_row]` is read
    and the blocks from there on are 0.
    """
    n_blocks = bounds.shape[0] - 1
    width = stop_row if causal else acc.shape[0]
    for bj in range(n_blocks):
        c0 = bounds[bj]
        c1 = bounds[bj + 1]
        if c0 >= width:
            preview[block_row, bj] = 0.0
            continue
        total = 0.0
        block = acc[c0:c1]  # indexed from 0: no wraparound check, a vector loop (see `_log_sums`)
        for j in range(c1 - c0):
            total += block[j]
        if causal:
            count = 0
            for i in range(first_row, stop_row):
                count += max(0, min(c1, i + 1) - c0)
        else:
            count = (stop_row - first_row) * (c1 - c0)
        preview[block_row, bj] = total / count if count > 0 else 0.0
    for j in range(width):
        col[j] += acc[j]
        acc[j] = 0.0


@jit_reduce
def head_summary(x, xbits, causal, window, bounds, stats, preview):
    """the statistics of one head and its block-averaged preview

    # Parameters:
     - `x : float32|float64 array (n, n)` the pattern, C-contiguous, finite and >= 0
     - `xbits : int32 array (n, n)` the bits of `x` as float32 (`x.view(int32)` for float32 input)
     - `causal : bool` read only `j <= i` of each row (the strict upper triangle is masked)
     - `window : int` the local window: positions with `|i - j| < window` (but `i - 1`); >= 1
     - `bounds : int64 array (k + 1,)` preview block edges, `0 = bounds[0] < ... < bounds[k] = n`
     - `stats : float64 array (len(HEAD_STAT_NAMES),)` receives the statistics (NaN when no row counts)
     - `preview : float array (k, k)` receives the block averages: the mean of the values in a block
       (causal: of its values with `j <= i`; 0 for a block with none)

    # Returns:
     - `(low : float, high : float, n_rows : int, minimum : float, maximum : float)`: `low` is
       negative when a value read is; `high` is NaN or inf when a value is NaN or inf (they are
       extremes of the rows scaled to `p`, in float32); then how many rows counted; then the
       smallest and largest value of the whole matrix (a causal pattern's masked part too), from
       `xbits`: exactly `x.min()` and `x.max()` for float32 `x` whose values are all >= 0 (-0.0 as
       +0.0) and not NaN; otherwise `minimum` is negative or NaN, or `maximum` NaN (the caller
       then asks numpy). The masked part costs one integer min/max over its bits, in the same row
       loop (its rows are in cache): the colouring needs no pass of its own for them.
    """
    n = x.shape[0]
    f32 = np.empty(n, dtype=np.float32)  # the exact path's scratch row
    bits = f32.view(np.int32)
    pos = np.empty(n, dtype=np.float32)
    for j in range(n):
        pos[j] = j
    tiny = np.empty(n, dtype=np.float64)
    one_bits = np.empty(1, dtype=np.int32)  # turns an int32 bit pattern back into its float32
    one_f32 = one_bits.view(np.float32)
    acc = np.zeros(n, dtype=np.float64)
    col = np.zeros(n, dtype=np.float64)

    ent = 0.0
    prev = 0.0
    n_prev = 0
    self_ = 0.0
    first = 0.0
    local = 0.0
    dist = 0.0
    rmax = 0.0
    n_rows = 0
    bits_min = _I32_MAX
    bits_max = _NEG_ZERO
    all_min = _I32_MAX  # of the whole matrix, masked part included
    all_max = _NEG_ZERO
    # rows from the last to the first: the figure functions that read the pattern just before end
    # on its last rows, which are then still in cache (and a causal pattern's longest rows)
    block_row = bounds.shape[0] - 2
    q1, q2, q3 = n // 4, n // 2, 3 * n // 4  # the next row's quarters, prefetched one before each loop
    for i in range(n - 1, -1, -1):
        row = x[i]
        hi = i + 1 if causal else n
        rbits = xbits[i]
        # the next row's cache lines are asked for while this one is worked on, a quarter before each
        # of its loops (`_prefetch`: a row crosses a page, where the hardware's prefetch stops).
        # Only `x`'s: for float32 input `xbits` is the same memory (float64 input, rare, has its
        # float32 bits in a second array, not prefetched). Row 0 asks for itself (in cache: the hint
        # is spent, not a guard in each of the four calls)
        following = x[i - 1] if i >= 1 else row
        prefetch_items(following, 0, q1)
        bmin, bmax, sub = _bits_range(rbits, hi)
        all_min = min(all_min, bmin)
        all_max = max(all_max, bmax)
        prefetch_items(following, q1, q2)
        if hi < n:  # the masked part: only for the matrix's extremes
            umin, umax, _ = _bits_range(rbits[hi:], n - hi)
            all_min = min(all_min, umin)
            all_max = max(all_max, umax)
        prefetch_items(following, q2, q3)
        _add_row(row, hi, acc)
        prefetch_items(following, q3, n)
        s, sal, d = _log_sums(row, rbits, hi, pos, pos[i])  # d = sum a |i - j|
        one_bits[0] = bmax
        mx = one_f32[0]  # the row's largest value, rounded to float32
        # sum p log p = sal / s - log s; exact path (values scaled to p first) where the log's
        # inputs were subnormal or s is outside float32's normal range
        if sub == 0 and 1e-30 < s < 1e30:
            plogp = sal / s - np.log(s)
        else:
            inv = 1.0 / s if s > 0 else 1.0  # scale 1: the bits still show a negative or NaN value
            if inv < 1e30:
                plogp, bmin, bmax = _plogp_row(row, hi, row.dtype.type(inv), f32, bits, pos)
            else:  # 1 / s may overflow: divide, in float64
                _divide(row, hi, s, tiny)
                plogp, bmin, bmax = _plogp_row(tiny, hi, 1.0, f32, bits, pos)
            one_bits[0] = bmax
            mx = one_f32[0] * s  # the largest p, back to the row's scale
        bits_min = min(bits_min, bmin)
        bits_max = max(bits_max, bmax)
        if hi >= 2 and s > 0:
            n_rows += 1
            ent += -plogp / np.log(hi)
            if i >= 1:
                prev += row[i - 1] / s
                n_prev += 1
            self_ += row[i] / s
            first += row[0] / s
            w = 0.0
            for j in range(max(0, i - window + 1), min(hi, i + window)):
                w += row[j] if j != i - 1 else 0.0  # the previous token has its own statistic
            local += w / s
            dist += d / s
            rmax += mx / s
        if i == bounds[block_row]:
            _flush_block_row(acc, bounds, block_row, i, bounds[block_row + 1], causal, preview, col)
            block_row -= 1

    if causal and n >= 1:
        col[0] -= x[0, 0]  # row 0 of a causal pattern has no choice: it does not count
    top = 0
    total = 0.0
    for j in range(n):
        total += col[j]
        if col[j] > col[top]:
            top = j
    nan = np.nan
    stats[0] = ent / n_rows if n_rows else nan
    stats[1] = prev / n_prev if n_prev else nan
    stats[2] = self_ / n_rows if n_rows else nan
    stats[3] = first / n_rows if n_rows else nan
    stats[4] = local / n_rows if n_rows else nan
    stats[5] = dist / n_rows if n_rows else nan
    stats[6] = rmax / n_rows if n_rows else nan
    stats[7] = col[top] / total if n_rows and total > 0 else nan
    stats[8] = top if n_rows and total > 0 else nan
    one_bits[0] = bits_min
    low = one_f32[0]
    one_bits[0] = bits_max
    high = one_f32[0]
    one_bits[0] = all_min
    minimum = one_f32[0]
    one_bits[0] = all_max
    return low, high, n_rows, minimum, one_f32[0]


@jit
def strict_upper_nonzero(bits, magnitude_mask):
    """whether any value above the diagonal of a square float matrix is non-zero (NaN counts)

    # Parameters:
     - `bits : int32|int64 array (n, n)` the matrix viewed as integers of its float's width
     - `magnitude_mask : same integer type` every bit but the sign (so -0.0 counts as zero)

    An OR of the bits vectorises where a float comparison count did not (4x faster); a row that
    finds a non-zero value ends the scan, so full patterns cost one row.
    """
    n = bits.shape[0]
    for i in range(n - 1):
        found = bits.dtype.type(0)
        above = bits[i, i + 1:]  # indexed from 0: no wraparound check, a vector loop (see `_log_sums`)
        for j in range(above.shape[0]):
            found |= above[j]
        if found & magnitude_mask:
            return True
    return False
