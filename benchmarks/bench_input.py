"""issue 10's targets: the pipeline's input side and fixed costs, this checkout against a baseline checkout

    git worktree add --detach /tmp/base a8aff60
    flock /tmp/pattern_lens_bench.lock python benchmarks/bench_input.py --base /tmp/base

Every configuration runs in a fresh child process whose `PYTHONPATH` is one checkout, the baseline's
and this one's alternating, on the same files, in one run, so that the ratios compare like with like
on a machine whose load changes. Rows (`raw` figure, `force=True`, heads rendered per wall second):
 - `warm`: `figures_main` in a process whose workers were started and whose kernels were loaded by
   a run on a tiny model first; best of `--repeats`.
   12 x 12 heads at n_ctx 512, 2 prompts, deflated `.npz` (what the reference writes) and stored
   (`np.savez`), exact and fast, 1 and 2 jobs; one layer of 8 heads at n_ctx 4096, 1 and 2 jobs.
 - `render only`: `pattern_lens.bench` (exports the same heads from memory, reads nothing) at
   n_ctx 512, fast, 2 jobs: what a stored `.npz` run is compared with.
 - `cold cli`: `python -m pattern_lens.cli render` of one prompt, whole process, 1 and 2 jobs.
 - `cpu`: the CPU seconds (user + system, parent and workers) of the cold CLI runs, which a loaded
   machine changes less than the wall time.
 - `vs reference` (with `--ref-python`, a venv holding pattern-lens 0.6.0 from PyPI): whole process,
   `python -m pattern_lens.figures --figure-funcs raw --force True` (multiprocessing over prompts)
   against `python -m pattern_lens.cli render --figure-funcs raw --force --jobs 2`, exact and fast,
   12 x 12 heads at n_ctx 512, 4 prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _no_summaries(repo: Path) -> list[str]:
    """`--no-summaries` and `--no-index-html` where the checkout has head summaries (issue 12) and the
    gallery (issue 13): the baseline makes neither, so both sides do the same work"""
    flags = ["--no-summaries"] if any((repo / "pattern_lens" / d / "summaries.py").is_file() for d in ("_pipeline", "_summaries")) else []
    return flags + (["--no-index-html"] if (repo / "pattern_lens" / "_view" / "gallery.py").is_file() else [])


def _child(cfg: dict) -> dict:
    import inspect
    import functools

    from pattern_lens.figures import figures_main

    if "summaries" in inspect.signature(figures_main).parameters:  # see `_no_summaries`
        figures_main = functools.partial(figures_main, summaries=False)

    if cfg["kind"] == "render_only":
        from pattern_lens.bench import BenchConfig, run_benchmark

        res = run_benchmark(BenchConfig(n_ctx=(cfg["n_ctx"],), jobs=(cfg["jobs"],), formats=("png",),
                                        methods=("fast",), repeat=3))
        return {"heads_per_s": max(r.heads_per_s for r in res if r.jobs == cfg["jobs"])}
    # warm: start the pool and load the kernels on a tiny model first
    figures_main(cfg["tiny_model"], cfg["tiny_root"], None, True, "raw", n_jobs=cfg["jobs"], profile=cfg["profile"],
                 progress=False, verbose=False)
    best, stages = None, None
    for _ in range(cfg["repeats"]):
        t0 = time.perf_counter()
        s = figures_main(cfg["model"], cfg["root"], None, True, "raw", n_jobs=cfg["jobs"], profile=cfg["profile"],
                         progress=False, verbose=False)
        wall = time.perf_counter() - t0
        assert s.ok, s.format()
        if best is None or wall < best:
            best, stages = wall, getattr(s, "stage_seconds", None)
    heads = s.n_heads
    return {"heads_per_s": heads / best, "seconds": best, "backend": s.backend, "jobs": s.n_jobs, "stages": stages}


def _run(repo: Path, cfg: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True, text=True,
                         env=env, cwd=str(repo), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cold(repo: Path, root: Path, model: str, jobs: int, profile: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree) of one cold CLI render"""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pattern_lens.cli", "render", "-m", model, "-s", str(root), "--figure-funcs",
                    "raw", "--force", "--profile", profile, "--jobs", str(jobs), "-q", *_no_summaries(repo)],
                   env=env, cwd=str(repo), check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _timed(cmd: list[str], cwd: str, env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process tree: user + system of every child waited for)"""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, default=None, help="baseline checkout (e.g. git worktree of a8aff60)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cold-repeats", type=int, default=3)
    p.add_argument("--long-ctx", type=int, default=4096, help="n_ctx of the one-layer long-context rows (0: skip)")
    p.add_argument("--work", type=Path, default=None, help="folder for the synthetic models (default: a temp folder)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--ref-python", type=Path, default=None, help="python of a venv with pattern-lens 0.6.0 (reference rows)")
    p.add_argument("--only-ref", action="store_true", help="only the reference rows")
    p.add_argument("--only-cold", action="store_true", help="only the cold CLI rows and the warm one-prompt rows they are compared with")
    p.add_argument("--only-long", action="store_true", help="only the one-layer long-context rows")
    p.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    if args.base is None:
        p.error("--base (a baseline checkout) is required")

    from pattern_lens.synthetic import write_synthetic_model

    work = args.work or Path(tempfile.mkdtemp(prefix="pl_bench_input_"))
    tiny = write_synthetic_model(work / "tiny", n_layers=1, n_heads=2, n_ctx=16, n_prompts=1)
    models = {}
    if not (args.only_long or args.only_ref):  # the 12 x 12 models only the other rows read
        models["deflated"] = write_synthetic_model(work / "deflated", n_layers=12, n_heads=12, n_ctx=512, n_prompts=2)
        models["stored"] = write_synthetic_model(work / "stored", n_layers=12, n_heads=12, n_ctx=512, n_prompts=2,
                                                 compress=False)
        models["one prompt"] = write_synthetic_model(work / "one", n_layers=12, n_heads=12, n_ctx=512, n_prompts=1)
    if args.long_ctx:
        models["long"] = write_synthetic_model(work / "long", n_layers=1, n_heads=8, n_ctx=args.long_ctx, n_prompts=1)
    repos = {"base": args.base.resolve(), "new": REPO}
    rows: list[dict] = []

    def warm(label: str, model_key: str, profile: str, jobs: int) -> None:
        m = models[model_key]
        got = {}
        for name, repo in repos.items():
            got[name] = _run(repo, {"kind": "warm", "model": m.name, "root": str(m.parent), "tiny_model": tiny.name,
                                    "tiny_root": str(tiny.parent), "profile": profile, "jobs": jobs,
                                    "repeats": args.repeats})
        row = {"label": label, "base": got["base"]["heads_per_s"], "new": got["new"]["heads_per_s"],
               "stages": got["new"].get("stages")}
        rows.append(row)
        print(f"{label:<52} base {row['base']:8.1f}  new {row['new']:8.1f} heads/s  new/base {row['new'] / row['base']:5.2f}x",
              flush=True)

    print(f"work folder {work}; baseline {repos['base']}; {os.cpu_count()} cpus", flush=True)
    if args.ref_python:
        four = write_synthetic_model(work / "four", n_layers=12, n_heads=12, n_ctx=512, n_prompts=4)
        heads = 4 * 12 * 12
        ref_cmd = [str(args.ref_python), "-m", "pattern_lens.figures", "--model", four.name, "--save-path",
                   str(four.parent), "--figure-funcs", "raw", "--force", "True"]
        runs = [_timed(ref_cmd, cwd=tempfile.gettempdir(), env=dict(os.environ)) for _ in range(args.cold_repeats)]
        ref, ref_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        rows.append({"label": "reference 0.6.0 whole process, 4 prompts", "wall": ref, "cpu": ref_cpu})
        print(f"reference 0.6.0, whole process, 4 prompts 12x12 ctx512: {ref:6.2f} s ({heads / ref:.1f} heads/s), "
              f"cpu {ref_cpu:6.2f} s", flush=True)
        for name, repo in repos.items():
            for profile in ("exact", "fast"):
                cmd = [sys.executable, "-m", "pattern_lens.cli", "render", "-m", four.name, "-s", str(four.parent),
                       "--figure-funcs", "raw", "--force", "--profile", profile, "--jobs", "2", "-q",
                       *_no_summaries(repo)]
                runs = [_timed(cmd, cwd=str(repo), env={**os.environ, "PYTHONPATH": str(repo)})
                        for _ in range(args.cold_repeats)]
                wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
                rows.append({"label": f"{name} {profile} whole process, 4 prompts", "wall": wall, "cpu": cpu,
                             "vs_ref": ref / wall, "vs_ref_cpu": ref_cpu / cpu})
                print(f"{name:<4} {profile:<5} whole process, 4 prompts: {wall:6.2f} s  vs reference {ref / wall:5.2f}x"
                      f"  (cpu {cpu:6.2f} s, {ref_cpu / cpu:5.2f}x)", flush=True)
    if args.only_ref:
        return _write_json(args.json, rows)

    def long_rows() -> None:
        if not args.long_ctx:
            return
        for profile in ("fast", "exact"):
            for jobs in (1, 2):
                warm(f"warm {profile} {jobs} job(s), 1 layer x 8 heads ctx{args.long_ctx}", "long", profile, jobs)

    if args.only_long:
        long_rows()
        return _write_json(args.json, rows)
    for profile in ("fast", "exact"):
        for jobs in (2, 1):
            if not args.only_cold:
                warm(f"warm {profile} {jobs} job(s), 12x12 ctx512 x2, deflated", "deflated", profile, jobs)
    if args.only_cold:
        for jobs in (1, 2):  # what a cold CLI run of one prompt is compared with: its overhead
            warm(f"warm fast {jobs} job(s), 12x12 ctx512 x1 (s/run: 144 / heads/s)", "one prompt", "fast", jobs)
    else:
        warm("warm fast 2 jobs, 12x12 ctx512 x2, stored", "stored", "fast", 2)
        ro = _run(REPO, {"kind": "render_only", "n_ctx": 512, "jobs": 2})
        rows.append({"label": "render only (pattern_lens.bench) fast 2 jobs ctx512", "new": ro["heads_per_s"]})
        print(f"{'render only (pattern_lens.bench) fast 2 jobs ctx512':<52} {ro['heads_per_s']:8.1f} heads/s", flush=True)
    if not args.only_cold:
        long_rows()
    m = models["one prompt"]
    for name, repo in repos.items():
        for jobs in (1, 2):
            runs = [_cold(repo, m.parent, m.name, jobs, "fast") for _ in range(args.cold_repeats)]
            wall = min(r[0] for r in runs)
            cpu = min(r[1] for r in runs)
            rows.append({"label": f"cold cli fast {jobs} job(s) one prompt", "repo": name, "wall": wall, "cpu": cpu})
            print(f"cold cli {name:<4} fast {jobs} job(s), 1 prompt 12x12 ctx512: wall {wall:6.2f} s  cpu {cpu:6.2f} s",
                  flush=True)
    return _write_json(args.json, rows)


def _write_json(path: Path | None, rows: list[dict]) -> int:
    if path:
        path.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
