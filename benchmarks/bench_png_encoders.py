"""time PNG encoders for the `"fast"` export profile against Pillow's RGB PNG (the `"exact"` profile)

Images are realistic float32 causal attention patterns (random-score softmax, previous-token,
first-token sink, local window) mapped to 256-colour "Blues" indices the way matplotlib does.
Every encoder output is decoded once with Pillow and compared with the reference pixels before it
is timed, so a broken variant cannot win. Times are medians of several runs on one pinned core.

    python benchmarks/bench_png_encoders.py            # n_ctx 64, 256, 1024, 2048, every variant
    python benchmarks/bench_png_encoders.py --quick    # n_ctx 64, 256, 1024, fewer variants and runs
"""

import argparse
import base64
import gzip
import io
import os
import time
import zlib
from collections.abc import Callable

import matplotlib
import numpy as np
from PIL import Image

from pattern_lens._export import png_fast as _png_fast
from pattern_lens._export.png_fast import _png, encode_indexed_png, encode_rgb_png, gzip_bytes

BACKENDS: dict[str, object] = {"zlib": zlib}
try:
    from zlib_ng import zlib_ng

    BACKENDS["zlib-ng"] = zlib_ng
except ImportError:
    pass
try:
    from isal import isal_zlib

    BACKENDS["isal"] = isal_zlib
except ImportError:
    pass

# ----------------------------------------------------------------------------- data


def _causal_softmax(scores: np.ndarray) -> np.ndarray:
    n = scores.shape[0]
    s = np.where(np.tril(np.ones((n, n), dtype=bool)), scores, -np.inf)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def make_patterns(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    "four kinds of head: diffuse random scores, previous-token diagonal, first-token sink, local window"
    i, j = np.indices((n, n))
    noise = rng.normal(size=(n, n)).astype(np.float32)
    prev = np.where(j == i - 1, 6.0, 0.0).astype(np.float32) + 0.5 * noise
    sink = noise + np.where(j == 0, 4.0, 0.0).astype(np.float32)
    local = -np.abs(i - j).astype(np.float32) / 4 + 0.3 * noise
    return {
        "random": _causal_softmax(2 * noise),
        "prev": _causal_softmax(prev),
        "sink": _causal_softmax(sink),
        "local": _causal_softmax(local),
    }


def blues_indices(pattern: np.ndarray) -> np.ndarray:
    "matplotlib's colormap lookup: normalise to [0, 1], scale by N=256, clamp 256 to 255, truncate"
    x = (pattern - pattern.min()) / (pattern.max() - pattern.min())
    x = x * 256
    x[x == 256] = 255
    return x.astype(np.uint8)


LUT: np.ndarray = matplotlib.colormaps["Blues"](np.arange(256), bytes=True)[:, :3].copy()

# ----------------------------------------------------------------------------- encoders

Encoder = Callable[[np.ndarray, np.ndarray], bytes]  # (indices, rgb) -> PNG bytes


def pillow_rgb(idx: np.ndarray, rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def pillow_p(idx: np.ndarray, rgb: np.ndarray) -> bytes:
    im = Image.fromarray(idx)  # mode "L"; putpalette turns it into "P"
    im.putpalette(LUT.tobytes())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def filtered_rows(pixels: np.ndarray, kind: str) -> np.ndarray:
    "PNG scanlines with one filter type for every row, computed in numpy (uint8 arithmetic wraps mod 256)"
    h = pixels.shape[0]
    bpp = pixels.shape[2] if pixels.ndim == 3 else 1
    flat = pixels.reshape(h, -1)
    rows = np.empty((h, flat.shape[1] + 1), dtype=np.uint8)
    rows[:, 1:] = flat
    if kind == "none":
        rows[:, 0] = 0
    elif kind == "sub":  # byte minus the same byte of the pixel to its left
        rows[:, 0] = 1
        np.subtract(flat[:, bpp:], flat[:, :-bpp], out=rows[:, 1 + bpp :])
    elif kind == "up":  # byte minus the byte above
        rows[:, 0] = 2
        np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])
    else:
        raise ValueError(kind)
    return rows


def variant(backend: str, level: int | str, filt: str, rgb_input: bool = False) -> Encoder:
    "PNG assembled by `_png_fast._png`, deflated by one backend/level/strategy after one row filter"
    mod = BACKENDS[backend]

    if level == "rle":

        def deflate(data) -> bytes:
            c = mod.compressobj(1, mod.DEFLATED, 15, 8, mod.Z_RLE)
            return c.compress(data) + c.flush()
    else:

        def deflate(data) -> bytes:
            return mod.compress(data, level)

    def encode(idx: np.ndarray, rgb: np.ndarray) -> bytes:
        h, w = idx.shape
        if rgb_input:
            return _png(w, h, 2, None, deflate(filtered_rows(rgb, filt)))
        return _png(w, h, 3, LUT.tobytes(), deflate(filtered_rows(idx, filt)))

    return encode


def encoders(quick: bool) -> dict[str, Encoder]:
    out: dict[str, Encoder] = {
        "pillow RGB (reference)": pillow_rgb,
        "pillow P": pillow_p,
        f"encode_indexed_png [{_png_fast.DEFLATE_BACKEND}]": lambda idx, rgb: encode_indexed_png(idx, LUT),
        f"encode_rgb_png [{_png_fast.DEFLATE_BACKEND}]": lambda idx, rgb: encode_rgb_png(rgb),
    }
    levels = {"zlib": [1, 2, 6, "rle"], "zlib-ng": [1, 2, 6, "rle"], "isal": [0, 1, 2, 3]}
    filters = ["none"] if quick else ["none", "sub", "up"]
    for rgb_input in (False, True):
        for filt in filters:
            for backend in BACKENDS:
                for level in levels[backend]:
                    if quick and level not in (1, 2, "rle"):
                        continue
                    if rgb_input and (filt == "up" or level == 6 or backend == "isal" and level != 1):
                        continue  # the RGB fallback: only the plausible candidates
                    lvl = "RLE" if level == "rle" else f"L{level}"
                    name = f"{'RGB' if rgb_input else 'P'} {backend:7s} {lvl:3s} {filt}"
                    out[name] = variant(backend, level, filt, rgb_input)
    return out


# ----------------------------------------------------------------------------- timing


def median_ms(fn: Callable[[], object], reps: int, min_total_s: float = 0.05) -> float:
    "median of at least `reps` runs, more for fast functions so tiny images get a stable number"
    times: list[float] = []
    t_start = time.perf_counter()
    while len(times) < reps or (time.perf_counter() - t_start < min_total_s and len(times) < 2000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def check_png(png: bytes, rgb: np.ndarray, name: str) -> None:
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    if not np.array_equal(decoded, rgb):
        raise AssertionError(f"{name}: decoded pixels differ from the reference")


def bench_png(sizes: list[int], reps: int, quick: bool) -> None:
    rng = np.random.default_rng(0)
    encs = encoders(quick)
    for n in sizes:
        imgs = [(blues_indices(p), None) for p in make_patterns(n, rng).values()]
        imgs = [(idx, LUT[idx]) for idx, _ in imgs]
        results: dict[str, tuple[float, float]] = {}
        if {"zlib", "zlib-ng"} <= set(BACKENDS):  # the fallback's output vs the accelerated one's
            slow, fast = variant("zlib", "rle", "none"), variant("zlib-ng", "rle", "none")
            same = all(slow(i, r) == fast(i, r) for i, r in imgs)
            print(f"\nn_ctx {n}: zlib and zlib-ng Z_RLE indexed PNGs byte-identical: {same}")
        for name, enc in encs.items():
            ms, nbytes = [], []
            for idx, rgb in imgs:
                png = enc(idx, rgb)
                check_png(png, rgb, name)
                nbytes.append(len(png))
                ms.append(median_ms(lambda: enc(idx, rgb), reps))
            results[name] = (float(np.mean(ms)), float(np.mean(nbytes)))
        ref_ms, ref_b = results["pillow RGB (reference)"]
        print(f"\n## n_ctx {n}: mean over {len(imgs)} heads (random, prev, sink, local) of the median time")
        header = f"{'encoder (P: indexed, RGB: truecolour)':38s} {'ms':>9s} {'bytes':>10s}"
        print(f"{header} {'time/ref':>9s} {'size/ref':>9s}")
        for name, (ms, b) in results.items():
            print(f"{name:38s} {ms:9.3f} {b:10.0f} {ms / ref_ms:9.3f} {b / ref_b:9.3f}")


def bench_overhead(reps: int) -> None:
    "fixed Python cost of `encode_indexed_png` at 64x64: everything except the deflate call"
    idx = blues_indices(make_patterns(64, np.random.default_rng(1))["random"])
    rows = filtered_rows(idx, "none")
    total = median_ms(lambda: encode_indexed_png(idx, LUT), reps, 0.3) * 1e3
    deflate = median_ms(lambda: _png_fast._deflate(rows, "indexed"), reps, 0.3) * 1e3
    print(f"\n## 64x64 overhead [{_png_fast.DEFLATE_BACKEND}]")
    rest = total - deflate
    print(f"encode_indexed_png {total:.1f} us, of which deflate {deflate:.1f} us, the rest {rest:.1f} us")


# ----------------------------------------------------------------------------- svgz


def _gzip(data: bytes, level: int, mod, strategy: int = 0) -> bytes:
    c = mod.compressobj(level, mod.DEFLATED, 31, 8, strategy)  # wbits 31: zlib writes the gzip wrapper
    return c.compress(data) + c.flush()


def bench_svgz(sizes: list[int], reps: int) -> None:
    "gzip of an SVG that embeds a base64 PNG, as the .svgz writer does, at several levels"
    rng = np.random.default_rng(2)
    print("\n## svgz: gzip of <svg><image href='data:image/png;base64,...'/></svg>, mean over the 4 heads")
    print(f"{'n_ctx':>5s} {'png':12s} {'gzip':22s} {'ms':>8s} {'bytes':>9s} {'size/svg':>9s}")
    for n in sizes:
        pats = [blues_indices(p) for p in make_patterns(n, rng).values()]
        png_encoders = {
            "pillow RGB": lambda idx: pillow_rgb(idx, LUT[idx]),
            "indexed": lambda idx: encode_indexed_png(idx, LUT),
        }
        for png_name, enc in png_encoders.items():
            svgs = [
                (
                    f'<svg xmlns="http://www.w3.org/2000/svg" width="{n}" height="{n}" viewBox="0 0 {n} {n}">'
                    f'<image width="{n}" height="{n}" href="data:image/png;base64,'
                    f'{base64.b64encode(enc(idx)).decode()}"/></svg>'
                ).encode()
                for idx in pats
            ]
            gzips: dict[str, Callable[[bytes], bytes]] = {
                "gzip.compress L9 (ref)": lambda d: gzip.compress(d, 9, mtime=0),
            }
            for bname, mod in BACKENDS.items():
                if bname == "isal":
                    continue  # isal has no zlib-compatible levels; not a candidate for svgz
                for level in (1, 6, 9):
                    gzips[f"{bname} L{level}"] = lambda d, level=level, mod=mod: _gzip(d, level, mod)
                gzips[f"{bname} huffman-only"] = lambda d, mod=mod: _gzip(d, 1, mod, mod.Z_HUFFMAN_ONLY)
            gzips[f"gzip_bytes [{_png_fast.DEFLATE_BACKEND}]"] = gzip_bytes
            for gname, gz in gzips.items():
                ms = np.mean([median_ms(lambda: gz(s), reps) for s in svgs])
                out = [gz(s) for s in svgs]
                assert all(gzip.decompress(o) == s for o, s in zip(out, svgs))
                b = np.mean([len(o) for o in out])
                size_ratio = np.mean([len(o) / len(s) for o, s in zip(out, svgs)])
                print(f"{n:5d} {png_name:12s} {gname:22s} {ms:8.3f} {b:9.0f} {size_ratio:9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="n_ctx 64..1024, fewer variants and repetitions")
    parser.add_argument(
        "--reps", type=int, default=None, help="runs per measurement (median); default 7, 3 with --quick"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU core")
    args = parser.parse_args()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    sizes = [64, 256, 1024] if args.quick else [64, 256, 1024, 2048]
    reps = args.reps or (3 if args.quick else 7)
    print(f"backends: {', '.join(BACKENDS)}; _png_fast.DEFLATE_BACKEND = {_png_fast.DEFLATE_BACKEND}; "
          f"cores visible: {os.cpu_count()}, pinned: {not args.no_pin}")
    bench_overhead(reps)
    bench_png(sizes, reps, args.quick)
    bench_svgz(sizes, reps)


if __name__ == "__main__":
    main()
