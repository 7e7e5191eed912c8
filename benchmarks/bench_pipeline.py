"""benchmark of the rendering pipeline: heads/s on one core and on all, and against the reference's algorithm

    python benchmarks/bench_pipeline.py                  # 12 x 12 heads, 2 prompts, n_ctx 512
    python benchmarks/bench_pipeline.py --n-ctx 256 --repeats 5 --json out.json

Rows:
 - `pipeline`: `figures_main(..., "raw", force=True)` with the `exact` and `fast` export profiles,
   one job and all cores (joblib loky, pool already started by a warm-up run), both prompts.
 - `reference algorithm`: the reference pipeline's strategy reimplemented with our figure functions:
   a `multiprocessing.Pool` over prompts, every head of a prompt in series, the whole `.npz` loaded at
   once, a glob per head and function, `prompts.jsonl` rewritten after every prompt; on one prompt
   (what the reference can do with one prompt: one core) and on both.
 - `n_ctx 64`: many small prompts, to show the scheduling cost stays small (worker utilisation).
 - `cli cold`: `pattern-lens render` end to end (interpreter, imports, worker start-up included).

Each configuration runs in a fresh child process so its peak RSS (parent and workers, `ru_maxrss`)
is its own. Times are the best of `--repeats` runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve()


def _rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # linux: KiB


# ---------------------------------------------------------------------------------------------------
# child: our pipeline


def _child_pipeline(cfg: dict) -> dict:
    from pattern_lens.figures import figures_main

    times, summary = [], None
    for i in range(cfg["repeats"] + 1):  # the first run warms the worker pool and the kernel cache
        t0 = time.perf_counter()
        summary = figures_main(
            cfg["model"], cfg["root"], cfg.get("n_samples"), True, "raw",
            n_jobs=cfg["jobs"], profile=cfg["profile"], progress=False, verbose=False,
        )
        if i:
            times.append(time.perf_counter() - t0)
        assert summary.ok, summary.format()
    best = min(times)
    return {
        "heads": summary.n_heads,
        "seconds": best,
        "heads_per_s": summary.n_heads / best,
        "utilisation": summary.utilisation,
        "parent_rss_mb": _rss_mb(),
        "worker_rss_mb": summary.peak_rss / 2**20,
        "workers": summary.n_jobs,
        "backend": summary.backend,
    }


# ---------------------------------------------------------------------------------------------------
# child: the reference's algorithm with our figure functions


def _ref_process_prompt(args: tuple) -> float:
    """one prompt, the reference's way; returns the worker's peak RSS (MiB)"""
    import numpy as np

    from pattern_lens.attn_figure_funcs import raw
    from pattern_lens.profile import export_profile

    prompt, model_dir, n_layers, n_heads, profile = args
    funcs = [raw]
    prompt_dir = Path(model_dir) / "prompts" / prompt["hash"]
    with export_profile(profile):
        with np.load(prompt_dir / "activations.npz") as npz:
            cache = {k: npz[k] for k in npz.files}  # every layer at once
        for layer in range(n_layers):
            for head in range(n_heads):
                pattern = cache[f"blocks.{layer}.attn.hook_pattern"][0, head]
                save_dir = prompt_dir / f"L{layer}" / f"H{head}"
                save_dir.mkdir(parents=True, exist_ok=True)
                for func in funcs:
                    list(save_dir.glob(f"{func.__name__}.*"))  # the reference globs even with force
                    func(pattern, save_dir)
    # the reference rebuilds prompts.jsonl after every prompt
    rows = []
    for d in (Path(model_dir) / "prompts").iterdir():
        if (d / "prompt.json").exists():
            rows.append(json.loads((d / "prompt.json").read_text()))
    with open(Path(model_dir) / "prompts.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return _rss_mb()


def _child_reference(cfg: dict) -> dict:
    model_dir = Path(cfg["root"]) / cfg["model"]
    prompts = [json.loads(x) for x in (model_dir / "prompts.jsonl").read_text().splitlines()][: cfg["n_samples"]]
    model_cfg = json.loads((model_dir / "model_cfg.json").read_text())
    jobs = [(p, str(model_dir), model_cfg["n_layers"], model_cfg["n_heads"], cfg["profile"]) for p in prompts]
    times, rss = [], 0.0
    with multiprocessing.Pool(multiprocessing.cpu_count()) as pool:
        for i in range(cfg["repeats"] + 1):
            t0 = time.perf_counter()
            rss = max(pool.map(_ref_process_prompt, jobs, chunksize=1))
            if i:
                times.append(time.perf_counter() - t0)
    heads = len(prompts) * model_cfg["n_layers"] * model_cfg["n_heads"]
    best = min(times)
    return {
        "heads": heads,
        "seconds": best,
        "heads_per_s": heads / best,
        "utilisation": None,
        "parent_rss_mb": _rss_mb(),
        "worker_rss_mb": rss,
        "workers": min(len(prompts), multiprocessing.cpu_count()),
        "backend": "mp.Pool over prompts",
    }


def _child_cli(cfg: dict) -> dict:
    exe = Path(sys.executable).parent / "pattern-lens"
    cmd = [str(exe), "render", "-m", cfg["model"], "-s", cfg["root"], "--figure-funcs", "raw", "--force",
           "--profile", cfg["profile"], "--jobs", str(cfg["jobs"]), "-q"]
    times = []
    for _ in range(cfg["repeats"]):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    heads = cfg["n_heads_total"]
    best = min(times)
    return {
        "heads": heads, "seconds": best, "heads_per_s": heads / best, "utilisation": None,
        "parent_rss_mb": _rss_mb(resource.RUSAGE_CHILDREN), "worker_rss_mb": None,
        "workers": cfg["jobs"], "backend": "cli",
    }


_CHILDREN = {"pipeline": _child_pipeline, "reference": _child_reference, "cli": _child_cli}


def _run_child(cfg: dict) -> dict:
    out = subprocess.run(
        [sys.executable, str(_HERE), "--child", json.dumps(cfg)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------
# parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-layers", type=int, default=12)
    p.add_argument("--n-heads", type=int, default=12)
    p.add_argument("--n-ctx", type=int, default=512)
    p.add_argument("--n-prompts", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", type=int, default=None, help="'all cores' (default: every core of this machine)")
    p.add_argument("--small-prompts", type=int, default=32, help="prompts of the n_ctx 64 row (0: skip)")
    p.add_argument("--json", type=str, default=None, help="also write the rows here")
    p.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        cfg = json.loads(args.child)
        print(json.dumps(_CHILDREN[cfg["kind"]](cfg)))
        return 0

    from pattern_lens._system import available_cpus
    from pattern_lens.synthetic import write_synthetic_model

    n_cpu = args.jobs or available_cpus()
    tmp = Path(tempfile.mkdtemp(prefix="pl_bench_"))
    try:
        t0 = time.perf_counter()
        big = write_synthetic_model(tmp / "big", n_layers=args.n_layers, n_heads=args.n_heads, n_ctx=args.n_ctx,
                                    n_prompts=args.n_prompts, seed=0)
        npz_mb = sum(f.stat().st_size for f in big.rglob("*.npz")) / 2**20
        print(f"synthetic {big.name} x {args.n_prompts} prompts ({npz_mb:.0f} MiB of compressed npz) written in "
              f"{time.perf_counter() - t0:.1f} s; {n_cpu} cores; repeats {args.repeats}", flush=True)
        heads_all = args.n_prompts * args.n_layers * args.n_heads
        base = {"root": str(tmp / "big"), "model": big.name, "repeats": args.repeats, "n_samples": None}
        rows: list[dict] = []

        def row(label: str, cfg: dict) -> dict:
            res = _run_child({**base, **cfg})
            res["label"] = label
            rows.append(res)
            util = f"{res['utilisation']:.0%}" if res["utilisation"] is not None else "-"
            wrss = f"{res['worker_rss_mb']:.0f}" if res["worker_rss_mb"] is not None else "-"
            print(f"{label:<44} {res['heads']:>6} {res['seconds']:>8.2f} {res['heads_per_s']:>9.1f} {util:>6} "
                  f"{res['parent_rss_mb']:>7.0f} {wrss:>7}", flush=True)
            return res

        print(f"\n{'configuration':<44} {'heads':>6} {'seconds':>8} {'heads/s':>9} {'util':>6} {'RSS MiB':>7} {'worker':>7}")
        results: dict[tuple, dict] = {}
        for profile in ("exact", "fast"):
            for jobs in (1, n_cpu):
                results[(profile, jobs)] = row(
                    f"pipeline {profile}, {args.n_prompts} prompts, {jobs} job{'s' if jobs > 1 else ''}",
                    {"kind": "pipeline", "profile": profile, "jobs": jobs},
                )
            results[(profile, "one")] = row(
                f"pipeline {profile}, 1 prompt, {n_cpu} jobs",
                {"kind": "pipeline", "profile": profile, "jobs": n_cpu, "n_samples": 1},
            )
            results[(profile, "ref1")] = row(
                f"reference algorithm {profile}, 1 prompt",
                {"kind": "reference", "profile": profile, "n_samples": 1},
            )
            results[(profile, "ref2")] = row(
                f"reference algorithm {profile}, {args.n_prompts} prompts",
                {"kind": "reference", "profile": profile, "n_samples": args.n_prompts},
            )
        row(f"cli cold exact, {args.n_prompts} prompts, {n_cpu} jobs",
            {"kind": "cli", "profile": "exact", "jobs": n_cpu, "n_heads_total": heads_all, "repeats": 2})
        if args.small_prompts:
            small = write_synthetic_model(tmp / "small", n_layers=args.n_layers, n_heads=args.n_heads, n_ctx=64,
                                          n_prompts=args.small_prompts, seed=1)
            for jobs in (1, n_cpu):
                row(f"pipeline exact, n_ctx 64, {args.small_prompts} prompts, {jobs} job{'s' if jobs > 1 else ''}",
                    {"kind": "pipeline", "profile": "exact", "jobs": jobs, "root": str(tmp / "small"),
                     "model": small.name})

        print()
        for profile in ("exact", "fast"):
            r = results
            print(f"{profile}: all cores / one job = {r[(profile, n_cpu)]['heads_per_s'] / r[(profile, 1)]['heads_per_s']:.2f}x; "
                  f"one prompt vs reference algorithm = {r[(profile, 'one')]['heads_per_s'] / r[(profile, 'ref1')]['heads_per_s']:.2f}x; "
                  f"{args.n_prompts} prompts vs reference algorithm = {r[(profile, n_cpu)]['heads_per_s'] / r[(profile, 'ref2')]['heads_per_s']:.2f}x")
        layer_mb = args.n_heads * args.n_ctx * args.n_ctx * 4 / 2**20
        print(f"one layer = {layer_mb:.1f} MiB, one prompt's patterns = {layer_mb * args.n_layers:.0f} MiB "
              "(the pipeline's workers hold one layer; the reference algorithm's hold the prompt)")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
