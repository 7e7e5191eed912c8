"""render every selected head of a model's prompts on every core

The work is cut into tasks of whole layers (several layers, possibly of several prompts, when they
are small) or, only when there are fewer layers than twice the workers (one prompt on many cores),
batches of heads of one layer: every batch inflates the whole layer from the `.npz` again, which
costs as much as rendering it with the fast profile, so layers are split only to keep cores busy.
A task's size comes from an estimate of its seconds: per head and function `a + b * n_ctx**2` (per
export profile), scaled by what the finished tasks actually took, so slow user figure functions
(matplotlib) get small tasks and fast ones big enough tasks. The aim is about `TASKS_PER_WORKER`
tasks per worker over the run (shrinking towards the end, for balance), each between
`MIN_TASK_SECONDS` (so joblib's per-task cost, about a millisecond, stays near 2%) and
`MAX_TASK_SECONDS` (a moving progress bar).

A task carries only paths and indices. The worker lists each head folder once, skips heads whose
outputs all exist, and reads a layer from the `.npz` only when one of its heads has work left: a
worker holds one layer at a time, the parent none.

joblib does the fan-out: `n_jobs` and `backend` are parameters, and when not given the ambient
`joblib.parallel_config` decides (default: loky processes on all cores). `backend="dask"` with a
scheduler address runs the same tasks on a dask.distributed cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
from joblib.parallel import get_active_backend
from tqdm import tqdm

from pattern_lens._activations import ActivationsError, ActivationsFile, layer_key, nonfinite_heads
from pattern_lens._errors import InputError, PatternLensError
from pattern_lens._outputs import ERROR_SUFFIX, head_dir, list_head_dir, pending_funcs, run_figure_funcs
from pattern_lens._summary import RenderSummary, TaskResult
from pattern_lens._system import peak_rss_bytes
from pattern_lens._transfer import FigureFuncs
from pattern_lens.profile import EXPORT_PROFILES, export_profile

__all__ = [
    "PromptWork",
    "TaskPlanner",
    "ParallelSession",
    "parallel_session",
    "render_prompts",
    "check_layers",
    "HEAD_SECONDS",
    "MIN_TASK_SECONDS",
    "MAX_TASK_SECONDS",
    "TASKS_PER_WORKER",
]

HEAD_SECONDS: dict[str, tuple[float, float]] = {
    "exact": (3.5e-4, 7.3e-8),
    "fast": (3.3e-4, 1.6e-8),
}
"""prior cost of one figure on one head, `(a, b)` in `a + b * n_ctx**2` seconds, per export profile:
the default `raw` on one core takes 0.7 ms at n_ctx 64 and 14 ms at 512 exact, 0.35 and 1.0 ms fast,
plus about 1.3e-8 s per value to inflate a compressed `.npz` layer. The planner corrects it with the
measured time of finished tasks."""

MIN_TASK_SECONDS: float = 0.05
"smallest task aimed for: joblib's per-task cost (~1 ms) stays near 2% of it"

MAX_TASK_SECONDS: float = 1.5
"largest task aimed for: the progress bar moves and the load stays balanced on big runs"

TASKS_PER_WORKER: int = 4
"tasks aimed for per worker, so a slow task at the end does not leave the others idle for long"


# ---------------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True)
class PromptWork:
    """one prompt to render

    # Fields:
     - `prompt_dir : str` the `prompts/<hash>` folder (holds `activations.npz`, gets `L*/H*/`)
     - `n_ctx : int` context length, for sizing tasks only
    """

    prompt_dir: str
    n_ctx: int


Item = tuple[str, int, tuple[int, ...]]
"(prompt_dir, layer, heads): the unit a task is made of"


def _split(seq: Sequence[int], n_parts: int) -> list[tuple[int, ...]]:
    size, extra = divmod(len(seq), n_parts)
    out: list[tuple[int, ...]] = []
    start = 0
    for i in range(n_parts):
        stop = start + size + (1 if i < extra else 0)
        out.append(tuple(seq[start:stop]))
        start = stop
    return [p for p in out if p]


class TaskPlanner:
    """cuts the work into tasks lazily, sizing each from the estimate corrected so far

    # Parameters:
     - `prompts : Sequence[PromptWork]`
     - `layers : Sequence[int]`, `heads : Sequence[int]` layer and head indices to render
     - `n_funcs : int` figure functions per head
     - `n_workers : int` workers that will run the tasks (>= 1)
     - `profile : str` export profile, picks the prior in `HEAD_SECONDS` (defaults to `"exact"`)

    Iterating yields `(items, estimated_seconds)`; `observe(estimated, measured)` feeds back a
    finished task's time. joblib pulls tasks only a few ahead of the workers, so feedback from the
    first tasks sizes the later ones.
    """

    def __init__(
        self,
        prompts: Sequence[PromptWork],
        layers: Sequence[int],
        heads: Sequence[int],
        n_funcs: int,
        n_workers: int,
        profile: str = "exact",
    ) -> None:
        self.prompts = list(prompts)
        self.layers = list(layers)
        self.heads = tuple(heads)
        self.n_funcs = max(1, n_funcs)
        self.n_workers = max(1, n_workers)
        self.a, self.b = HEAD_SECONDS.get(profile, HEAD_SECONDS["exact"])
        self.remaining: float = sum(self.layer_estimate(p) for p in self.prompts) * len(self.layers)
        n_layer_items: int = len(self.prompts) * len(self.layers)
        # head batches per layer: >1 only when whole layers cannot keep every worker busy
        self.split_parts: int = (
            min(len(self.heads), math.ceil(2 * self.n_workers / n_layer_items))
            if 0 < n_layer_items < 2 * self.n_workers
            else 1
        )
        self._est_done: float = 0.0
        self._measured_done: float = 0.0

    def layer_estimate(self, prompt: PromptWork) -> float:
        """prior seconds for one layer of `prompt` (every selected head and function)"""
        return self.n_funcs * len(self.heads) * (self.a + self.b * prompt.n_ctx * prompt.n_ctx)

    @property
    def scale(self) -> float:
        """measured / estimated seconds of the finished tasks (1 until there are some)"""
        if self._est_done <= 0 or self._measured_done <= 0:
            return 1.0
        return min(max(self._measured_done / self._est_done, 1e-3), 1e4)

    def observe(self, estimated: float, measured: float) -> None:
        """record that a task estimated at `estimated` seconds took `measured`"""
        self._est_done += estimated
        self._measured_done += measured

    def _target(self) -> float:
        """the next task's size, in prior (unscaled) seconds"""
        scale = self.scale
        seconds = self.remaining * scale / (TASKS_PER_WORKER * self.n_workers)
        return min(max(seconds, MIN_TASK_SECONDS), MAX_TASK_SECONDS) / scale

    def __iter__(self) -> Iterator[tuple[list[Item], float]]:
        current: list[Item] = []
        current_est = 0.0
        for p in self.prompts:
            layer_est = self.layer_estimate(p)
            for layer in self.layers:
                if self.split_parts > 1:
                    for part in _split(self.heads, self.split_parts):
                        est = layer_est * len(part) / len(self.heads)
                        self.remaining -= est
                        yield [(p.prompt_dir, layer, part)], est
                    continue
                target = self._target()
                current.append((p.prompt_dir, layer, self.heads))
                current_est += layer_est
                self.remaining -= layer_est
                if current_est >= target:
                    yield current, current_est
                    current, current_est = [], 0.0
        if current:
            yield current, current_est


# ---------------------------------------------------------------------------------------------------
# the task a worker runs


@dataclass(frozen=True)
class _Task:
    funcs: FigureFuncs
    force: bool
    profile: str
    n_heads: int
    items: tuple[Item, ...]
    estimate: float


def _render_item(
    task: _Task,
    prompt_dir: str,
    layer: int,
    heads: tuple[int, ...],
    acts_cache: dict[str, ActivationsFile | ActivationsError],
    res: TaskResult,
) -> None:
    res.n_heads += len(heads)
    todo: list[tuple[int, Path, set[str], list[Callable]]] = []
    for h in heads:
        d: Path = head_dir(prompt_dir, layer, h)
        try:
            listing: set[str] = list_head_dir(d)
        except OSError as e:  # e.g. permissions: this head is lost, not the run
            res.add_input_error(f"{d}: cannot list the head folder ({type(e).__name__}: {e})", 1)
            continue
        funcs = pending_funcs(task.funcs, d, listing, task.force)
        if funcs:
            todo.append((h, d, listing, funcs))
        else:
            res.n_skipped += 1
    if not todo:
        return  # resumed: nothing to do here, and the layer is never read

    # one open archive per prompt and task (items arrive grouped by prompt)
    acts = acts_cache.get(prompt_dir)
    if acts is None:
        for old in acts_cache.values():
            if isinstance(old, ActivationsFile):
                old.close()
        acts_cache.clear()
        try:
            acts = ActivationsFile(Path(prompt_dir) / "activations.npz", n_heads=task.n_heads)
        except ActivationsError as e:
            acts = e
        acts_cache[prompt_dir] = acts
    if isinstance(acts, ActivationsError):
        res.add_input_error(str(acts), len(todo))
        return
    try:
        patterns = acts.read_layer(layer)
    except ActivationsError as e:
        res.add_input_error(str(e), len(todo))
        return
    bad: dict[int, int] = nonfinite_heads(patterns)

    for h, d, listing, funcs in todo:
        if h in bad:
            res.add_input_error(
                f"{acts.path}: key {layer_key(layer)!r} head {h} has {bad[h]} non-finite values "
                "(NaN or inf); expected finite attention patterns",
                1,
            )
            continue
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            res.add_input_error(f"{d}: cannot create the head folder ({type(e).__name__}: {e})", 1)
            continue
        status = run_figure_funcs(patterns[h], d, funcs, listing, force_overwrite=task.force)
        res.n_rendered += 1
        for name, st in status.items():
            if st is True:
                res.n_outputs += 1
            else:
                res.add_failure(name, f"{type(st).__name__}: {st}", str(d / f"{name}{ERROR_SUFFIX}"))


def _run_task(task: _Task) -> TaskResult:
    """render the heads of one task; runs in a worker (module-level so it pickles by reference)"""
    t0 = time.perf_counter()
    res = TaskResult(task_estimate=task.estimate)
    acts_cache: dict[str, ActivationsFile | ActivationsError] = {}
    # worker processes start with the default export profile: set the run's one for this task
    with export_profile(task.profile):
        try:
            for prompt_dir, layer, heads in task.items:
                _render_item(task, prompt_dir, layer, heads, acts_cache, res)
        finally:
            for acts in acts_cache.values():
                if isinstance(acts, ActivationsFile):
                    acts.close()
    res.peak_rss = peak_rss_bytes()
    res.task_seconds = time.perf_counter() - t0
    return res


# ---------------------------------------------------------------------------------------------------
# backends


@dataclass(frozen=True)
class ParallelSession:
    """the resolved parallel settings of a run

    # Fields:
     - `n_jobs : int` what is passed to `joblib.Parallel`
     - `n_workers : int` workers that will actually run tasks (`joblib.effective_n_jobs`)
     - `backend_name : str` e.g. `"loky"`, `"threading"`, `"dask"`
     - `in_process : bool` tasks run in this process (threads or sequential): nothing is pickled
     - `supports_generator : bool` the backend can hand back results as they complete
    """

    n_jobs: int
    n_workers: int
    backend_name: str
    in_process: bool
    supports_generator: bool


_BACKEND_NAMES: dict[str, str] = {
    "SequentialBackend": "sequential",
    "ThreadingBackend": "threading",
    "LokyBackend": "loky",
    "MultiprocessingBackend": "multiprocessing",
    "DaskDistributedBackend": "dask",
}


@contextlib.contextmanager
def _dask_client(scheduler: str | None) -> Iterator[None]:
    try:
        import distributed
    except ImportError as e:
        raise PatternLensError(
            "backend 'dask' needs dask.distributed: pip install 'pattern_lens[dask]'"
        ) from e
    if scheduler is None:
        try:
            distributed.get_client()
        except ValueError:
            raise PatternLensError(
                "backend 'dask' needs a scheduler address (--scheduler tcp://HOST:8786, as printed by "
                "`dask scheduler`) or a distributed.Client already created in this process"
            ) from None
        yield
        return
    try:
        client = distributed.Client(scheduler, timeout="30s", set_as_default=True)
    except (OSError, TimeoutError) as e:
        raise PatternLensError(f"cannot connect to the dask scheduler at {scheduler!r}: {e}") from e
    try:
        yield
    finally:
        client.close()


@contextlib.contextmanager
def parallel_session(
    n_jobs: int | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
) -> Iterator[ParallelSession]:
    """enter the joblib configuration a run uses and say what it resolved to

    # Parameters:
     - `n_jobs : int | None`
       workers; `-1` all cores; `None`: the ambient `joblib.parallel_config`'s `n_jobs`, else `-1`
       (defaults to `None`)
     - `backend : str | None`
       a joblib backend name (`"loky"`, `"threading"`, `"multiprocessing"`, `"dask"`, or any
       registered one); `None`: the ambient `joblib.parallel_config`'s, else loky
       (defaults to `None`)
     - `scheduler : str | None`
       dask scheduler address, only with `backend="dask"`; a `distributed.Client` is opened for the
       run and closed after it
       (defaults to `None`)

    # Yields:
     - `ParallelSession`
    """
    if scheduler is not None and backend != "dask":
        raise PatternLensError(f"a scheduler address ({scheduler!r}) needs backend 'dask', not {backend!r}")
    with contextlib.ExitStack() as stack:
        if backend == "dask":
            stack.enter_context(_dask_client(scheduler))
        if backend is not None:
            try:
                stack.enter_context(joblib.parallel_config(backend=backend))
            except ValueError as e:
                raise PatternLensError(f"unknown joblib backend {backend!r}: {e}") from e
        backend_obj, config_n_jobs = get_active_backend()
        if n_jobs is None:
            n_jobs = config_n_jobs if config_n_jobs is not None else -1
        n_jobs = int(n_jobs)
        if n_jobs == 0:
            raise PatternLensError("n_jobs must be a positive number of workers or negative (-1: all cores), not 0")
        n_workers: int = max(1, int(joblib.effective_n_jobs(n_jobs)))
        name: str = _BACKEND_NAMES.get(type(backend_obj).__name__, type(backend_obj).__name__)
        is_dask: bool = name == "dask"
        in_process: bool = bool(getattr(backend_obj, "uses_threads", False)) or (n_workers == 1 and not is_dask)
        if n_workers == 1 and not is_dask:
            name = "sequential"
        yield ParallelSession(
            n_jobs=n_jobs,
            n_workers=n_workers,
            backend_name=name,
            in_process=in_process,
            supports_generator=bool(getattr(backend_obj, "supports_return_generator", False)),
        )


# ---------------------------------------------------------------------------------------------------
# running


def _results(session: ParallelSession, tasks: Iterator[_Task]) -> Iterator[TaskResult]:
    if session.backend_name == "sequential":  # one worker: run here, no joblib round trip
        for t in tasks:
            yield _run_task(t)
        return
    if session.supports_generator:
        parallel = joblib.Parallel(n_jobs=session.n_jobs, batch_size=1, return_as="generator_unordered")
        yield from parallel(joblib.delayed(_run_task)(t) for t in tasks)
        return
    # backends without result streaming (e.g. "multiprocessing"): waves of a few tasks per worker
    wave_size: int = 2 * session.n_workers
    with joblib.Parallel(n_jobs=session.n_jobs, batch_size=1) as parallel:  # one pool for every wave
        while wave := list(itertools.islice(tasks, wave_size)):
            yield from parallel(joblib.delayed(_run_task)(t) for t in wave)


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

    # Returns:
     - `RenderSummary`

    # Raises:
     - `FigureFuncTransferError` when a figure function cannot be sent to or loaded in a worker
     - `PatternLensError` for bad parallel settings
    """
    if profile not in EXPORT_PROFILES:  # check now, not in every worker
        raise PatternLensError(f"unknown export profile {profile!r}: expected one of {EXPORT_PROFILES}")
    funcs = FigureFuncs(figure_funcs)
    names = funcs.names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PatternLensError(f"figure functions with the same name would overwrite each other's files: {dupes}")
    summary = summary if summary is not None else RenderSummary()
    summary.figure_funcs = names
    summary.profile = profile
    with parallel_session(n_jobs, backend, scheduler) as session:
        if not session.in_process:
            funcs.blob()  # fail now, with advice, if a function cannot travel to the workers
        planner = TaskPlanner(prompts, layers, heads, len(funcs), session.n_workers, profile)
        if planner.remaining < MIN_TASK_SECONDS and not session.in_process and session.backend_name != "dask":
            # one small task: starting worker processes (~0.5 s) would cost more than it saves
            session = dataclasses.replace(session, n_workers=1, backend_name="sequential", in_process=True)
        summary.n_jobs = session.n_workers
        summary.backend = session.backend_name
        tasks = (_Task(funcs, force, profile, n_heads, tuple(items), est) for items, est in planner)
        total: int = len(prompts) * len(layers) * len(heads)
        t0: float = time.perf_counter()
        with tqdm(
            total=total, unit="head", desc=desc or None, disable=not progress, file=sys.stderr,
            dynamic_ncols=True, smoothing=0.1,
        ) as bar:
            for res in _results(session, tasks):
                summary.merge(res)
                if res.n_rendered:  # calibrate on rendered heads only: skipped ones cost ~nothing
                    planner.observe(res.task_estimate * res.n_rendered / max(1, res.n_heads), res.task_seconds)
                bar.update(res.n_heads)
        summary.elapsed += time.perf_counter() - t0
    return summary


def check_layers(selection: Sequence[int] | None, n: int, what: str, source: Path) -> list[int]:
    """validate a layer or head selection against the model config

    # Parameters:
     - `selection : Sequence[int] | None` indices, `None` for all of `range(n)`
     - `n : int` how many the model has
     - `what : str` `"layer"` or `"head"`, for the message
     - `source : Path` the model config, for the message

    # Returns:
     - `list[int]` sorted, without duplicates

    # Raises:
     - `InputError` for an index outside `0..n-1`
    """
    if selection is None:
        return list(range(n))
    out = sorted(set(int(i) for i in selection))
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise InputError(f"{what} {bad} out of range: {source} has {n} {what}s (0..{n - 1})")
    return out
