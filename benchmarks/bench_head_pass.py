"""fast `raw` + summaries per head, one core, in memory: this checkout against a baseline checkout

Per head, what a worker does for a head of the default figures with summaries on, in the `"fast"`
profile, without the file writes: the `raw` figure's PNG bytes (`matrix_file_bytes`), the head's
statistics and preview (`summarize_head`), its `head_stats.json` row and the preview's PNG carrying
it (`preview_png`). Where the checkout has `summaries.first_pass` (the fused path), it is used as
the worker uses it: the summaries' pass first, its min and max handed to the `raw` figure.

Two long-lived processes, one per checkout (`PYTHONPATH` = that checkout, one thread each), both
warmed up; the driver asks them in turn, round after round, to time each head once, alternating
which goes first, so that both see the same spells of a noisy shared machine. The same process
times the memory-bandwidth floor on the same heads: one numpy pass summing the 4 MB matrix
(`p.sum()`) and one copy into a preallocated array. Reported: medians over every (round, head)
call, the median of the rounds' new / base ratios, and the outputs' equality (the PNG bytes, the
preview bytes and the row of every head must be the same in both checkouts).

    git worktree add /tmp/kernels-base 2ead7d6
    python benchmarks/bench_head_pass.py --base /tmp/kernels-base
    python benchmarks/bench_head_pass.py --base /tmp/kernels-base --n-ctx 1024 --heads 8 --rounds 21
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve()
_PARTS = ("summarize_head", "raw, min/max known", "  of which LUT kernel", "  of which PNG encoding",
          "raw, reading min/max itself", "numpy min + max", "preview PNG + row")
_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


# ---------------------------------------------------------------------------------------------
# the serving side: runs inside one checkout


def _serve(n_ctx: int, heads: int) -> None:
    import numpy as np

    from pattern_lens import export_profile
    from pattern_lens._export.encode import matrix_file_bytes
    from pattern_lens._export.preview import preview_png
    try:  # this layout, or a checkout from before the pipeline's split into rooms (the base of a comparison)
        from pattern_lens._summaries import summaries
        from pattern_lens._summaries.stats import summarize_head
    except ImportError:
        from pattern_lens._pipeline import summaries
        from pattern_lens._pipeline.stats import summarize_head
    from pattern_lens.attn_figure_funcs import raw
    from pattern_lens.bench import _patterns

    pats = list(_patterns(n_ctx, heads, seed=1))  # the same array objects every round (looked up by id)
    spec = summaries.SummarySpec(causal=True)  # the pipeline passes the model config's attention_dir
    first_pass = getattr(summaries, "first_pass", None)
    scratch = np.empty_like(pats[0])

    def one_head(p):
        ctx = first_pass(spec, p, [raw]) if first_pass is not None else contextlib.nullcontext(None)
        with ctx as early:
            png = matrix_file_bytes(p, "png", True, "Blues")  # what `raw` writes
        summary = early if early is not None else summarize_head(p, spec.causal, spec.local_window, spec.preview_size)
        row = summaries.head_row(0, 0, summary)
        clip = summary.causal and summary.preview.shape[0] < summary.n_ctx
        text = (summaries.PREVIEW_TEXT_KEY, summaries._preview_text(spec, row))
        return png, preview_png(summary.preview, spec.cmap, text, clip_first_block=clip), row

    from pattern_lens._export import colormap as _colormap
    from pattern_lens._export import png_fast

    known = getattr(importlib.import_module("pattern_lens._export"), "extremes", None)
    done = [summarize_head(p, True) for p in pats]
    # the rows as the fast PNG has them: in the PNG's scanline buffer where the checkout has one
    view = getattr(png_fast, "scanline_view", None)
    lut_rows = [_colormap.matrix_to_lut_rows(p, _colormap.normalization(p, True), "Blues",
                                             **({} if view is None else {"out": view(*p.shape)}))[0] for p in pats]
    by_id = {id(p): i for i, p in enumerate(pats)}
    norms = [_colormap.normalization(p, True) for p in pats]

    def raw_known(p):  # the `raw` figure with the min and max given, as inside `first_pass`
        s = done[by_id[id(p)]]
        with known.known_extremes(p, s.minimum, s.maximum):
            return matrix_file_bytes(p, "png", True, "Blues")

    def preview(p):
        s = done[by_id[id(p)]]
        row = summaries.head_row(0, 0, s)
        text = (summaries.PREVIEW_TEXT_KEY, summaries._preview_text(spec, row))
        return preview_png(s.preview, spec.cmap, text, clip_first_block=True)

    table = _colormap.colormap_table("Blues")
    methods = {
        "head": one_head, "sum": lambda p: p.sum(), "copy": lambda p: np.copyto(scratch, p),
        # the parts of a head (this checkout's breakdown)
        "summarize_head": lambda p: summarize_head(p, True),
        "raw, min/max known": raw_known if known is not None else (lambda p: None),
        "  of which LUT kernel": lambda p: _colormap.matrix_to_lut_rows(p, norms[by_id[id(p)]], "Blues"),
        "  of which PNG encoding": lambda p: png_fast.encode_indexed_png(lut_rows[by_id[id(p)]], table.rgb[:256]),
        "raw, reading min/max itself": lambda p: matrix_file_bytes(p, "png", True, "Blues"),
        "numpy min + max": lambda p: (p.min(), p.max()),
        "preview PNG + row": preview,
    }
    with export_profile("fast"):
        digest = hashlib.sha256()
        for p in pats:  # warm-up (kernels compiled or loaded), and what the heads produce
            png, preview, row = one_head(p)
            digest.update(png + preview + json.dumps(row).encode())
        print(json.dumps({"ready": digest.hexdigest(), "pid": os.getpid()}), flush=True)
        for line in sys.stdin:
            method = methods[line.rstrip("\n")]
            times = []
            for p in pats:
                t0 = time.perf_counter()
                method(p)
                times.append(time.perf_counter() - t0)
            print(json.dumps(times), flush=True)


# ---------------------------------------------------------------------------------------------
# the driver


class _Checkout:
    def __init__(self, root: Path, n_ctx: int, heads: int) -> None:
        env = {**os.environ, **_ONE_THREAD, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen(
            [sys.executable, str(_HERE), "--serve", "--n-ctx", str(n_ctx), "--heads", str(heads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=root,
        )
        self.ready = json.loads(self.proc.stdout.readline())["ready"]

    def time(self, method: str) -> list[float]:
        self.proc.stdin.write(method + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, help="the baseline checkout (a git worktree)")
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--breakdown", action="store_true", help="also time the parts of a head, in this checkout")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        _serve(args.n_ctx, args.heads)
        return
    if args.base is None:
        ap.error("--base is required")
    checkouts = {"base": _Checkout(args.base.resolve(), args.n_ctx, args.heads),
                 "new": _Checkout(_HERE.parent.parent, args.n_ctx, args.heads)}
    same = checkouts["base"].ready == checkouts["new"].ready
    parts = list(_PARTS) if args.breakdown else []
    times: dict[str, list[float]] = {k: [] for k in ("base", "new", "sum", "copy", *parts)}
    ratios = []
    try:
        for r in range(args.rounds):
            order = ("base", "new") if r % 2 == 0 else ("new", "base")
            got = {name: checkouts[name].time("head") for name in order}
            for name in order:
                times[name] += got[name]
            ratios.append(statistics.median(got["new"]) / statistics.median(got["base"]))
            times["sum"] += checkouts["new"].time("sum")
            times["copy"] += checkouts["new"].time("copy")
            for part in parts:
                times[part] += checkouts["new"].time(part)
    finally:
        for c in checkouts.values():
            c.close()
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    best = {k: 1e3 * min(v) for k, v in times.items()}
    print(f"| fast raw + summaries, causal {args.n_ctx} x {args.n_ctx} float32, {args.heads} heads x "
          f"{args.rounds} rounds, 1 thread, in memory | median ms | best ms |")
    print("|---|---:|---:|")
    for name, label in (("base", f"base ({args.base})"), ("new", "this checkout"),
                        ("sum", "floor: one numpy pass (`p.sum()`)"), ("copy", "floor: one copy (`np.copyto`)")):
        print(f"| {label} | {med[name]:.3f} | {best[name]:.3f} |")
    print(f"| new / base (medians) | {med['new'] / med['base']:.3f} | {best['new'] / best['base']:.3f} |")
    print(f"| median of the rounds' new / base | {statistics.median(ratios):.3f} | |")
    print(f"| new / one numpy pass | {med['new'] / med['sum']:.2f} | {best['new'] / best['sum']:.2f} |")
    for part in parts:
        print(f"| {part} (this checkout) | {med[part]:.3f} | {best[part]:.3f} |")
    print(f"\noutputs (raw PNG, preview PNG, row of every head) identical in both checkouts: {same}")


if __name__ == "__main__":
    main()
