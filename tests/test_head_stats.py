"""head statistics and previews: the kernels against the plain numpy oracle (tests/reference_head_stats.py)"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference_head_stats as ref
from pattern_lens._summaries.stats import STATISTICS, is_causal, summarize_head


@st.composite
def patterns(draw):
    """attention-like patterns: causal or full, float16/32/64, rows with zeros, some all-zero rows"""
    n = draw(st.integers(1, 40))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    causal = draw(st.booleans())
    raw = draw(hnp.arrays(np.float64, (n, n), elements=st.floats(0, 1, allow_subnormal=False)))
    zeros = draw(hnp.arrays(np.bool_, (n, n)))
    raw[zeros] = 0.0  # many exact zeros inside rows
    if draw(st.booleans()):
        raw = np.exp(8 * raw)  # peaked rows, like a softmax
        raw[zeros] = 0.0
    if causal:
        raw = np.tril(raw)
    if draw(st.booleans()):
        sums = raw.sum(axis=1, keepdims=True)
        raw = np.divide(raw, sums, out=np.zeros_like(raw), where=sums > 0)  # rows summing to 1
    if n > 1 and draw(st.booleans()):
        raw[draw(st.integers(0, n - 1))] = 0.0  # an all-zero row
    if draw(st.booleans()):
        raw[zeros & draw(hnp.arrays(np.bool_, (n, n)))] = -0.0  # negative zeros: zero attention too
    return raw.astype(dtype), causal


def _close(got: dict, want: dict) -> None:
    assert set(got) == set(STATISTICS) == set(want)
    for name in STATISTICS:
        g, w = got[name], want[name]
        if np.isnan(w):
            assert np.isnan(g), (name, g, w)
        elif name == "key_max_position":
            continue  # checked through the share (ties may pick another position of equal mass)
        else:
            # float32 logs and reordered sums: about 1e-6 relative; distances are in tokens
            assert g == pytest.approx(w, rel=2e-5, abs=2e-5 if name != "distance" else 1e-4), (name, g, w)


@given(patterns(), st.integers(1, 12))
def test_statistics_match_numpy(case, window):
    a, causal = case
    got = summarize_head(a, causal=causal, local_window=window).stats
    # the oracle sees what the kernel sees: float16 widened to float32 exactly
    want = ref.head_stats(a.astype(np.float64), causal, window)
    _close(got, want)
    if not np.isnan(want["key_max_share"]):
        col_pos = int(got["key_max_position"])
        assert 0 <= col_pos < a.shape[0]


@given(patterns(), st.integers(1, 48))
def test_preview_is_the_block_average(case, size):
    a, causal = case
    summ = summarize_head(a, causal=causal, preview_size=size)
    want = ref.preview(a, causal, size)
    assert summ.preview.shape == want.shape == (min(a.shape[0], size),) * 2
    np.testing.assert_allclose(summ.preview.astype(np.float64), want, rtol=1e-6, atol=1e-7)
    if a.shape[0] <= size:
        assert summ.preview is a  # the full pattern itself: it colours into exactly the full image


@given(patterns())
@settings(max_examples=60)
def test_causal_detection_and_auto_mode(case):
    a, causal = case
    zero_above = not np.triu(a.astype(np.float64), 1).any()
    assert is_causal(a) == zero_above
    auto = summarize_head(a)
    assert auto.causal == zero_above
    _close(auto.stats, ref.head_stats(a.astype(np.float64), zero_above, 8))


def test_known_heads():
    n = 16
    prev = np.eye(n, k=-1)
    prev[0, 0] = 1.0
    s = summarize_head(prev, causal=True).stats
    assert s["prev_token"] == 1.0 and s["self"] == 0.0 and s["distance"] == 1.0 and s["entropy"] == pytest.approx(0, abs=1e-6)
    uniform = np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]
    s = summarize_head(uniform).stats
    assert s["entropy"] == pytest.approx(1.0, abs=1e-6)
    sink = np.zeros((n, n))
    sink[:, 0] = 1.0
    s = summarize_head(sink).stats
    assert s["first_token"] == 1.0 and s["key_max_share"] == 1.0 and s["key_max_position"] == 0.0
    assert np.isnan(summarize_head(np.ones((1, 1)), causal=True).stats["entropy"])  # no row has a choice


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[0.5, 0.5], [-0.1, 1.1]]), "negative"),
        (np.array([[0.5, -0.25], [-0.0, 1.0]], np.float32), "negative"),  # -0.0 has the smallest bits of all
        (np.array([[1.0, 0.0, 0.0], [-0.0, 1.0, 0.0], [-0.5, 0.5, 1.0]], np.float32), "negative"),
        (np.array([[0.5, 0.5], [np.nan, 1.0]]), "NaN or inf"),
        (np.array([[1.0, 0.0], [np.inf, 1.0]]), "NaN or inf"),
        (np.ones((2, 3)), "square"),
    ],
)
def test_bad_patterns_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        summarize_head(bad)


def test_big_preview_of_a_long_head():
    rng = np.random.default_rng(0)
    a = np.tril(rng.random((300, 300), dtype=np.float32))
    summ = summarize_head(a, preview_size=64)
    np.testing.assert_allclose(summ.preview, ref.preview(a, True, 64), rtol=1e-6)
    _close(summ.stats, ref.head_stats(a, True, 8))


@pytest.mark.parametrize("causal", [True, False])
def test_rows_longer_than_a_float32_chunk(causal):
    """rows of 2500 values: the kernel sums float32 chunks of 1024 and adds the chunks in float64"""
    from pattern_lens.kernels.head_stats import _CHUNK

    n = 2 * _CHUNK + 452
    rng = np.random.default_rng(1)
    logits = 6 * rng.random((n, n))
    logits[:, 0] += 4  # a sink, so rows mix a few large values with many small ones
    if causal:
        logits[np.triu_indices(n, 1)] = -np.inf
    a = np.exp(logits - logits.max(axis=1, keepdims=True))
    a = (a / a.sum(axis=1, keepdims=True)).astype(np.float32)
    _close(summarize_head(a, causal=causal).stats, ref.head_stats(a.astype(np.float64), causal, 8))


def test_distance_of_a_long_row_has_no_cancellation():
    """a 40k-token row: `sum a |i - j|` summed directly (as `i sum a - sum a j` in float32 it was off
    by ~1e-3 for a previous-token row)"""
    from pattern_lens.kernels.head_stats import _log_sums

    n = 40_000
    rng = np.random.default_rng(2)
    pos = np.arange(n, dtype=np.float32)
    local = np.zeros(n, dtype=np.float32)
    local[-100:] = rng.random(100) / 500
    local[-2] += 0.9  # mostly the previous token, a little on the 100 before: d ~ 6, i ~ 40k
    for i, row in [
        (n - 1, local),
        (n - 1, np.eye(1, n, n - 2, dtype=np.float32)[0]),  # all on the previous token
        (n // 2, (rng.random(n) ** 8).astype(np.float32)),  # spread, full row
    ]:
        s, _, d = _log_sums(row, row.view(np.int32), n, pos, pos[i])
        want = np.sum(row.astype(np.float64) * np.abs(np.arange(n) - i))
        assert s == pytest.approx(row.astype(np.float64).sum(), rel=1e-6)
        assert d == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_of_subnormal_values(dtype):
    a = np.tril(np.full((6, 6), 1e-45 if dtype == np.float32 else 1e-310, dtype=dtype))
    a[3, :2] = [3e-45, 0] if dtype == np.float32 else [3e-310, 0]
    _close(summarize_head(a).stats, ref.head_stats(a, True, 8))
