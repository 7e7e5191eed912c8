"""one pass per head: the statistics' pass finds the matrix's min and max, the `raw` figure reuses them

Differential tests against the plain oracles (tests/reference_impl.py, numpy's own min and max):
the LUT kernel's rows and special-row count against matplotlib's steps, the summary's min and max
against numpy's (values, dtype), and the `raw` figure's bytes with the summaries' pass first against
the reference's and against the path that reads the matrix itself.
"""

import matplotlib
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference_impl as ref
from pattern_lens import export_profile
from pattern_lens._export.encode import matrix_file_bytes
from pattern_lens._export.extremes import extremes_of, known_extremes
from pattern_lens._layout import READS_ONLY_ATTR
from pattern_lens._summaries import summaries
from pattern_lens._summaries.stats import summarize_head
from pattern_lens._summaries.summary import TaskResult
from pattern_lens.attn_figure_funcs import raw
from pattern_lens.kernels import lut_indices
from test_head_stats import patterns

SPECIAL = [np.nan, np.inf, -np.inf, -1.0, -0.0, 0.0, 1.0, 2.0, 1e-45, 0.99999994, 1.0000001, 5e-324]


@st.composite
def lut_inputs(draw):
    """a float32/64 matrix with values inside and outside [0, 1] (NaN, inf, negative), an affine
    normalisation of its dtype, and a colormap size N"""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = (draw(st.integers(1, 9)), draw(st.integers(1, 70)))
    base = draw(hnp.arrays(np.float64, shape, elements=st.floats(-0.5, 1.5) | st.sampled_from(SPECIAL)))
    with np.errstate(over="ignore", under="ignore"):
        x = base.astype(dtype)
    kind = np.dtype(dtype).type
    if draw(st.booleans()):
        offset, denom, add = kind(0), kind(1), kind(0)
    else:
        offset = kind(draw(st.floats(-1, 1)))
        denom = kind(draw(st.floats(1e-3, 4) | st.sampled_from([0.0, -1.0])))
        add = kind(draw(st.sampled_from([0.0, 0.5])))
    n = draw(st.sampled_from([1, 2, 7, 253, 256, 257, 1000, 65533]))
    return x, offset, denom, add, n


@given(lut_inputs())
@settings(max_examples=300)
def test_lut_rows_and_special_count_are_matplotlibs(case):
    x, offset, denom, add, n = case
    kind = x.dtype.type
    with np.errstate(all="ignore"):
        want = ref.colormap_rows((x - offset) / denom + add, n)
    out = np.empty(x.shape, dtype=np.uint16)
    n_special = lut_indices(x, offset, denom, add, kind(n), n, out)
    np.testing.assert_array_equal(out.astype(np.int64), want)
    assert n_special == np.count_nonzero(want >= n)


@st.composite
def summarised_patterns(draw):
    """`test_head_stats` patterns, some in other dtypes or byte order, some causal ones with values of
    any kind above the diagonal (never read by the statistics, but part of the matrix's min and max)"""
    a, causal = draw(patterns())
    n = a.shape[0]
    if causal and n > 1 and draw(st.booleans()):
        upper = np.triu(np.ones((n, n), dtype=bool), 1) & draw(hnp.arrays(np.bool_, (n, n)))
        a = a.copy()
        with np.errstate(over="ignore"):
            a[upper] = draw(st.sampled_from([2.0, 1e30, -0.25, -0.0, np.nan, np.inf, 3e-45]))
    form = draw(st.sampled_from(["as is", "big-endian", "int", "strided"]))
    if form == "big-endian":
        a = a.astype(a.dtype.newbyteorder(">"))
    elif form == "int":
        a = np.clip(a * 10, 0, 1000).astype(np.int16) if np.isfinite(a).all() else a
    elif form == "strided":
        wide = np.zeros((n, 2 * n), dtype=a.dtype)
        wide[:, ::2] = a
        a = wide[:, ::2]
    return a, causal


def _same_scalar(got, want):
    assert type(got) is type(want), (type(got), type(want))
    assert got == want or (np.isnan(got) and np.isnan(want)), (got, want)


@given(summarised_patterns())
@settings(max_examples=300)
def test_summary_minimum_and_maximum_are_numpys(case):
    a, causal = case
    try:
        summary = summarize_head(a, causal=causal)
    except ValueError:
        assume(False)  # a negative or NaN value in the part the statistics read: no summary
    _same_scalar(summary.minimum, a.min())
    _same_scalar(summary.maximum, a.max())


def test_maximum_above_the_diagonal_of_a_causal_pattern():
    """the masked part is never read by the statistics, but holds the matrix's largest value"""
    a = np.tril(np.full((300, 300), 0.25, dtype=np.float32))
    a[3, 200] = 7.5
    a[299, 299] = 0.5
    summary = summarize_head(a, causal=True)
    assert summary.maximum == np.float32(7.5) and summary.minimum == np.float32(0.0)
    assert summary.stats == summarize_head(np.tril(a), causal=True).stats


@given(summarised_patterns(), st.sampled_from(["fast", "exact"]))
@settings(max_examples=150, deadline=None)
def test_raw_figure_bytes_with_the_summaries_pass_first(case, profile):
    a, causal = case
    spec = summaries.SummarySpec(causal=causal)
    with export_profile(profile), np.errstate(all="ignore"):
        try:
            alone = matrix_file_bytes(a, "png", True, "Blues")
        except (AssertionError, ValueError):
            alone = None
        with summaries.first_pass(spec, a, [raw]) as early:
            assume(not isinstance(early, Exception))
            assert extremes_of(a) == (early.minimum, early.maximum)
            try:
                fused = matrix_file_bytes(a, "png", True, "Blues")
            except (AssertionError, ValueError):
                fused = None
    assert fused == alone
    if profile == "exact" and alone is not None:
        with np.errstate(all="ignore"):
            assert fused == ref.file_content(a, "png", normalize=True, cmap="Blues")


def test_extremes_are_known_only_for_the_same_buffer_and_only_inside_the_block():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert extremes_of(a) is None
    with known_extremes(a, np.float32(-1), np.float32(99)):
        assert extremes_of(a) == (-1, 99)
        assert extremes_of(a.view()) == (-1, 99)  # a view made again: the same head
        assert extremes_of(a.copy()) is None
        assert extremes_of(a.T) is None
        assert extremes_of(a[:2]) is None
        assert extremes_of(a.view(np.int32)) is None
        assert extremes_of(np.ma.masked_array(a, mask=a > 5)) is None
        inner = np.zeros((2, 2), dtype=np.float32)
        with known_extremes(inner, np.float32(0), np.float32(0)):
            assert extremes_of(a) is None and extremes_of(inner) == (0, 0)
        assert extremes_of(a) == (-1, 99)
        with export_profile("exact"):
            # the known values are what the normalisation uses (here on purpose not the matrix's own)
            normalized = (a - np.float32(-1)) / (np.float32(99) - np.float32(-1))
            want = ref.png_bytes((matplotlib.colormaps["Blues"](normalized)[:, :, :3] * 255).astype(np.uint8))
            assert matrix_file_bytes(a, "png", True, "Blues") == want
    assert extremes_of(a) is None


def _writes_into_its_input(attn_matrix, save_dir):
    attn_matrix[-1, 0] += 3.0
    (save_dir / "_writes_into_its_input.txt").write_text("done")


def test_first_pass_only_before_functions_that_leave_the_pattern_alone():
    a = np.tril(np.random.default_rng(0).random((40, 40), dtype=np.float32))
    spec = summaries.SummarySpec(causal=True)
    assert getattr(raw, READS_ONLY_ATTR) is True
    with summaries.first_pass(spec, a, [raw]) as early:
        assert early.stats == summarize_head(a, causal=True).stats
        assert extremes_of(a) == (a.min(), a.max())
    assert extremes_of(a) is None
    with summaries.first_pass(spec, a, []) as early:  # the figures exist, only the summary is due
        assert early is not None
    for funcs in ([_writes_into_its_input], [raw, _writes_into_its_input]):
        with summaries.first_pass(spec, a, funcs) as early:
            assert early is None and extremes_of(a) is None
    with summaries.first_pass(None, a, [raw]) as early:
        assert early is None and extremes_of(a) is None


def test_a_pattern_the_first_pass_cannot_summarise_is_reported_by_add_head(tmp_path):
    a = np.full((8, 8), 0.125, dtype=np.float32)
    a[5, 2] = -1.0
    spec = summaries.SummarySpec(causal=False)
    with summaries.first_pass(spec, a, [raw]) as early:
        assert isinstance(early, ValueError) and extremes_of(a) is None
    res = TaskResult()
    summaries.add_head(spec, res, str(tmp_path), 0, 0, tmp_path, a, early)
    assert res.n_summarised == 0 and not res.head_stats
    assert summaries.SUMMARY_FAILURE_NAME in str(res.failures) and "negative" in str(res.failures)


@pytest.mark.parametrize("profile", ["fast", "exact"])
def test_a_figure_that_writes_into_its_pattern_before_raw_still_sees_today_s_order(tmp_path, profile):
    """with a function that may write into the pattern, the summaries come after the figures and
    `raw` reads the matrix itself: both see what that function left, as before the fused pass"""
    from pattern_lens.figures import figures_main
    from pattern_lens.synthetic import write_synthetic_model

    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=24, n_prompts=1)
    s = figures_main(model.name, tmp_path, None, True, [_writes_into_its_input, raw], n_jobs=1,
                     profile=profile, progress=False, verbose=False)
    assert s.ok
    prompt = next((model / "prompts").iterdir())
    with np.load(prompt / "activations.npz") as npz:
        layer = npz[next(iter(npz.files))][0].copy()
    stats = summaries.read_head_stats_file(prompt / "head_stats.json")["heads"]
    for h in range(2):
        changed = layer[h].copy()
        changed[-1, 0] += 3.0
        png = (prompt / "L0" / f"H{h}" / "raw.png").read_bytes()
        if profile == "exact":
            assert png == ref.file_content(changed, "png", normalize=True, cmap="Blues")
        else:
            with export_profile("fast"):
                assert png == matrix_file_bytes(changed, "png", True, "Blues")
        want = summaries.head_row(0, h, summarize_head(changed, causal=stats[h]["causal"]))
        assert stats[h] == want


@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=40)), st.integers(1, 256))
def test_indices_written_into_a_scanline_view_encode_to_the_same_bytes(indices, k):
    """the fast `raw` figure's rows go straight into the PNG's scanline buffer (no copy)"""
    from pattern_lens._export.png_fast import _unfiltered_rows, encode_indexed_png, scanline_view

    indices = (indices.astype(np.int64) % k).astype(np.uint8)
    palette = np.random.default_rng(k).integers(0, 256, (k, 3), dtype=np.uint8)
    view = scanline_view(*indices.shape)
    view[...] = indices
    assert _unfiltered_rows(view) is view.base  # deflated in place
    want = encode_indexed_png(np.ascontiguousarray(indices), palette)
    assert encode_indexed_png(view, palette) == want
    view.base[-1, 0] = 1  # a filter byte changed behind its back: copied again, still a valid PNG
    assert _unfiltered_rows(view) is not view.base
    assert encode_indexed_png(view, palette) == want
    if indices.shape[1] > 1:  # a narrower view of the buffer is not its scanlines
        assert _unfiltered_rows(view[:, :-1]) is not view.base
        assert encode_indexed_png(view[:, :-1], palette) == encode_indexed_png(np.ascontiguousarray(indices[:, :-1]), palette)


def test_a_run_of_raw_with_summaries_colours_with_the_summaries_min_and_max(tmp_path, monkeypatch):
    """the worker's wiring: with `raw` alone, every head's normalisation finds its min and max known"""
    from pattern_lens._export import colormap as _colormap
    from pattern_lens.figures import figures_main
    from pattern_lens.synthetic import write_synthetic_model

    found = []
    original = _colormap.extremes_of

    def recording(matrix):
        found.append(original(matrix))
        return found[-1]

    monkeypatch.setattr(_colormap, "extremes_of", recording)
    model = write_synthetic_model(tmp_path, n_layers=2, n_heads=2, n_ctx=96, n_prompts=1)
    s = figures_main(model.name, tmp_path, None, True, [raw], n_jobs=1, profile="fast", progress=False, verbose=False)
    assert s.ok and s.n_rendered == 4 and s.n_summarised == 4
    # per head: its raw figure (known), then its preview (a small matrix of its own: not known)
    assert len(found) == 8 and all(k is not None for k in found[0::2]) and all(k is None for k in found[1::2]), found
