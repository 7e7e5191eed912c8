"""what resume's completeness checks cost: a rerun with every output present, checked vs names only

A rerun of `figures_main` on a synthetic model whose outputs all exist (PNG from `raw`, SVGZ from
`raw_svgz` below) does nothing but list head folders and decide that every figure is done. With the
checks (`outputs.output_problem`: lstat, the PNG's last 12 bytes, a whole gzip stream decompressed)
against names only (the check replaced by one returning `None`), same process, alternating, median.

    python benchmarks/bench_resume_check.py [--n-ctx 256] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pattern_lens._output import outputs
from pattern_lens.figure_util import save_matrix_wrapper
from pattern_lens.figures import figures_main
from pattern_lens.synthetic import write_synthetic_model


@save_matrix_wrapper(fmt="svgz", normalize=True, cmap="viridis")
def raw_svgz(attn):
    return np.asarray(attn)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from pattern_lens.attn_figure_funcs import raw

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = write_synthetic_model(root, n_layers=4, n_heads=8, n_ctx=args.n_ctx, n_prompts=4)
        funcs = [raw, raw_svgz]
        first = figures_main(model.name, root, None, False, funcs, n_jobs=1, progress=False, verbose=False)
        assert first.ok
        n_heads = first.n_heads
        real = outputs.output_problem
        times: dict[str, list[float]] = {"checked": [], "names only": []}
        for _ in range(args.repeat):
            for label, check in (("checked", real), ("names only", lambda path: None)):
                outputs.output_problem = check
                t0 = time.perf_counter()
                again = figures_main(model.name, root, None, False, funcs, n_jobs=1, progress=False, verbose=False)
                times[label].append(time.perf_counter() - t0)
                assert again.ok and again.n_skipped == n_heads
        outputs.output_problem = real
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"n_ctx {args.n_ctx}, {n_heads} heads x 2 figures (png + svgz), all present, one process:")
        for k, v in med.items():
            print(f"  {k:>10}: {v * 1e3:7.1f} ms per rerun, {v / n_heads * 1e6:6.1f} us per head")
        print(f"  checked / names only: {med['checked'] / med['names only']:.2f}x")


if __name__ == "__main__":
    main()
