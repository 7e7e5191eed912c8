"""the head summaries' cost: per head in memory, and end to end against the runs they ride along with

Part 1, one core, in memory, per head (median over heads of the best of `--repeat` runs each), on
synthetic float32 causal patterns (`pattern_lens.bench._patterns`: every head kind):

- summary:  statistics + block-averaged preview (`summarize_head`, causal known, as the pipeline
            passes it from the model config's `attention_dir`), one kernel pass
- +detect:  the same with `causal=None` (the mask decided from the values above the diagonal)
- preview png: colouring + encoding the preview (`preview_png`)
- np.log:   numpy's SIMD log over the whole matrix, the yardstick of the issue (0.48 ms at 1024)
- fast, exact: the `raw` figure's file bytes in the fast and exact profiles

Part 2, end to end (`figures_main`, one job, reading a deflated `.npz`, files written: new files as
in a first export, and `--force` over the files of the run before):
the same synthetic model rendered with and without summaries, interleaved for `--e2e-rounds`
rounds: the best of each, the median of the rounds' ratios, and the share of a with-summaries run
spent inside the summaries' own code (timed in the run: the least noisy of the three).

    flock /tmp/pattern_lens_bench.lock python benchmarks/bench_summaries.py
    python benchmarks/bench_summaries.py --n-ctx 1024 --repeat 3 --no-pipeline
    git worktree add --detach /tmp/base 3063769 && python benchmarks/bench_summaries.py --base /tmp/base

`--base`: the statistics kernel of another checkout against this one's, interleaved, in one process.
"""

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pattern_lens import export_profile
from pattern_lens._export.encode import matrix_file_bytes
from pattern_lens._export.preview import preview_png
from pattern_lens._layout import HEAD_STATS_FILE
from pattern_lens._summaries.stats import summarize_head
from pattern_lens.bench import _patterns

from bench_inflate import best_of as _best  # this folder is on sys.path when run as a script


def per_head(n_ctx: int, heads: int, repeat: int, with_exact: bool) -> dict[str, float]:
    pats = _patterns(n_ctx, heads, seed=1)
    summaries = [summarize_head(p, causal=True) for p in pats]  # also compiles / loads the kernels
    methods = {
        "summary": lambda p: summarize_head(p, causal=True),
        "+detect": lambda p: summarize_head(p),
        "np.log": lambda p: np.log(p + np.float32(1e-30)),  # + 1e-30: no log(0) warnings
        "fast": lambda p: _file(p, "fast"),
    }
    if with_exact:
        methods["exact"] = lambda p: _file(p, "exact")
    out: dict[str, float] = {}
    for name, fn in methods.items():
        fn(pats[0])
        out[name] = 1e3 * statistics.median(_best(lambda p=p: fn(p), repeat) for p in pats)
    preview_png(summaries[0].preview)
    out["preview png"] = 1e3 * statistics.median(_best(lambda s=s: preview_png(s.preview), repeat) for s in summaries)
    return out


def _load_kernels(checkout: Path):
    """the `kernels` folder of another checkout, imported as a package of its own (`base_kernels`)"""
    import importlib.util
    import sys

    folder = checkout / "kernels"
    spec = importlib.util.spec_from_file_location("base_kernels", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["base_kernels"] = module
    spec.loader.exec_module(module)
    return module


def kernel_against_base(base: Path, n_ctx: int, heads: int, rounds: int) -> dict[str, float]:
    """`head_summary` of a baseline checkout against this one's, the same heads, calls interleaved

    Median and best of single calls (each head once per round, the two kernels alternating), ms.
    """
    from pattern_lens import kernels as ours
    from pattern_lens._summaries.stats import LOCAL_WINDOW, PREVIEW_SIZE, block_edges

    theirs = _load_kernels(base)
    pats = _patterns(n_ctx, heads, seed=1)
    edges = block_edges(n_ctx, PREVIEW_SIZE)
    k = len(edges) - 1
    times: dict[str, list[float]] = {"base": [], "new": []}
    for r in range(rounds + 1):
        for p in pats:
            for name, mod in (("base", theirs), ("new", ours)):
                stats = np.empty(len(mod.HEAD_STAT_NAMES))
                preview = np.empty((k, k), dtype=p.dtype)
                t0 = time.perf_counter()
                mod.head_summary(p, p.view(np.int32), True, LOCAL_WINDOW, edges, stats, preview)
                if r:  # round 0 compiles / loads both
                    times[name].append(time.perf_counter() - t0)
    return {f"{name} {what}": 1e3 * fn(ts) for name, ts in times.items()
            for what, fn in (("median", statistics.median), ("best", min))}


def _file(p: np.ndarray, profile: str) -> bytes:
    with export_profile(profile):
        return matrix_file_bytes(p, "png", True, "Blues")


class _SummaryClock:
    """adds up the time the run spends in the summaries' own code (benchmark instrumentation only)

    With one job the tasks run in this process, so wrapping the module functions the worker calls
    (`summary_needed`, `add_head`) and the parent's `PromptStatsWriter` methods times every step of
    the summaries: the with-summaries run's share spent there is the summaries' cost measured
    inside one run, free of the run-to-run noise that two separate runs compare through. Only for
    `figures_main` with one job: workers, and `pattern-lens run` (`stream.py` imports
    `summary_needed` by name), are not seen; indexing the preview in `figures.jsonl` is not counted.
    """

    def __init__(self) -> None:
        from pattern_lens._summaries import summaries

        self.seconds = 0.0
        self._patched = [
            (summaries, "summary_needed"),
            (summaries, "add_head"),
            (summaries.PromptStatsWriter, "add"),
            (summaries.PromptStatsWriter, "close"),
        ]
        self._saved = [getattr(owner, name) for owner, name in self._patched]

    def _timed(self, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed

    def __enter__(self) -> "_SummaryClock":
        for (owner, name), fn in zip(self._patched, self._saved):
            setattr(owner, name, self._timed(fn))
        return self

    def __exit__(self, *exc) -> None:
        for (owner, name), fn in zip(self._patched, self._saved):
            setattr(owner, name, fn)


def _remove_outputs(model: Path) -> None:
    """delete every head folder and `head_stats.json` of the model's prompts (inputs stay): the next
    run writes new files, as a first export does"""
    for prompt_dir in (model / "prompts").iterdir():
        for entry in prompt_dir.iterdir():
            if entry.is_dir() and entry.name.startswith("L"):
                shutil.rmtree(entry)
            elif entry.name == HEAD_STATS_FILE:
                entry.unlink()


def end_to_end(n_ctx: int, n_layers: int, n_heads: int, rounds: int, profile: str, fresh: bool) -> dict[str, float]:
    """without and with summaries, interleaved for `rounds` rounds after a warm-up round

    `fresh`: the outputs are deleted before each run (not timed) and the run is not forced, so
    every file is new and every head's outputs are checked, as in a first export; else the run
    overwrites them (`--force`), which costs a rename over an existing file per output (0.2-0.4 ms
    more each here).

    Returns the best time of each, the median over rounds of with / without (adjacent runs, so a
    slow spell of the machine hits both), and the median share of a with-summaries run spent in the
    summaries' code (`_SummaryClock`).
    """
    from pattern_lens.figures import figures_main
    from pattern_lens.synthetic import write_synthetic_model

    with tempfile.TemporaryDirectory() as tmp:
        model = write_synthetic_model(tmp, n_layers=n_layers, n_heads=n_heads, n_ctx=n_ctx, n_prompts=1)
        times: dict[bool, list[float]] = {True: [], False: []}
        shares = []
        for k in range(rounds + 1):
            for summaries in (False, True):
                if fresh:
                    _remove_outputs(model)
                with _SummaryClock() as clock:
                    t0 = time.perf_counter()
                    s = figures_main(model.name, tmp, None, not fresh, "raw", n_jobs=1, profile=profile,
                                     progress=False, verbose=False, summaries=summaries)
                    dt = time.perf_counter() - t0
                assert s.ok
                if k:  # the first round warms the caches and the kernels
                    times[summaries].append(dt)
                    if summaries:
                        shares.append(clock.seconds / dt)
        return {
            "off": min(times[False]),
            "on": min(times[True]),
            "ratio of bests": min(times[True]) / min(times[False]),
            "median ratio": statistics.median(b / a for a, b in zip(times[False], times[True])),
            "share": statistics.median(shares),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-ctx", default="512,1024,4096")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-pipeline", action="store_true")
    ap.add_argument("--e2e-shape", default="2x8", help="LAYERSxHEADS of the end-to-end model (default: 2x8)")
    ap.add_argument("--e2e-n-ctx", type=int, default=1024)
    ap.add_argument("--e2e-rounds", type=int, default=7, help="interleaved rounds of each end-to-end pair (default: 7)")
    ap.add_argument("--base", type=Path, default=None,
                    help="a baseline checkout (git worktree): its statistics kernel against this one's, n_ctx 1024, then stop")
    args = ap.parse_args()
    if args.base is not None:
        n_ctx, heads, rounds = 1024, 8, 15
        r = kernel_against_base(args.base, n_ctx, heads, rounds)
        print(f"| head_summary, causal {n_ctx} x {n_ctx} float32, {heads} heads x {rounds} rounds | median ms | best ms |")
        print("|---|---:|---:|")
        for name in ("base", "new"):
            print(f"| {name} | {r[name + ' median']:.3f} | {r[name + ' best']:.3f} |")
        print(f"| new / base | {r['new median'] / r['base median']:.3f} | {r['new best'] / r['base best']:.3f} |")
        return
    print("| n_ctx | summary ms | +detect ms | preview png ms | np.log ms | fast ms | exact ms | summary+png / fast | summary+png / exact |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in map(int, args.n_ctx.split(",")):
        heads = 4 if n >= 4096 else 8
        r = per_head(n, heads, args.repeat if n < 4096 else 2, with_exact=n <= 1024)
        both = r["summary"] + r["preview png"]
        exact = r.get("exact")
        print(
            f"| {n} | {r['summary']:.3f} | {r['+detect']:.3f} | {r['preview png']:.3f} | {r['np.log']:.3f} | "
            f"{r['fast']:.3f} | {exact if exact is None else f'{exact:.2f}'} | {both / r['fast']:.3f} | "
            f"{'-' if exact is None else f'{both / exact:.4f}'} |",
            flush=True,
        )
    if args.no_pipeline:
        return
    n_layers, n_heads = map(int, args.e2e_shape.split("x"))
    print(
        f"\n| end to end, n_ctx {args.e2e_n_ctx}, {n_layers} x {n_heads} heads, 1 job, {args.e2e_rounds} rounds "
        "| without summaries s (best) | with s (best) | ratio of bests | median ratio | summaries' share of a run |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for profile in ("fast", "exact"):
        for fresh in (True, False):
            r = end_to_end(args.e2e_n_ctx, n_layers, n_heads, args.e2e_rounds, profile, fresh)
            print(
                f"| {profile}, {'new files' if fresh else '--force over old files'} | {r['off']:.3f} | {r['on']:.3f} | {r['ratio of bests']:.3f} | {r['median ratio']:.3f} | "
                f"{100 * r['share']:.1f}% |",
                flush=True,
            )


if __name__ == "__main__":
    main()
