"""issue 17's whole-run targets: two jobs against one, against the reference, and a 1-head run's fixed cost

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install --no-deps pattern-lens==0.6.0 \\
        && /tmp/refvenv/bin/pip install numpy matplotlib jaxtyping muutils tqdm pillow torch==2.13.0
    flock /tmp/pattern_lens_bench.lock python benchmarks/bench_scaling.py --ref-python /tmp/refvenv/bin/python

Every row is one cold process, timed whole (wall seconds, as a user waits), files written; each
configuration runs `--repeats` times, the configurations taking turns, and the median counts:

 - `jobs 1`, `jobs 2`: `python -m pattern_lens.cli render --profile fast --force -q` of a synthetic
   model of 12 x 12 heads at n_ctx 1024, 6 prompts, deflated `.npz` (what the reference writes),
   with the head summaries (the default), without the gallery (`--no-index-html`: not a per-head cost)
 - `reference 0.6.0` (with `--ref-python`): `python -m pattern_lens.figures --figure-funcs raw
   --force True` of pattern-lens 0.6.0 from PyPI on the same data and cores (raw only: it has no
   summaries; its own multiprocessing over prompts)
 - `1 head`: the same command (`--jobs 1` and the default) on a model of 1 layer x 1 head, n_ctx 64,
   1 prompt: the fixed cost of a cold CLI run

`--base CHECKOUT` (a `git worktree` of an earlier commit) adds the same rows run from that checkout,
taking turns with this one's, so a change is measured against its parent in one run.

Targets (issue 17): jobs 2 >= 1.85x jobs 1; jobs 2 >= 8x the reference; 1 head <= 1.0 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall


def _render(model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pattern_lens.cli", "render", "-m", model.name, "-s", str(model.parent),
            "--profile", "fast", "--force", "--no-index-html", "-q", *extra]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref-python", type=Path, default=None, help="python of a venv with pattern-lens 0.6.0")
    p.add_argument("--repeats", type=int, default=3, help="runs per configuration, the median counts (default: 3)")
    p.add_argument("--n-prompts", type=int, default=6)
    p.add_argument("--n-ctx", type=int, default=1024)
    p.add_argument("--work", type=Path, default=None, help="folder for the synthetic models (default: a temp folder)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--base", type=Path, default=None,
                   help="a checkout of an earlier commit (`git worktree add`): its rows run too, taking turns with this one's")
    args = p.parse_args(argv)

    from pattern_lens.synthetic import write_synthetic_model

    work = args.work or Path(tempfile.mkdtemp(prefix="pl_bench_scaling_"))
    big = write_synthetic_model(work / "big", n_layers=12, n_heads=12, n_ctx=args.n_ctx, n_prompts=args.n_prompts)
    one = write_synthetic_model(work / "one", n_layers=1, n_heads=1, n_ctx=64, n_prompts=1)
    configs: dict[str, tuple[list[str], Path]] = {
        "jobs 1": (_render(big, "--jobs", "1"), REPO),
        "jobs 2": (_render(big, "--jobs", "2"), REPO),
        "1 head, jobs 1": (_render(one, "--jobs", "1"), REPO),
        "1 head, default jobs": (_render(one), REPO),
    }
    if args.base:  # the same commands run from the other checkout: `python -m` imports the package from the cwd
        configs.update({f"{k} (base)": (cmd, args.base.resolve()) for k, (cmd, _) in list(configs.items())})
    if args.ref_python:
        configs["reference 0.6.0"] = (
            [str(args.ref_python), "-m", "pattern_lens.figures", "--model", big.name, "--save-path", str(big.parent),
             "--figure-funcs", "raw", "--force", "True"],
            Path(tempfile.gettempdir()),  # not this checkout: its `pattern_lens` would shadow the reference's
        )
    times: dict[str, list[float]] = {k: [] for k in configs}
    for k in configs:  # a first run of each, not counted: file-system caches, numba's cache
        _timed(*configs[k])
    for r in range(args.repeats):
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        for k in order:
            times[k].append(_timed(*configs[k]))
            print(f"  {k}: {times[k][-1]:.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    heads = 12 * 12 * args.n_prompts
    load = os.getloadavg()
    print(f"\n{heads} heads (12 x 12 x {args.n_prompts} prompts, n_ctx {args.n_ctx}); {os.cpu_count()} CPUs; "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; median of {args.repeats}")
    print("| run | median s | all s |")
    print("|---|---:|---|")
    for k, v in times.items():
        print(f"| {k} | {med[k]:.2f} | {' / '.join(f'{x:.2f}' for x in v)} |")
    print(f"jobs 1 / jobs 2: {med['jobs 1'] / med['jobs 2']:.2f}x (target >= 1.85x)")
    if args.base:
        print(f"base: jobs 1 / jobs 2 {med['jobs 1 (base)'] / med['jobs 2 (base)']:.2f}x; this / base: "
              + ", ".join(f"{k} {med[k] / med[k + ' (base)']:.3f}" for k in med if f"{k} (base)" in med))
    if "reference 0.6.0" in med:
        print(f"reference 0.6.0 / jobs 2: {med['reference 0.6.0'] / med['jobs 2']:.2f}x (target >= 8x)")
    print(f"1 head: {med['1 head, jobs 1']:.2f} s with --jobs 1, {med['1 head, default jobs']:.2f} s by default (target <= 1.0 s)")
    if args.json:
        args.json.write_text(json.dumps({"times": times, "median": med, "cpus": os.cpu_count(), "load": load}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
