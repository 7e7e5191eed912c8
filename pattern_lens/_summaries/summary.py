"""what a render did: per-task results from the workers, merged into one summary for the run"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["FailureStat", "TaskResult", "RenderSummary", "interrupted_line"]


@dataclass
class FailureStat:
    """failures of one figure function over a run

    # Fields:
     - `count : int` heads on which it raised
     - `first_message : str` `"<ExceptionType>: <message>"` of the first failure seen
     - `first_where : str` path of that failure's `<func>.error.txt`
    """

    count: int
    first_message: str
    first_where: str


@dataclass
class TaskResult:
    """what one task (some heads of some layers of some prompts) did; built in a worker"""

    n_heads: int = 0
    "heads the task covered"
    n_skipped: int = 0
    "heads whose outputs all existed already"
    n_rendered: int = 0
    "heads on which a figure function ran or whose summary was computed (their layer was read)"
    n_summarised: int = 0
    "heads whose statistics and preview were computed (`pattern_lens._summaries.summaries`)"
    n_outputs: int = 0
    "figure files written (a multi-figure function's run writes several)"
    n_input_error_heads: int = 0
    "heads not rendered because of bad input"
    failures: dict[str, FailureStat] = field(default_factory=dict)
    "figure function name -> its failures"
    input_errors: list[str] = field(default_factory=list)
    "messages about bad input, each naming the file"
    repaired: list[str] = field(default_factory=list)
    "existing outputs that were not complete files (`<path>: <problem>`), deleted and redone"
    peak_rss: int = 0
    "peak resident memory of the process that ran the task, bytes (0 if unknown)"
    task_seconds: float = 0.0
    "time the task took in its worker"
    task_estimate: float = 0.0
    "the planner's prior estimate of the task, seconds (fed back to size later tasks)"
    read_seconds: float = 0.0
    "seconds spent reading layers: listing head folders, reading and inflating"
    render_seconds: float = 0.0
    "seconds spent on the heads: the finiteness check (where the summaries' pass does not give it), rendering and writing the files"
    head_stats: dict[str, list[dict]] = field(default_factory=dict)
    "prompt folder -> statistics rows of the heads summarised (`pattern_lens._summaries.summaries`)"
    heads_covered: dict[str, int] = field(default_factory=dict)
    "prompt folder -> heads of it the task covered (rendered, skipped or failed)"
    handed_over: list[str] = field(default_factory=list, repr=False, compare=False, kw_only=True)
    "hand-over files the task rendered from: the parent deletes them when this result is back (`recovery.release_handover`)"

    def add_failure(self, func_name: str, message: str, where: str) -> None:
        """count one failure of `func_name`"""
        stat = self.failures.get(func_name)
        if stat is None:
            self.failures[func_name] = FailureStat(1, message, where)
        else:
            stat.count += 1

    def add_input_error(self, message: str, n_heads: int) -> None:
        """record a bad-input message that cost `n_heads` heads"""
        self.n_input_error_heads += n_heads
        if message not in self.input_errors:
            self.input_errors.append(message)


@dataclass
class RenderSummary(TaskResult):
    """what a whole run did; returned by `figures_main` and printed by the CLI

    # Fields (besides those of `TaskResult`):
     - `model_name : str`
     - `n_prompts : int` prompts selected
     - `n_layers : int`, `n_heads_per_layer : int` selected per prompt
     - `figure_funcs : list[str]` names of the functions run
     - `n_jobs : int` workers used, `backend : str`, `profile : str`
     - `elapsed : float` wall seconds of the rendering (from the first task to the last result)
     - `busy_seconds : float` seconds the workers spent inside tasks, summed over tasks
    """

    model_name: str = ""
    n_prompts: int = 0
    n_layers: int = 0
    n_heads_per_layer: int = 0
    figure_funcs: list[str] = field(default_factory=list)
    n_jobs: int = 1
    backend: str = ""
    profile: str = ""
    elapsed: float = 0.0
    busy_seconds: float = 0.0

    def merge(self, res: TaskResult) -> None:
        """add one task's result"""
        self.n_heads += res.n_heads
        self.n_skipped += res.n_skipped
        self.n_rendered += res.n_rendered
        self.n_summarised += res.n_summarised
        self.n_outputs += res.n_outputs
        self.n_input_error_heads += res.n_input_error_heads
        for name, stat in res.failures.items():
            mine = self.failures.get(name)
            if mine is None:
                self.failures[name] = dataclasses.replace(stat)
            else:
                mine.count += stat.count
        for msg in res.input_errors:
            if msg not in self.input_errors:
                self.input_errors.append(msg)
        self.repaired.extend(res.repaired)
        self.peak_rss = max(self.peak_rss, res.peak_rss)
        self.busy_seconds += res.task_seconds
        self.read_seconds += res.read_seconds
        self.render_seconds += res.render_seconds

    @property
    def ok(self) -> bool:
        """no figure function failed and no input was bad"""
        return not self.failures and not self.input_errors

    @property
    def utilisation(self) -> float:
        """fraction of the workers' wall time spent inside tasks (1.0: no scheduling or idle cost)"""
        return self.busy_seconds / (self.elapsed * self.n_jobs) if self.elapsed > 0 and self.n_jobs else 0.0

    @property
    def heads_per_s(self) -> float:
        """heads rendered per wall second (skipped heads, whose outputs existed, are not counted)"""
        return self.n_rendered / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def stage_seconds(self) -> dict[str, float]:
        """where the workers' time went, summed over workers: `read` (listing and reading layers),
        `render` (figure functions, file writes included), `other` (the rest of the tasks: skipping,
        folders, error files), `idle` (worker wall time outside tasks: start-up, scheduling, waiting)"""
        other = max(0.0, self.busy_seconds - self.read_seconds - self.render_seconds)
        idle = max(0.0, self.elapsed * self.n_jobs - self.busy_seconds)
        return {"read": self.read_seconds, "render": self.render_seconds, "other": other, "idle": idle}

    def format(self) -> str:
        """a few lines for people: counts, speed, then failures per function and input errors"""
        lines: list[str] = [
            f"{self.model_name}: {self.n_heads} heads ({self.n_prompts} prompts x {self.n_layers} layers"
            f" x {self.n_heads_per_layer} heads) in {self.elapsed:.2f} s"
            f" [{self.n_jobs} jobs, {self.backend}, profile {self.profile}]: {self.n_rendered} rendered"
            f" ({self.heads_per_s:.1f} heads/s), {self.n_skipped} already done (skipped),"
            f" {self.n_outputs} figures written" + (f", {self.n_summarised} heads summarised" if self.n_summarised else "")
        ]
        if self.failures:
            lines.append(f"figure functions failed on {sum(s.count for s in self.failures.values())} heads:")
            for name in sorted(self.failures):
                s = self.failures[name]
                lines.append(f"  {name}: {s.count} heads; first: {s.first_message} (see {s.first_where})")
        if self.repaired:
            lines.append(f"{len(self.repaired)} existing outputs were broken and were redone; first: {self.repaired[0]}")
        if self.input_errors:
            lines.append(
                f"bad input ({len(self.input_errors)} problems, {self.n_input_error_heads} heads not rendered):"
            )
            lines.extend(f"  {msg}" for msg in self.input_errors)
        return "\n".join(lines)


def interrupted_line(signum: int, summary: RenderSummary, total: int) -> str:
    """the one line an interrupted run prints: the signal, the heads done of `total`, that a rerun resumes"""
    import signal

    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    failed = sum(s.count for s in summary.failures.values())
    return (
        f"interrupted by {name} after {summary.n_heads} of {total} heads ({summary.n_rendered} rendered, "
        f"{summary.n_skipped} already done, {failed} figure failures); every file written is complete: "
        "rerun the same command to resume"
    )
