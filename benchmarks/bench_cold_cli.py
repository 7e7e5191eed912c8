"""issue 17's cold-CLI targets: `--jobs 1/2/8/default` and a resume with nothing to do, against a baseline

    git worktree add --detach /tmp/house-base 2ead7d6
    python benchmarks/bench_cold_cli.py --base /tmp/house-base            # pythia-14m from ../shared/parity
    python benchmarks/bench_cold_cli.py --base /tmp/house-base --repeats 5 --json out.json

Whole process, wall seconds: `python -m pattern_lens.cli render -m pythia-14m --profile fast -q`
(768 heads, summaries on, no gallery) with `--force` (everything rendered again) and without
(resume: every file already there). Each checkout renders its own copy of the data (activations
only, copied from the parity folder, which is never written to); runs alternate between the
checkouts and the job counts, so that a change in the machine's load falls on all of them; the
median of `--repeats` counts. Ratios are taken within one checkout (`--jobs N` / `--jobs 1`) and
between checkouts (this / base), in the same run.

Also the warm backend's worker start: a process that has loaded the render path starts a pool of
`k` workers and runs one trivial task on each, against a loky pool doing the same (`worker start`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "parity" / "pythia-14m"
JOBS = ("1", "2", "8", "default")


def _copy_model(src: Path, dest_root: Path) -> str:
    """the model folder's inputs (config, indexes, each prompt's activations and prompt.json) only"""
    dest = dest_root / src.name
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("model_cfg.json", "prompts.jsonl"):
        shutil.copy2(src / name, dest / name)
    for prompt in (src / "prompts").iterdir():
        (dest / "prompts" / prompt.name).mkdir(parents=True, exist_ok=True)
        for name in ("activations.npz", "prompt.json"):
            if (prompt / name).is_file():
                shutil.copy2(prompt / name, dest / "prompts" / prompt.name / name)
    return src.name


def _flags(repo: Path) -> list[str]:
    return ["--no-index-html"] if (repo / "pattern_lens" / "_view" / "gallery.py").is_file() else []


def _run(repo: Path, root: Path, model: str, jobs: str, force: bool) -> float:
    cmd = [sys.executable, "-m", "pattern_lens.cli", "render", "-m", model, "-s", str(root), "--profile", "fast", "-q",
           *(["--force"] if force else []), *([] if jobs == "default" else ["--jobs", jobs]), *_flags(repo)]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{repo}: {' '.join(cmd)}\n{done.stdout}{done.stderr}")
    return wall


_START = """
import os, sys, time, joblib
k = int(sys.argv[1]); backend = sys.argv[2]
from pattern_lens._engine.warmup import warm_worker
warm_worker(("fast",), ())
if backend == "warm":
    from pattern_lens._engine import warm
    warm.register()
    kw = dict(profiles=("fast",))
else:
    kw = {}
t0 = time.perf_counter()
with joblib.parallel_config(backend=backend, **kw):
    pids = joblib.Parallel(n_jobs=k)(joblib.delayed(os.getpid)() for _ in range(k))
print(time.perf_counter() - t0, len(set(pids)))
"""


def _worker_start(repo: Path, k: int, backend: str) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run([sys.executable, "-c", _START, str(k), backend], env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    seconds, distinct = out.stdout.split()
    return float(seconds), int(distinct)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="the baseline checkout (a git worktree)")
    ap.add_argument("--data", type=Path, default=DATA, help=f"the model folder (default: {DATA})")
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration, median counts (default: 3)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    repos = {"base": args.base.resolve(), "this": REPO}
    tmp = Path(tempfile.mkdtemp(prefix="pl_cold_cli_"))
    try:
        roots = {name: tmp / name for name in repos}
        model = ""
        for name, root in roots.items():
            model = _copy_model(args.data, root)
            _run(repos[name], root, model, "1", True)  # every file there (and numba's cache warm) before timing
        times: dict[tuple[str, str, str], list[float]] = {}
        for _ in range(args.repeats):
            for mode in ("force", "resume"):
                for jobs in JOBS:
                    for name in repos:
                        t = _run(repos[name], roots[name], model, jobs, mode == "force")
                        times.setdefault((name, mode, jobs), []).append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"pythia-14m (768 heads), cold CLI, --profile fast, wall seconds, median of {args.repeats}; "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        print(f"{'run':<8}{'jobs':>9}{'base s':>9}{'this s':>9}{'base/j1':>9}{'this/j1':>9}{'this/base':>10}")
        rows = []
        for mode in ("force", "resume"):
            for jobs in JOBS:
                b, t = med[("base", mode, jobs)], med[("this", mode, jobs)]
                b1, t1 = med[("base", mode, "1")], med[("this", mode, "1")]
                rows.append(dict(mode=mode, jobs=jobs, base=b, this=t, base_vs_j1=b / b1, this_vs_j1=t / t1, this_vs_base=t / b))
                print(f"{mode:<8}{jobs:>9}{b:>9.2f}{t:>9.2f}{b / b1:>9.2f}{t / t1:>9.2f}{t / b:>10.2f}")
        starts = {}
        for backend in ("warm", "loky"):
            for k in (2,):
                runs = [_worker_start(REPO, k, backend) for _ in range(args.repeats)]
                seconds = statistics.median(s for s, _ in runs)
                starts[f"{backend}-{k}"] = seconds
                print(f"worker start, {backend}: {k} workers, one trivial task each: {seconds * 1000:.0f} ms "
                      f"({seconds * 1000 / k:.0f} ms per worker)")
        if args.json:
            args.json.write_text(json.dumps(dict(rows=rows, worker_start=starts, repeats=args.repeats), indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
