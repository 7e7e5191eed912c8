"""per-head export on one core: the reference algorithm vs pattern_lens's exact and fast profiles

For each n_ctx, on synthetic float32 causal attention patterns with the `raw` settings
(normalize=True, cmap="Blues"), times in memory (no file writes):

- reference: the reference algorithm (numpy normalisation, matplotlib colormap, Pillow RGB PNG)
- pillow:    Pillow alone encoding the same RGB image (the floor for byte-identical output)
- exact:     pattern_lens's exact profile (numba colormap kernel + the same Pillow encode)
- fast:      the fast profile (kernel emitting palette rows + indexed PNG)
- kernel, encode: the fast profile's two parts alone; "fixed" is the median over heads of
  fast - kernel - encode: the cost per head outside them (validation, min/max, Python dispatch)

and checks the outputs first: exact bytes == reference bytes, fast decoded pixels == reference's.
Each method runs in its own loop over the heads; the median time per head counts.

    python benchmarks/bench_export.py                 # n_ctx 64,128,256,512,1024,2048,4096
    python benchmarks/bench_export.py --n-ctx 1024 --repeat 5
"""

import argparse
import io
import os
import statistics
import time

import numpy as np
from PIL import Image

from pattern_lens import export_profile
from pattern_lens._export import colormap as _colormap
from pattern_lens._export.reference import reference_file_bytes
from pattern_lens._export.png_fast import DEFLATE_BACKEND, encode_indexed_png
from pattern_lens.bench import _patterns
from pattern_lens._export.encode import matrix_file_bytes
from pattern_lens.figure_util import matrix2drgb_to_png_bytes

RAW = dict(normalize=True, cmap="Blues", diverging_colormap=False, normalize_min=None)


def _exact(m):
    return matrix_file_bytes(m, "png", **RAW)


def _fast(m):
    with export_profile("fast"):
        return matrix_file_bytes(m, "png", **RAW)


def _timed(fn, arg):
    start = time.perf_counter()
    out = fn(arg)
    return time.perf_counter() - start, out


def measure(n_ctx: int, heads: int, repeat: int) -> dict:
    patterns = _patterns(n_ctx, heads, seed=0)
    cmap = "Blues"
    times = {k: [] for k in ("reference", "pillow", "exact", "fast", "kernel", "encode")}
    sizes = {"reference": 0, "fast": 0}
    for m in patterns:  # verify (and warm up) before timing
        ref = reference_file_bytes(m, "png")
        assert _exact(m) == ref, f"exact output differs from the reference at n_ctx {n_ctx}"
        fast_rgb = np.asarray(Image.open(io.BytesIO(_fast(m))).convert("RGB"))
        ref_rgb = np.asarray(Image.open(io.BytesIO(ref)).convert("RGB"))
        assert np.array_equal(fast_rgb, ref_rgb), f"fast pixels differ at n_ctx {n_ctx}"
        sizes["reference"] += len(ref)
        sizes["fast"] += len(_fast(m))
    # each method in its own loop over the heads (as an export of many heads runs), cycling through
    # the distinct patterns; interleaving methods per head would let matplotlib's large temporaries
    # evict the pattern from cache before the next method, penalising whichever runs after it
    prepared = []
    for m in patterns:
        norm = _colormap.normalization(m, True)
        rows, table = _colormap.matrix_to_lut_rows(m, norm, cmap)
        prepared.append((m, norm, _colormap.matrix_to_rgb(m, norm, cmap), rows, table))
    steps = {
        "reference": lambda p: reference_file_bytes(p[0], "png"),
        "pillow": lambda p: matrix2drgb_to_png_bytes(p[2]),
        "exact": lambda p: _exact(p[0]),
        "fast": lambda p: _fast(p[0]),
        "kernel": lambda p: _colormap.matrix_to_lut_rows(p[0], p[1], cmap),
        "encode": lambda p: encode_indexed_png(p[3], p[4].rgb[:256]),
    }
    for name, step in steps.items():
        for _ in range(repeat):
            for p in prepared:
                times[name].append(_timed(step, p)[0])
    # paired per head and round: the fast export minus its own kernel and encode times
    times["fixed"] = [f - k - e for f, k, e in zip(times["fast"], times["kernel"], times["encode"])]
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return dict(n_ctx=n_ctx, ms=ms, size_ratio=sizes["fast"] / sizes["reference"], ref_kib=sizes["reference"] / heads / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-ctx", default="64,128,256,512,1024,2048,4096")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--heads", type=int, default=6)
    args = parser.parse_args()
    print(f"one core of {os.cpu_count()}; deflate backend for fast: {DEFLATE_BACKEND}; median ms per head")
    header = f"{'n_ctx':>5} {'reference':>10} {'pillow':>8} {'exact':>8} {'exact/pillow':>12} {'exact x':>8} {'fast':>7} {'fast x':>7} {'fast/ref size':>13} {'ref KiB':>8} {'fixed us':>8}"
    print(header)
    print("-" * len(header))
    for n_ctx in (int(v) for v in args.n_ctx.split(",")):
        heads = max(args.heads, min(64, args.heads * (1024 // n_ctx) ** 2))
        r = measure(n_ctx, heads if n_ctx < 4096 else 2, args.repeat)
        ms = r["ms"]
        fixed_us = ms["fixed"] * 1e3
        print(
            f"{n_ctx:>5} {ms['reference']:>10.2f} {ms['pillow']:>8.2f} {ms['exact']:>8.2f} "
            f"{ms['exact'] / ms['pillow']:>12.3f} {ms['reference'] / ms['exact']:>7.2f}x {ms['fast']:>7.3f} "
            f"{ms['reference'] / ms['fast']:>6.1f}x {r['size_ratio']:>13.3f} {r['ref_kib']:>8.1f} {fixed_us:>8.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
