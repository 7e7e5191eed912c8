"""`pattern-lens bench --pipeline`: the whole pipeline on a synthetic model, with where its time goes

Unlike the export benchmark (which renders patterns already in memory), this runs `figures_main`
end to end on `.npz` files written like the reference's (deflated, or stored with `--stored`), and
splits the workers' time into stages: `read` (listing head folders, reading and inflating layers),
`render` (the figure functions, file writes included), `other` (the rest of the tasks), `idle`
(worker time outside tasks: start-up, scheduling, waiting), and the parent's `index` (inputs and
the `figures.jsonl` / `prompts.jsonl` / `models.jsonl` indexes, outside the rendering). The stage
with the largest share bounds the run.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pattern_lens._summaries.summary import RenderSummary

__all__ = ["StageResult", "run_stage_bench", "format_stages"]


@dataclass
class StageResult:
    """one (profile, jobs) run of the pipeline

    # Fields:
     - `profile : str`, `jobs : int`, `n_ctx : int`, `stored : bool`
     - `heads : int` heads rendered, `seconds : float` wall seconds of `figures_main`
     - `heads_per_s : float` rendered heads per wall second
     - `stages : dict[str, float]` seconds per stage, summed over workers, plus the parent's `index`
    """

    profile: str
    jobs: int
    n_ctx: int
    stored: bool
    heads: int
    seconds: float
    heads_per_s: float
    stages: dict[str, float]


def run_stage_bench(
    figures_main: Callable[..., RenderSummary],
    n_ctx: int = 512,
    n_layers: int = 12,
    n_heads: int = 12,
    n_prompts: int = 2,
    jobs: tuple[int, ...] = (1, 2),
    profiles: tuple[str, ...] = ("exact", "fast"),
    stored: bool = False,
    repeat: int = 2,
    progress=None,
) -> list[StageResult]:
    """render a synthetic model with `raw` per profile and job count; best of `repeat` after a warm-up

    # Parameters:
     - `figures_main : Callable` the pipeline's entry, `pattern_lens.figures.figures_main` (passed in:
       a stage does not import the public modules above it)
     - `n_ctx`, `n_layers`, `n_heads`, `n_prompts`: the synthetic model (defaults to 512, 12, 12, 2)
     - `jobs : tuple[int, ...]` worker counts (defaults to `(1, 2)`)
     - `profiles : tuple[str, ...]` (defaults to `("exact", "fast")`)
     - `stored : bool` write the `.npz` uncompressed (`np.savez`) instead of deflated (defaults to `False`)
     - `repeat : int` timed runs per configuration (defaults to `2`)
     - `progress : Callable[[str], None] | None` called before each configuration (defaults to `None`)

    # Returns:
     - `list[StageResult]`
    """
    from pattern_lens.synthetic import write_synthetic_model

    tmp = Path(tempfile.mkdtemp(prefix="pattern_lens_stages_"))
    try:
        model = write_synthetic_model(
            tmp, n_layers=n_layers, n_heads=n_heads, n_ctx=n_ctx, n_prompts=n_prompts, compress=not stored
        )
        out: list[StageResult] = []
        for profile in profiles:
            for n_jobs in jobs:
                if progress:
                    progress(f"pipeline {profile} n_ctx={n_ctx} jobs={n_jobs}{' stored' if stored else ''}")
                best = None
                for i in range(repeat + 1):  # the first run starts the workers and loads the kernels
                    t0 = time.perf_counter()
                    s = figures_main(
                        model.name, tmp, None, True, "raw", n_jobs=n_jobs, profile=profile, progress=False, verbose=False
                    )
                    wall = time.perf_counter() - t0
                    if not s.ok:
                        raise RuntimeError(s.format())
                    if i and (best is None or wall < best[0]):
                        best = (wall, s)
                wall, s = best
                stages = dict(s.stage_seconds)
                stages["index"] = max(0.0, wall - s.elapsed)
                out.append(StageResult(profile, s.n_jobs, n_ctx, stored, s.n_rendered, wall, s.n_rendered / wall, stages))
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def format_stages(results: list[StageResult]) -> str:
    """a table: heads/s and each stage's share of the workers' wall time, and the stage that bounds"""
    names = ("read", "render", "other", "idle", "index")
    lines = [f"{'profile':<8}{'jobs':>5}{'n_ctx':>7}{'npz':>9}{'heads/s':>10}" + "".join(f"{n:>8}" for n in names) + "  bound by"]
    for r in results:
        total = r.seconds * r.jobs  # worker wall time; the parent's index time counted once per job
        shares = {n: r.stages[n] / total if total > 0 else 0.0 for n in names}
        shares["index"] = r.stages["index"] * r.jobs / total if total > 0 else 0.0
        bound = max(shares, key=shares.get)
        lines.append(
            f"{r.profile:<8}{r.jobs:>5}{r.n_ctx:>7}{'stored' if r.stored else 'deflated':>9}{r.heads_per_s:>10.1f}"
            + "".join(f"{shares[n]:>8.0%}" for n in names)
            + f"  {bound}"
        )
    lines.append(
        "shares of the workers' wall time (jobs x seconds): read = list + read + inflate + finiteness check; "
        "render = figure functions with their file writes; idle = start-up, scheduling, waiting; "
        "index = the parent's inputs and index files"
    )
    return "\n".join(lines)
