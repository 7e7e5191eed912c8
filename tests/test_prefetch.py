"""the kernels' prefetch of the next row (`kernels/_prefetch.py`): it asks for every cache line of a
row, nothing outside it, in the spans the kernels interleave with their loops; and the kernels that
walk a head row by row do issue it"""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pattern_lens._export import colormap as _colormap
from pattern_lens.kernels import head_summary, lut_indices
from pattern_lens.kernels._prefetch import line_range, prefetch_items

_LINE = 64  # bytes in a cache line, as `_prefetch._LINE_BYTES`


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 5000), itemsize=st.sampled_from([1, 2, 4, 8, 16, 128]), parts=st.integers(1, 9))
def test_the_spans_of_a_row_ask_for_each_of_its_lines_and_nothing_else(n, itemsize, parts):
    """a row cut into `parts` spans as the kernels cut it: the slow, obvious answer is the lines
    `j // items_per_line` of the span's items; together, every line of the row"""
    per_line = max(1, _LINE // itemsize)
    asked = []
    for part in range(parts):
        own = range(n * part // parts, n * (part + 1) // parts)
        first, stop, step = line_range(own.start, own.stop, itemsize)
        assert step == per_line
        got = list(range(first, stop, step))
        assert {j // per_line for j in got} == {j // per_line for j in own}  # its lines, and only them
        assert len(got) == len({j // per_line for j in got})  # one index per line
        asked += got
    assert all(0 <= j < n for j in asked)
    assert {j // per_line for j in asked} == {j // per_line for j in range(n)}


def test_the_hint_compiles_for_the_kernels_rows_and_changes_nothing():
    """float32 and float64 rows, empty and one-item rows, spans shorter than a line: no fault, no
    write; a strided row is refused when the kernel is compiled (lines are counted by items)"""
    for dtype in (np.float32, np.float64):
        for n in (0, 1, 3, 17, 1024):
            row = np.arange(n, dtype=dtype)
            for parts in (1, 4, 32):
                for part in range(parts):
                    prefetch_items(row, n * part // parts, n * (part + 1) // parts)
            assert np.array_equal(row, np.arange(n, dtype=dtype))
    with pytest.raises(numba.core.errors.TypingError):
        prefetch_items(np.arange(10, dtype=np.float32)[::2], 0, 5)


@pytest.mark.parametrize("kernel", ["head_summary", "lut_indices"])
def test_the_row_walking_kernels_issue_prefetches(kernel):
    """compiled afresh (numba shows no code for a kernel loaded from its cache), each kernel's LLVM
    code asks for prefetches and its machine code holds them (x86's `prefetcht0`, AArch64's `prfm`),
    with the same results as the cached kernel"""
    x = np.tril(np.random.default_rng(0).random((64, 64), dtype=np.float32))
    if kernel == "head_summary":
        fresh = numba.njit(nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})(head_summary.py_func)
        args = (x, x.view(np.int32), True, 3, np.arange(0, 65, 8, dtype=np.int64))
        got = [np.empty(9), np.empty((8, 8), dtype=np.float32)]
        expected = [np.empty(9), np.empty((8, 8), dtype=np.float32)]
        assert fresh(*args, *got) == head_summary(*args, *expected)  # and the cached kernel's results
        assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    else:
        fresh = numba.njit(nogil=True, error_model="numpy")(lut_indices.py_func)
        out = np.empty(x.shape, dtype=np.uint8)
        f = np.float32
        fresh(x, f(0), f(x.max()), f(0), f(256), 256, out)
        expected = _colormap.matrix_to_lut_rows(x, _colormap.normalization(x, True), "Blues")[0]
        assert np.array_equal(out, expected)  # the cached kernel, the same rows
    llvm = "".join(fresh.inspect_llvm().values())
    asm = "".join(fresh.inspect_asm().values())
    assert "llvm.prefetch" in llvm
    assert asm.count("prefetch") + asm.count("prfm") >= 2, f"{kernel}: no prefetch instruction in its machine code"
