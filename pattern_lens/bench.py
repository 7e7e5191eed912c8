"""`pattern-lens bench`: how fast this machine exports attention heads, per method, size and job count

Methods, all on the same synthetic causal attention patterns (generated in memory), `raw` settings
(`normalize=True`, `cmap="Blues"`):

- `reference`: the reference algorithm (matplotlib colormap + Pillow RGB PNG), serial
- `exact`: pattern_lens's default profile, byte-identical files
- `fast`: the `fast` export profile, indexed PNGs with the same pixels

Before any time counts, each configuration's output is verified against the reference algorithm:
bytes for `exact` (svgz after decompression), decoded pixels for `fast`. Each configuration runs a
warm-up round (kernel compilation, worker start-up), then `repeat` timed rounds; the median counts.
Heads are written to files in a temporary folder, as a real export would.

This module is the library (`BenchConfig` -> `run_benchmark` -> results, and the report's pieces);
the command line (`pattern-lens bench`, `python -m pattern_lens.bench`): `add_arguments`, `run_from_args`.
"""

import argparse
import functools
import gzip
import itertools
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import joblib
import numpy as np

from pattern_lens._command import positive_int, run_command
from pattern_lens._export import reference as _baseline
from pattern_lens._system import available_cpus, peak_rss_bytes
from pattern_lens.figure_util import save_matrix_wrapper
from pattern_lens.profile import export_profile

__all__ = [
    "METHODS",
    "FORMATS",
    "QUICK",
    "BenchConfig",
    "BenchResult",
    "run_benchmark",
    "format_table",
    "model_estimate",
    "recommendation",
    "plot",
    "results_json",
    "main",
    "add_arguments",
    "bench_config_from_args",
    "run_from_args",
]

METHODS: tuple[str, ...] = ("reference", "exact", "fast")
FORMATS: tuple[str, ...] = ("png", "svg", "svgz")
_MODEL_SHAPE = (32, 32)  # layers x heads of the model in the estimate line
_ESTIMATE_N_CTX = 2048


@dataclass(frozen=True)
class BenchConfig:
    """what to measure

    # Parameters:
     - `n_ctx : tuple[int, ...]`  context lengths (the pattern is n_ctx x n_ctx)
       (defaults to `(128, 512, 1024, 2048)`)
     - `jobs : tuple[int, ...]`  joblib job counts; the reference runs serially only
       (defaults to `(1, all usable cores)`)
     - `formats : tuple[str, ...]`  any of `"png"`, `"svg"`, `"svgz"` (defaults to `("png", "svgz")`)
     - `methods : tuple[str, ...]`  any of `"reference"`, `"exact"`, `"fast"` (defaults to all)
     - `repeat : int`  timed rounds per configuration, after one warm-up round (defaults to `3`)
     - `heads : int`  distinct synthetic heads per n_ctx; a round exports at least this many, more
       at small n_ctx and with more jobs (defaults to `8`)
     - `backend : str | None`  joblib backend for jobs > 1 (defaults to `None`: joblib's default,
       which `joblib.parallel_config` can override)
     - `seed : int`  seed of the synthetic patterns (defaults to `0`)
     - `min_round_s : float`  a timed round exports enough heads for about this much serial work
       (defaults to `0.5`)
    """

    n_ctx: tuple[int, ...] = (128, 512, 1024, 2048)
    jobs: tuple[int, ...] = field(default_factory=lambda: tuple(sorted({1, available_cpus()})))
    formats: tuple[str, ...] = ("png", "svgz")
    methods: tuple[str, ...] = METHODS
    repeat: int = 3
    heads: int = 8
    backend: str | None = None
    seed: int = 0
    min_round_s: float = 0.5

    def __post_init__(self) -> None:
        for name, values, allowed in (("formats", self.formats, FORMATS), ("methods", self.methods, METHODS)):
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"unknown {name} {bad}: expected some of {allowed}")
        if min(self.n_ctx, default=0) < 1 or min(self.jobs, default=0) < 1:
            raise ValueError(f"n_ctx and jobs must be positive, got n_ctx={self.n_ctx} jobs={self.jobs}")
        if self.repeat < 1 or self.heads < 1:
            raise ValueError(f"repeat and heads must be at least 1, got {self.repeat}, {self.heads}")


@dataclass(frozen=True)
class BenchResult:
    """one configuration's measurement (times are the median over the timed rounds)"""

    method: str
    fmt: str
    n_ctx: int
    jobs: int
    ms_per_head: float
    mpix_per_s: float
    heads_per_s: float
    speedup: float | None  # over the serial reference at the same n_ctx and format (None: not measured)
    bytes_per_head: float
    # the largest peak resident set of the processes that rendered, so far: the OS keeps one peak per
    # process, so a row includes what the same process reached in earlier (smaller n_ctx) rows
    peak_rss_mb: float


def _patterns(n_ctx: int, heads: int, seed: int) -> np.ndarray:
    """(heads, n_ctx, n_ctx) float32 synthetic causal attention patterns, of every head kind"""
    from pattern_lens.synthetic import synthetic_patterns

    # two layers, so that both early-layer and late-layer kinds of heads are in the mix
    per_layer = -(-heads // 2)
    patterns = synthetic_patterns(n_layers=2, n_heads=per_layer, n_ctx=n_ctx, seed=seed)
    return patterns.reshape(-1, n_ctx, n_ctx)[:heads]


def raw_pattern(matrix: np.ndarray) -> np.ndarray:
    """the identity: the benchmark's figure is the `raw` figure"""
    return matrix


@functools.lru_cache(maxsize=None)
def _figure(fmt: str):
    """the `raw` figure function writing `fmt`, made once per process"""
    return save_matrix_wrapper(fmt=fmt, normalize=True, cmap="Blues")(raw_pattern)


def _render(method: str, fmt: str, matrix: np.ndarray, out_dir: Path) -> int:
    """export one head with `method`; returns the bytes written"""
    if method == "reference":
        path = out_dir / f"reference.{fmt}"
        path.write_bytes(_baseline.reference_file_bytes(matrix, fmt))
        return path.stat().st_size
    with export_profile(method):
        _figure(fmt)(matrix, out_dir)
    return (out_dir / f"raw_pattern.{fmt}").stat().st_size


@functools.lru_cache(maxsize=4)
def _open_patterns(path: str) -> np.ndarray:
    # memory-mapped: every worker reads the same page-cached file, nothing is pickled per task
    return np.load(path, mmap_mode="r")


def _render_batch(method: str, fmt: str, patterns_path: str, indices: Sequence[int], out_dir: str) -> tuple[int, float]:
    """a joblib task: export some heads into a private subfolder; (bytes written, peak RSS MiB)"""
    patterns = _open_patterns(patterns_path)
    folder = Path(tempfile.mkdtemp(dir=out_dir))
    written = sum(_render(method, fmt, patterns[i % len(patterns)], folder) for i in indices)
    shutil.rmtree(folder, ignore_errors=True)
    return written, peak_rss_bytes() / 2**20


def _verify(method: str, fmt: str, matrix: np.ndarray, out_dir: Path) -> None:
    """raise if `method`'s file differs from the reference algorithm's (bytes, or pixels for fast)"""
    if method == "reference":
        return
    _render(method, fmt, matrix, out_dir)
    ours = (out_dir / f"raw_pattern.{fmt}").read_bytes()
    expected = _baseline.reference_file_bytes(matrix, fmt)
    if method == "exact":
        unzip = gzip.decompress if fmt == "svgz" else (lambda b: b)
        same = unzip(ours) == unzip(expected)
    else:
        same = np.array_equal(_baseline.decoded_rgb(ours, fmt), _baseline.decoded_rgb(expected, fmt))
    if not same:
        raise AssertionError(
            f"bench: {method} {fmt} output differs from the reference algorithm at n_ctx {matrix.shape[0]}"
        )


def _time_round(method: str, fmt: str, patterns_path: str, n: int, jobs: int, backend: str | None, out_dir: Path) -> tuple[float, int, float]:
    """(wall seconds, bytes written, peak RSS MiB) for exporting `n` heads once"""
    if jobs == 1:
        start = time.perf_counter()
        written, rss = _render_batch(method, fmt, patterns_path, range(n), str(out_dir))
        return time.perf_counter() - start, written, rss
    # a few batches per job: even load, and the scheduling cost stays small next to the work
    n_batches = min(n, 4 * jobs)
    batches = [list(range(i, n, n_batches)) for i in range(n_batches)]
    start = time.perf_counter()
    with joblib.parallel_config(backend=backend) if backend else nullcontext():
        results = joblib.Parallel(n_jobs=jobs)(
            joblib.delayed(_render_batch)(method, fmt, patterns_path, b, str(out_dir)) for b in batches
        )
    elapsed = time.perf_counter() - start
    return elapsed, sum(r[0] for r in results), max(r[1] for r in results)


def _grid(config: BenchConfig) -> list[tuple[int, str, str, int]]:
    """every (n_ctx, format, method, jobs) to measure, in order; the reference runs serially only"""
    product = itertools.product(config.n_ctx, config.formats, config.methods, config.jobs)
    return list(dict.fromkeys((n, f, m, 1 if m == "reference" else j) for n, f, m, j in product))


def _round_heads(config: BenchConfig, method: str, fmt: str, patterns_path: str, out_dir: Path) -> int:
    """heads per timed round: enough for `min_round_s` of serial work, so that parallel rounds are
    long next to joblib's dispatch cost; the serial round measuring that is also the warm-up"""
    serial_s = _time_round(method, fmt, patterns_path, config.heads, 1, None, out_dir)[0]
    return config.heads * max(1, min(64, math.ceil(config.min_round_s / max(serial_s, 1e-6))))


def run_benchmark(config: BenchConfig, progress: Callable[[str], None] | None = None) -> list[BenchResult]:
    """measure every (n_ctx, format, method, jobs) configuration of `config`

    # Parameters:
     - `config : BenchConfig`
     - `progress : Callable[[str], None] | None`
       called with a short line before each configuration (defaults to `None`: silent)

    # Returns:
     - `list[BenchResult]`, the reference (serial) first within each format and n_ctx

    # Raises:
     - `AssertionError` if an output differs from the reference algorithm's
    """
    results: list[BenchResult] = []
    patterns_paths: dict[int, str] = {}
    heads_per_round: dict[tuple[int, str, str], int] = {}
    reference_ms: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="pattern_lens_bench_") as tmp:
        out_dir = Path(tmp)
        for n_ctx, fmt, method, jobs in _grid(config):
            if n_ctx not in patterns_paths:
                # `config.heads` distinct patterns, memory-mapped by every process; rounds cycle over them
                patterns_paths[n_ctx] = str(out_dir / f"patterns_{n_ctx}.npy")
                np.save(patterns_paths[n_ctx], _patterns(n_ctx, config.heads, config.seed))
            path = patterns_paths[n_ctx]
            if (n_ctx, fmt, method) not in heads_per_round:
                _verify(method, fmt, np.asarray(_open_patterns(path)[0]), out_dir)
                heads_per_round[n_ctx, fmt, method] = _round_heads(config, method, fmt, path, out_dir)
            heads = heads_per_round[n_ctx, fmt, method]
            if progress:
                progress(f"{fmt} n_ctx={n_ctx} {method} jobs={jobs} ({heads} heads a round)")
            if jobs > 1:  # warm-up: start the workers, compile (or load) the kernels there
                _time_round(method, fmt, path, heads, jobs, config.backend, out_dir)
            rounds = [_time_round(method, fmt, path, heads, jobs, config.backend, out_dir) for _ in range(config.repeat)]
            ms = statistics.median(r[0] for r in rounds) / heads * 1e3
            if method == "reference":
                reference_ms[n_ctx, fmt] = ms
            ref_ms = reference_ms.get((n_ctx, fmt))
            results.append(
                BenchResult(
                    method=method,
                    fmt=fmt,
                    n_ctx=n_ctx,
                    jobs=jobs,
                    ms_per_head=ms,
                    mpix_per_s=n_ctx * n_ctx / (ms * 1e3),
                    heads_per_s=1e3 / ms,
                    speedup=None if ref_ms is None else ref_ms / ms,
                    bytes_per_head=rounds[-1][1] / heads,
                    peak_rss_mb=max(r[2] for r in rounds),
                )
            )
    return results


def model_estimate(
    results: Sequence[BenchResult], shape: tuple[int, int] = _MODEL_SHAPE, n_ctx: int = _ESTIMATE_N_CTX
) -> list[str]:
    """one line per method and format: how long all heads of a `shape` model at `n_ctx` would take

    Uses the best job count's per-head time at `n_ctx` if measured there, else scaled from the
    largest measured n_ctx by the pixel count, which overestimates: per-pixel cost falls as n_ctx grows.
    """
    lines = []
    n_heads = shape[0] * shape[1]
    for method in dict.fromkeys(r.method for r in results):
        for fmt in dict.fromkeys(r.fmt for r in results):
            rows = [r for r in results if r.method == method and r.fmt == fmt]
            if not rows:
                continue
            top = max(r.n_ctx for r in rows)
            best = min((r for r in rows if r.n_ctx == top), key=lambda r: r.ms_per_head)
            ms = best.ms_per_head * (n_ctx / top) ** 2
            # throughput per pixel grows with n_ctx here, so scaling up by pixels overestimates
            scaled = "" if top == n_ctx else f" (scaled from n_ctx {top} by pixel count: an upper bound)"
            lines.append(
                f"all {n_heads:,} heads of a {shape[0]} x {shape[1]} model at n_ctx {n_ctx}, {fmt}, "
                f"{method}: about {_human_seconds(n_heads * ms / 1e3)} with {best.jobs} job(s){scaled}"
            )
    return lines


def _human_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def format_table(results: Sequence[BenchResult]) -> str:
    """a fixed-width table, one row per configuration"""
    header = ("format", "n_ctx", "method", "jobs", "ms/head", "MPix/s", "heads/s", "vs reference", "KiB/head", "peak RSS MiB")
    rows = [
        (
            r.fmt,
            str(r.n_ctx),
            r.method,
            str(r.jobs),
            f"{r.ms_per_head:.2f}",
            f"{r.mpix_per_s:.1f}",
            f"{r.heads_per_s:.1f}",
            "-" if r.speedup is None else f"{r.speedup:.1f}x",
            f"{r.bytes_per_head / 1024:.1f}",
            f"{r.peak_rss_mb:.0f}",
        )
        for r in results
    ]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(header)]

    def line(cells) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def recommendation(results: Sequence[BenchResult]) -> str:
    """which profile and job count exported fastest at the largest n_ctx measured"""
    if not results:
        return "no results"
    top = max(r.n_ctx for r in results)
    best = min((r for r in results if r.n_ctx == top), key=lambda r: r.ms_per_head)
    line = (
        f"fastest at n_ctx {top}: --profile {best.method} --jobs {best.jobs} "
        f"({best.heads_per_s:.0f} heads/s, {best.fmt})"
    )
    exact = [r for r in results if r.n_ctx == top and r.method == "exact" and r.fmt == best.fmt]
    if exact and best.method == "fast":
        exact_best = min(exact, key=lambda r: r.ms_per_head)
        line += (
            f"; for byte-identical files: --profile exact --jobs {exact_best.jobs} "
            f"({exact_best.heads_per_s:.0f} heads/s)"
        )
    return line


def plot(results: Sequence[BenchResult], path: Path | str) -> None:
    """write a PNG chart: throughput (megapixels/s) against n_ctx, log axes, a line per method and jobs"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = list(dict.fromkeys(r.fmt for r in results))
    fig, axes = plt.subplots(1, len(formats), figsize=(6.5 * len(formats), 5), squeeze=False, sharey=True)
    colours = {"reference": "tab:gray", "exact": "tab:blue", "fast": "tab:orange"}
    ticks = sorted({r.n_ctx for r in results})
    for ax, fmt in zip(axes[0], formats):
        for method, jobs in dict.fromkeys((r.method, r.jobs) for r in results if r.fmt == fmt):
            rows = sorted(
                (r for r in results if r.fmt == fmt and r.method == method and r.jobs == jobs),
                key=lambda r: r.n_ctx,
            )
            ax.plot(
                [r.n_ctx for r in rows],
                [r.mpix_per_s for r in rows],
                "-" if jobs == 1 else "--",
                marker="o",
                color=colours[method],
                label=f"{method}, {jobs} job{'s' if jobs > 1 else ''}",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("n_ctx (each head is an n_ctx x n_ctx image)")
        ax.set_title(f"{fmt} export throughput (higher is better)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0][0].set_ylabel("megapixels per second")
    fig.suptitle(f"pattern-lens bench, {available_cpus()} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


QUICK: dict = dict(n_ctx=(128, 512), formats=("png",), repeat=2, heads=4, min_round_s=0.25)
"the `BenchConfig` fields `pattern-lens bench --quick` sets (options given explicitly still apply): ~6 s on 2 cores"


def results_json(config: BenchConfig, results: Sequence[BenchResult]) -> dict:
    """the JSON document of a run: its config, the machine's usable cores and every result"""
    return {"config": asdict(config), "cpu_count": available_cpus(), "results": [asdict(r) for r in results]}


# ---------------------------------------------------------------------------------------------------
# the command line: `pattern-lens bench` and `python -m pattern_lens.bench`


def _list_of(parse: Callable[[str], object], what: str) -> Callable[[str], tuple]:
    """an argparse type: a comma-separated list, each item converted by `parse` (an argparse type)"""

    def convert(text: str) -> tuple:
        try:
            items = tuple(parse(v.strip()) for v in text.split(",") if v.strip())
        except argparse.ArgumentTypeError as err:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r} ({err})") from None
        if not items:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return items

    return convert


def _one_of(allowed: Sequence[str]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {tuple(allowed)}")
        return text

    return check


def add_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens bench` and `python -m pattern_lens.bench`"""
    jobs = ",".join(map(str, BenchConfig().jobs))
    p.add_argument("--n-ctx", type=_list_of(positive_int, "positive integers like 128,512"), default=None, help="comma-separated context lengths (default: 128,512,1024,2048)")
    p.add_argument("--jobs", type=_list_of(positive_int, "positive integers like 1,4"), default=None, help=f"comma-separated job counts (default: {jobs})")
    p.add_argument("--formats", type=_list_of(_one_of(FORMATS), "formats from png,svg,svgz"), default=None, help="comma-separated, of png,svg,svgz (default: png,svgz)")
    p.add_argument("--methods", type=_list_of(_one_of(METHODS), "methods from reference,exact,fast"), default=None, help="comma-separated, of reference,exact,fast (default: all)")
    p.add_argument("--repeat", type=positive_int, default=None, help="timed rounds per configuration, median counts (default: 3)")
    p.add_argument("--heads", type=positive_int, default=None, help="distinct synthetic heads per n_ctx (default: 8)")
    p.add_argument("--backend", default=None, help="joblib backend for jobs > 1 (default: joblib's, or joblib.parallel_config's)")
    p.add_argument("--quick", action="store_true", help="a small run: n_ctx 128,512, png, 2 rounds (options given explicitly still apply); about 6 s on 2 cores")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    p.add_argument("--plot", type=Path, default=None, metavar="PATH", help="also write a PNG chart of throughput against n_ctx")
    p.add_argument(
        "--pipeline", action="store_true",
        help="instead: the whole pipeline on a synthetic 12 x 12 model (2 prompts, .npz read from disk), its heads/s and "
        "where the time goes: read, render, other, idle, index (n_ctx: the first of --n-ctx, default 512)",
    )
    p.add_argument("--stored", action="store_true", help="with --pipeline: uncompressed .npz (np.savez) instead of deflated")


def bench_config_from_args(args: argparse.Namespace):
    """the `BenchConfig` the options ask for: explicit options, else `--quick`'s, else the defaults"""
    fields = ("n_ctx", "jobs", "formats", "methods", "repeat", "heads", "backend")
    given = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    return BenchConfig(**{**(QUICK if args.quick else {}), **given})


def _run_pipeline_bench(args: argparse.Namespace) -> int:
    """`bench --pipeline`: see `pattern_lens._summaries.stagebench`"""
    import dataclasses
    import json

    from pattern_lens._summaries.stagebench import format_stages, run_stage_bench
    from pattern_lens.figures import figures_main

    jobs = tuple(args.jobs) if args.jobs else tuple(sorted({1, available_cpus()}))
    results = run_stage_bench(
        figures_main,
        n_ctx=args.n_ctx[0] if args.n_ctx else 512, jobs=jobs, stored=args.stored, repeat=args.repeat or 2,
        progress=lambda line: print(f"  measuring {line}", file=sys.stderr, flush=True),
    )
    print(format_stages(results))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
        print(f"results written to {args.json}")
    return 0


def run_from_args(args: argparse.Namespace) -> int:
    """measure, then print the table, the estimates and a recommendation; 1 if an output was wrong"""
    import json
    import time

    if args.pipeline:
        return _run_pipeline_bench(args)
    config = bench_config_from_args(args)
    started = time.perf_counter()
    try:
        results = run_benchmark(config, progress=lambda line: print(f"  measuring {line}", file=sys.stderr, flush=True))
    except AssertionError as err:  # an output differed from the reference: no timing is worth showing
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_table(results))
    print()
    for line in model_estimate(results):
        print(line)
    print(recommendation(results))
    print(
        f"({len(results)} configurations in {time.perf_counter() - started:.0f} s on {available_cpus()} cores; "
        "every output verified against the reference algorithm first)"
    )
    if args.json:
        args.json.write_text(json.dumps(results_json(config, results), indent=2))
        print(f"results written to {args.json}")
    if args.plot:
        plot(results, args.plot)
        print(f"chart written to {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pattern_lens.bench ...`: the same as `pattern-lens bench ...`"""
    return run_command("bench", add_arguments, run_from_args, argv, prog="python -m pattern_lens.bench")


if __name__ == "__main__":
    # run the imported module's main, so that worker processes unpickle `pattern_lens.bench`
    # functions by reference instead of failing on this `__main__` copy
    from pattern_lens.bench import main as _main

    sys.exit(_main())
