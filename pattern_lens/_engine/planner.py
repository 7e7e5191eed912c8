"""the work of a run cut into tasks: whole layers, or batches of heads when layers are too few

The work is cut into tasks of whole layers (several layers, possibly of several prompts, when they
are small) or, only when there are fewer layers than twice the workers (one prompt on many cores),
batches of heads of one layer, at most one per worker: each batch reads (inflates) the whole layer,
which with the fast profile costs more than rendering it, so layers are split only to keep cores
busy, and each worker reads a split layer once.
A task's size comes from an estimate of its seconds: per head and function `a + b * n_ctx**2` (per
export profile), scaled by what the finished tasks actually took, so slow user figure functions
(matplotlib) get small tasks and fast ones big enough tasks. The aim is about `TASKS_PER_WORKER`
tasks per worker over the run (shrinking towards the end, for balance), each between
`MIN_TASK_SECONDS` (so joblib's per-task cost, about a millisecond, stays near 2%) and
`MAX_TASK_SECONDS` (a moving progress bar).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "PromptWork",
    "Item",
    "TaskPlanner",
    "HEAD_SECONDS",
    "MIN_TASK_SECONDS",
    "MAX_TASK_SECONDS",
    "TASKS_PER_WORKER",
]

HEAD_SECONDS: dict[str, tuple[float, float]] = {
    "exact": (3.5e-4, 6.5e-8),
    "fast": (3.3e-4, 7.5e-9),
}
"""prior cost of one figure on one head, `(a, b)` in `a + b * n_ctx**2` seconds, per export profile:
the default `raw` on one core takes 0.7 ms at n_ctx 64 and 14 ms at 512 exact, 0.35 and 1.0 ms fast,
plus about 4.5e-9 s per value to read and inflate a compressed `.npz` layer with libdeflate. The
planner corrects it with the measured time of finished tasks (a matplotlib figure costs ~100x)."""

MIN_TASK_SECONDS: float = 0.05
"smallest task aimed for: joblib's per-task cost (~1 ms) stays near 2% of it"

MAX_TASK_SECONDS: float = 1.5
"largest task aimed for: the progress bar moves and the load stays balanced on big runs"

TASKS_PER_WORKER: int = 4
"tasks aimed for per worker, so a slow task at the end does not leave the others idle for long"


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
        # head batches per layer: >1 only when whole layers cannot keep every worker busy, and no more
        # than the workers a layer gets (a batch reads the whole layer: one read per worker)
        self.split_parts: int = (
            min(len(self.heads), math.ceil(self.n_workers / n_layer_items))
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
