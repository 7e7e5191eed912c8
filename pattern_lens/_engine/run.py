"""render every selected head of a model's prompts on every core: plan, fan out, collect

`render_prompts` cuts the work into tasks (`planner`), runs them on the workers the parallel
settings resolve to (`backends`), each task rendering its heads (`worker`), and adds every task's
result to the run's `RenderSummary`, with a progress bar over heads. A task that ends badly (an
exception outside the figure functions, a dead worker) is reported in the summary and the run goes
on (`recovery`). `stop_on_signals` turns SIGINT and SIGTERM into `RunInterrupted`, so that a figure
function's own `KeyboardInterrupt` stays that function's failure.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence

from pattern_lens._errors import PatternLensError, RunInterrupted
from pattern_lens._progress import ProgressBar
from pattern_lens._engine import warm
from pattern_lens._engine.backends import parallel_session
from pattern_lens._engine.resume import has_work
from pattern_lens._output.outputs import check_output_names
from pattern_lens._input import handover
from pattern_lens._input.handover import share_split_layers, spill_folder
from pattern_lens._engine.recovery import job_failed, results_of, split_job
from pattern_lens._engine.planner import PromptWork, TaskPlanner
from pattern_lens._engine.prestart import wait_prestarted
from pattern_lens._summaries.summaries import PromptStatsWriter, SummarySpec
from pattern_lens._summaries.summary import RenderSummary
from pattern_lens._engine.transfer import FigureFuncs
from pattern_lens._engine.worker import InMemoryTask, Task, run_job
from pattern_lens.profile import EXPORT_PROFILES

__all__ = ["render_prompts", "stop_on_signals", "prior_knows", "default_workers", "SMALL_RUN_SECONDS"]

SMALL_RUN_SECONDS: float = 0.5
"""the estimated work a worker must have before the default starts it: a run of the package's own
figure functions estimated under this runs in this process, and one of `k * SMALL_RUN_SECONDS`
gets at most `k` workers, when the number of workers is the default's choice (the estimate is a
prior, and a worker costs its start, its share of the parent's result handling and a core the
parent also needs); an explicit `n_jobs`, or any other figure function, always gets the workers"""


def default_workers(estimated_seconds: float, cores: int, per_worker: float | None = None) -> int:
    """the default's number of workers for a run of the package's own figure functions whose work is
    estimated at `estimated_seconds`: one per `per_worker` seconds of it (defaults to `None`:
    `SMALL_RUN_SECONDS`), at least 1, at most `cores`"""
    per_worker = SMALL_RUN_SECONDS if per_worker is None else per_worker
    if per_worker <= 0:
        return max(1, cores)
    return max(1, min(cores, int(estimated_seconds / per_worker)))


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """while inside, SIGINT (Ctrl-C) and SIGTERM raise `RunInterrupted` in this (the main) thread,
    unless this process ignores them (as a shell's background job ignores SIGINT)

    Only the first signal is turned into `RunInterrupted`; the default handlers are back for a
    second one (a second Ctrl-C stops at once). Outside the main thread it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # a signal this process was started ignoring stays ignored (a background job of a script: the
    # shell ignores SIGINT there, so that a Ctrl-C meant for the foreground does not stop it)
    wanted = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) != signal.SIG_IGN]
    previous = {sig: signal.getsignal(sig) for sig in wanted}

    def handler(signum, frame):
        for sig in wanted:
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
        raise RunInterrupted(signum)

    for sig in wanted:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def prior_knows(funcs: FigureFuncs) -> bool:
    """whether the planner's prior cost holds for `funcs`: only the package's own figure functions

    Another function may cost 100x a built-in one (matplotlib: ~50 ms a head) or crash its process,
    so a run with one never stays in this process by default. (Running its first task here to time
    it was tried: an exception or a crash there escaped the recovery that workers get.)
    """
    return all(getattr(f, "__module__", None) == _BUILTIN_FIGURES for f in funcs.funcs)


_BUILTIN_FIGURES: str = "pattern_lens.attn_figure_funcs"


def render_prompts(
    prompts: Sequence[PromptWork],
    figure_funcs: Sequence[Callable],
    n_heads: int,
    layers: Sequence[int],
    heads: Sequence[int],
    *,
    force: bool = False,
    profile: str = "exact",
    n_jobs: int | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    desc: str = "",
    summary: RenderSummary | None = None,
    timeout: float | None = None,
    root: str | None = None,
    summaries: SummarySpec | None = None,
) -> RenderSummary:
    """render `layers` x `heads` of every prompt with every figure function, on all workers

    # Parameters:
     - `prompts : Sequence[PromptWork]` prompts whose `activations.npz` exists
     - `figure_funcs : Sequence[Callable]` figure functions, run in this order on each head
     - `n_heads : int` heads per layer in the activations (the model config's)
     - `layers : Sequence[int]`, `heads : Sequence[int]` what to render
     - `force : bool` redo outputs that exist (defaults to `False`)
     - `profile : str` export profile, `"exact"` or `"fast"`, set inside every task (defaults to `"exact"`)
     - `n_jobs`, `backend`, `scheduler`: see `parallel_session`
     - `progress : bool` show a tqdm bar over heads on stderr (defaults to `True`)
     - `desc : str` label of the bar (defaults to `""`)
     - `summary : RenderSummary | None` summary to add to (defaults to `None`: a new one)
     - `timeout : float | None` seconds one figure function may take on one head; longer is that
       function's failure there. Enforced with SIGALRM in process workers and sequential runs
       (POSIX), not on thread or dask workers (a warning says so) (defaults to `None`: no limit)
     - `root : str | None` the save path: no head folder leading outside it (through a symlink)
       is written to (defaults to `None`: not checked)
     - `summaries : SummarySpec | None` also summarise every head rendered: preview files and
       each prompt's `head_stats.json` (`pattern_lens._summaries.summaries`) (defaults to `None`: no)

    # Returns:
     - `RenderSummary`

    # Raises:
     - `FigureFuncTransferError` when a figure function cannot be sent to or loaded in a worker
     - `PatternLensError` for bad parallel settings or figure names that are not plain file names
     - `RunInterrupted` when SIGINT / SIGTERM arrive inside `stop_on_signals`
    """
    if profile not in EXPORT_PROFILES:  # check now, not in every worker
        raise PatternLensError(f"unknown export profile {profile!r}: expected one of {EXPORT_PROFILES}")
    funcs = FigureFuncs(figure_funcs)
    names = funcs.names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PatternLensError(f"figure functions with the same name would overwrite each other's files: {dupes}")
    check_output_names(funcs)
    if timeout is not None and not timeout > 0:
        raise PatternLensError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
    summary = summary if summary is not None else RenderSummary()
    summary.figure_funcs = names
    summary.profile = profile
    warm.register()
    with parallel_session(n_jobs, backend, scheduler, profiles=(profile,)) as session, contextlib.ExitStack() as stack:
        if not session.in_process:
            funcs.blob()  # fail now, with advice, if a function cannot travel to the workers
        planner = TaskPlanner(prompts, layers, heads, len(funcs), session.n_workers, profile)
        if session.local_processes and not has_work(
            [p.prompt_dir for p in prompts], layers, heads, funcs.funcs, summaries is not None, force
        ):
            session = session.as_sequential()  # a rerun with nothing to do: no worker (checked properly here)
        elif n_jobs is None and prior_knows(funcs) and session.local_processes:
            # the default's choice on a run of its own figures: as many workers as the estimate pays for
            wanted = default_workers(planner.remaining, session.n_workers, SMALL_RUN_SECONDS)
            if wanted < session.n_workers:
                session = session.with_workers(wanted)
                planner = TaskPlanner(prompts, layers, heads, len(funcs), session.n_workers, profile)
        tasks = (Task(funcs, force, profile, n_heads, tuple(items), est, timeout, root, summaries) for items, est in planner)
        stats_writer = (
            PromptStatsWriter(summaries, len(layers) * len(heads), on_error=lambda message: summary.add_input_error(message, 0))
            if summaries is not None else None
        )
        total: int = len(prompts) * len(layers) * len(heads)
        t0: float = time.perf_counter()
        summary.n_jobs = session.n_workers
        summary.backend = session.backend_name
        if timeout is not None and (session.backend_name in ("threading", "dask") or (
                session.in_process and threading.current_thread() is not threading.main_thread())):
            warnings.warn(f"timeout={timeout} is not enforced on {session.backend_name} workers (it needs "
                          "SIGALRM in a process's main thread)", stacklevel=2)
        jobs: Iterator[Task | InMemoryTask] = iter(tasks)
        read_here = [0.0]
        handover.remove_stale_spill_folders()  # layers in RAM that killed runs left behind
        if planner.split_parts >= handover.SHARE_MIN_BATCHES and session.local_processes:
            # a layer split into batches is read once, here, for all of them (`handover`)
            with contextlib.suppress(OSError):  # no folder for it: every batch reads the layer itself
                jobs = share_split_layers(tasks, spill_folder(stack), read_here)
                stack.callback(jobs.close)  # before the folder goes (callbacks run last in, first out)
        wait_prestarted()  # the pool the CLI started early: warm by now, or soon
        if session.in_process and timeout is not None:
            warm.warm_here((profile,))  # loading the kernels is not the first head's time limit to pay
        with ProgressBar(
            total=total, unit="head", desc=desc or None, disable=not progress, file=sys.stderr,
            dynamic_ncols=True, smoothing=0.1,
        ) as bar:
            try:
                with contextlib.closing(results_of(session, run_job, jobs, job_failed, split_job)) as results:
                    for res in results:
                        summary.merge(res)
                        if stats_writer is not None:
                            stats_writer.add(res)
                        if res.n_rendered:  # calibrate on rendered heads only: skipped ones cost ~nothing
                            planner.observe(res.task_estimate * res.n_rendered / max(1, res.n_heads), res.task_seconds)
                        bar.update(res.n_heads)
            finally:
                if stats_writer is not None:
                    stats_writer.close()  # each prompt's file once all its heads are back, atomically
                summary.elapsed += time.perf_counter() - t0
                summary.read_seconds += read_here[0]
    return summary
