"""streaming render: from a model and prompts straight to every head's figures, without `.npz` in between

`run_main` loads the model, runs the prompts through it in batches, and a hook hands each layer's
patterns (trimmed per prompt) to the render workers as soon as the layer is computed, while the
forward pass goes on with the next layer and the next batch. The forward pass runs in a thread of
its own (torch releases the GIL while it computes); this thread feeds the workers through
`recovery.results_of` (`backends.run_all`) with `worker.run_in_memory_task` (one task = one layer
of one prompt). A bounded queue between the two keeps memory at a few layers in flight: the forward
pass waits when the workers fall behind. The files are those `activations` -> `.npz` -> `render` writes, byte for byte
(the same arrays go through the same figure functions); `save_activations=True` also writes the
`.npz` as the layers go by.

Faults as in `render` (`pattern_lens._engine.run`): a task that raises or kills its worker is split
into heads and reported (`recovery.split_in_memory_task`); Ctrl-C / SIGTERM stop the forward pass
and the workers, write the index files and raise `RunInterrupted` with one line. The hand-over
folder (`pattern_lens._input.handover`) is named with the run's pid and host: a later run deletes
those of processes that are gone (a SIGKILLed run cannot delete its own).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pattern_lens._errors import RunInterrupted
from pattern_lens._progress import ProgressBar
from pattern_lens._layout import ACTIVATIONS_FILE, head_dir, layer_key, prompt_dir as _prompt_dir
from pattern_lens._engine.backends import parallel_session
from pattern_lens._input import handover
from pattern_lens._input.handover import save_layer, spill_folder
from pattern_lens._output.indexes import write_prompts_jsonl, write_run_indexes
from pattern_lens._input.inputs import check_layers, load_model_cfg, model_folder
from pattern_lens._output.outputs import list_head_dir, pending_funcs
from pattern_lens._engine.planner import PromptWork, TaskPlanner
from pattern_lens._engine.selection import select_figure_funcs
from pattern_lens._engine.recovery import in_memory_task_failed, results_of, split_in_memory_task
from pattern_lens._engine import warm
from pattern_lens._engine.run import SMALL_RUN_SECONDS, default_workers, prior_knows, stop_on_signals
from pattern_lens._summaries.stats import PREVIEW_SIZE
from pattern_lens._summaries.summaries import PromptStatsWriter, SummarySpec, indexed_funcs, summary_needed, summary_spec
from pattern_lens._summaries.summary import FailureStat, RenderSummary, TaskResult, interrupted_line  # noqa: F401 -- FailureStat: StreamSummary.__init__ annotations resolve here
from pattern_lens._engine.transfer import FigureFuncs
from pattern_lens._engine.worker import InMemoryTask, Task, run_in_memory_task
from pattern_lens.attn_figure_funcs import ATTENTION_MATRIX_FIGURE_FUNCS  # the registry: below the stages
from pattern_lens.consts import DATA_DIR
from pattern_lens.profile import EXPORT_PROFILES, export_profile

__all__ = ["StreamSummary", "run_main", "DEFAULT_BATCH_SIZE"]

if "torch" not in sys.modules:
    # torch's CPU build runs on GNU OpenMP, whose threads spin after each parallel region (its default
    # ACTIVE wait): on the cores `run` shares between the forward pass and the render workers, that
    # spinning took the workers' time (12 x 12 heads, 12 prompts of 200 tokens, 2 cores: whole run
    # 9.7 -> 6.7 s; the forward pass alone unchanged; benchmarks/README.md). OpenMP reads it when
    # torch loads it, so only before torch is imported; the user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_BATCH_SIZE: int = 8
"prompts per forward pass of `run` (a batch's layer is `batch x n_heads x n_ctx^2` floats inside the model)"

_DONE = object()


class _Stopped(Exception):
    """the render side stopped (an error): the forward thread stops handing layers over"""


@dataclass
class StreamSummary(RenderSummary):
    """a `RenderSummary` plus where the time went on the model side

    # Fields (besides `RenderSummary`'s):
     - `forward_seconds : float` forward passes, hooks excluded
     - `copy_out_seconds : float` trimming and copying layers out of the model's tensors
     - `npz_seconds : float` writing `.npz` members (`save_activations`)
     - `wait_seconds : float` the forward pass waiting for the workers (queue full)
     - `spill_seconds : float` writing layers to files for worker processes (in RAM where possible)
     - `forward_wall_seconds : float` from the first forward pass to the end of the last
     - `tail_seconds : float` rendering left after the last forward pass ended
     - `n_batches : int`
    """

    forward_seconds: float = 0.0
    copy_out_seconds: float = 0.0
    npz_seconds: float = 0.0
    wait_seconds: float = 0.0
    spill_seconds: float = 0.0
    forward_wall_seconds: float = 0.0
    tail_seconds: float = 0.0
    n_batches: int = 0

    def format_stages(self) -> str:
        """one line: time per stage"""
        return (
            f"forward {self.forward_seconds:.2f} s, copy out {self.copy_out_seconds:.2f} s, "
            f".npz {self.npz_seconds:.2f} s, hand-over files {self.spill_seconds:.2f} s, waiting for workers {self.wait_seconds:.2f} s, "
            f"render (workers' busy time) {self.busy_seconds:.2f} s; forward done after "
            f"{self.forward_wall_seconds:.2f} s, rendering went on {self.tail_seconds:.2f} s after it"
        )


def _heads_done(
    prompt_dir: Path, layers: Sequence[int], heads: Sequence[int], funcs: Sequence, spec: SummarySpec | None
) -> TaskResult | None:
    """the prompt's resumed result when every selected head is done (no forward pass needed), else `None`

    Its `head_stats` holds the rows that previews carry but the prompt's `head_stats.json` lacks.
    """
    res = TaskResult()
    for layer in layers:
        for h in heads:
            d = head_dir(prompt_dir, layer, h)
            listing = list_head_dir(d, clean_temp=False)
            if pending_funcs(funcs, d, listing, False) or summary_needed(spec, res, str(prompt_dir), layer, h, d, listing, False):
                return None
    res.heads_covered[str(prompt_dir)] = len(layers) * len(heads)
    return res


def run_main(
    model: Any,
    prompts_path: str | Path | None = None,
    save_path: str | Path = DATA_DIR,
    *,
    raw_prompts: bool = False,
    min_chars: int | None = None,
    max_chars: int | None = None,
    shuffle: bool = False,
    n_samples: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: Any = None,
    figure_funcs_select: Any = None,
    force: bool = False,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    profile: str | None = None,
    n_jobs: int | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
    save_activations: bool = False,
    compress_level: int = 6,
    max_queued_layers: int | None = None,
    timeout: float | None = None,
    progress: bool = True,
    verbose: bool = True,
    summaries: bool = True,
    summaries_only: bool = False,
    preview_size: int = PREVIEW_SIZE,
) -> StreamSummary:
    """run a model on prompts and render every selected head as each layer is computed

    The render workers share the cores with the forward pass: importing this module before torch
    sets `OMP_WAIT_POLICY=PASSIVE` for the process (unless set), so that torch's idle threads sleep
    instead of spinning; a process that imported torch first keeps its own setting.

    # Parameters:
     - `model : str | object` hub name, local `save_pretrained` folder, or a loaded model
       (TransformerLens-style, or from `pattern_lens._model.load.load_model`)
     - `prompts_path : str | Path | None` jsonl of `{"text": ...}` (defaults to `None`: the model
       folder's `prompts.jsonl`, else the prompts shipped with the package)
     - `save_path : str | Path` root folder (defaults to `DATA_DIR`)
     - `raw_prompts`, `min_chars`, `max_chars`, `shuffle`, `n_samples`: as `activations_main`
     - `batch_size : int` prompts per forward pass, longest first (defaults to `DEFAULT_BATCH_SIZE`)
     - `device : str | torch.device | None` (defaults to `None`: cuda when available, else cpu)
     - `figure_funcs_select`, `force`, `layers`, `heads`, `profile`, `n_jobs`, `backend`,
       `scheduler`, `progress`: as `figures_main`
     - `save_activations : bool` also write each prompt's `activations.npz` (defaults to `False`)
     - `compress_level : int` deflate level of those files, 0-9 (defaults to `6`, the reference's)
     - `max_queued_layers : int | None` layers computed but not yet handed to a worker before the
       forward pass waits (defaults to `None`: the number of workers, at least 2)
     - `timeout : float | None` seconds one figure function may take on one head (defaults to `None`: no limit)
     - `verbose : bool` print what is loaded and the summary (defaults to `True`)
     - `summaries`, `summaries_only`, `preview_size`: the head summaries, as `figures_main`
       (defaults to `True`, `False`, `PREVIEW_SIZE`)

    # Returns:
     - `StreamSummary` (`.ok` when every head rendered and no input was bad)

    # Raises:
     - `ModelLoadError` naming the model when it cannot be loaded; `PromptsFileError` when the
       prompts file cannot be read at all; `InputError` for a layer / head selection out of range;
       `FigureFuncTransferError`, `PatternLensError` as `figures_main`. A bad prompt does not raise:
       it is reported in the summary and the others are rendered.
    """
    from pattern_lens._model.load import require_model_extra

    require_model_extra("pattern-lens run", transformers=isinstance(model, (str, Path)))  # before torch is imported
    from pattern_lens._model.compute import StageTimes, make_batches, prepare_prompts, run_batch
    from pattern_lens._model.front_door import prompts_before_model
    from pattern_lens._model.load import load_model, model_display_name
    from pattern_lens._model.npz_writer import NpzWriter
    from pattern_lens._model.offline import quiet_model_loading
    from pattern_lens._model.setup import write_model_cfg, write_prompt_json

    profile = profile if profile is not None else export_profile()
    if profile not in EXPORT_PROFILES:
        from pattern_lens._errors import PatternLensError

        raise PatternLensError(f"unknown export profile {profile!r}: expected one of {EXPORT_PROFILES}")
    save_path = Path(save_path)
    # the prompts before the model (a missing file, or no prompt left by the cut, is said at once)
    given = load_model(model, device=device) if not isinstance(model, (str, Path)) else None
    entries, line_errors, source = prompts_before_model(
        prompts_path, save_path, given.model_name if given is not None else model_display_name(str(model)),
        raw_prompts, min_chars, max_chars, shuffle, n_samples, verbose,
    )
    with quiet_model_loading(not verbose):
        pm = given if given is not None else load_model(model, device=device)
    model_dir = model_folder(save_path, pm.model_name)
    cfg_path = write_model_cfg(model_dir, pm)
    layer_sel = check_layers(layers, pm.n_layers, "layer", cfg_path)
    head_sel = check_layers(heads, pm.n_heads, "head", cfg_path)
    funcs = [] if summaries_only else select_figure_funcs(figure_funcs_select, ATTENTION_MATRIX_FIGURE_FUNCS)
    # from the config file as written, so that `render` of the same folder decides the same way
    spec = summary_spec(load_model_cfg(model_dir), preview_size) if summaries or summaries_only else None
    listed = indexed_funcs(funcs, spec)
    bundle = FigureFuncs(funcs)
    heads_per_prompt = len(layer_sel) * len(head_sel)

    summary = StreamSummary(
        model_name=model_dir.name, n_prompts=len(entries) + len(line_errors),
        n_layers=len(layer_sel), n_heads_per_layer=len(head_sel),
        figure_funcs=bundle.names, profile=profile,
    )
    for msg in line_errors:
        summary.add_input_error(msg, heads_per_prompt)
        summary.n_heads += heads_per_prompt
    prepared, prompt_errors = prepare_prompts(pm, entries)
    for msg in prompt_errors:
        summary.add_input_error(msg, heads_per_prompt)
        summary.n_heads += heads_per_prompt
    dirs = {id(p): _prompt_dir(model_dir, p.prompt["hash"]) for p in prepared}
    for p in prepared:
        write_prompt_json(dirs[id(p)], p.prompt)
    write_prompts_jsonl(model_dir, order=[p.prompt["hash"] for p in prepared])  # input order, kept by the final index
    stats_writer = (
        PromptStatsWriter(spec, heads_per_prompt, on_error=lambda message: summary.add_input_error(message, 0))
        if spec is not None else None
    )
    if not force:  # resume: a prompt whose figures and summaries all exist needs no forward pass
        todo = []
        for p in prepared:
            d = dirs[id(p)]
            done = _heads_done(d, layer_sel, head_sel, funcs, spec)
            if done is not None and (not save_activations or (d / ACTIVATIONS_FILE).exists()):
                summary.n_heads += heads_per_prompt
                summary.n_skipped += heads_per_prompt
                if stats_writer is not None:
                    stats_writer.add(done)  # rows only the previews held go into the prompt's file
            else:
                todo.append(p)
        prepared = todo
    if verbose:
        print(
            f"{pm.model_name}: {summary.n_prompts} prompts from {source}, {len(prepared)} to run, "
            f"{len(layer_sel)} layers x {len(head_sel)} heads, {len(funcs)} figure functions -> {model_dir}"
        )

    run_layers = list(range(pm.n_layers)) if save_activations else layer_sel
    render_layers = set(layer_sel)
    times = StageTimes()
    planner_prior = TaskPlanner([], layer_sel, head_sel, len(funcs), 1, profile)
    failures: list[BaseException] = []
    batch_errors: list[tuple[str, int]] = []  # filled by the forward thread, read after it ended

    try:
        handover.remove_stale_spill_folders()  # layers in RAM that killed runs left behind
        with contextlib.ExitStack() as stack:
            stack.enter_context(stop_on_signals())  # Ctrl-C / SIGTERM: RunInterrupted, handled below
            warm.register()  # workers from a forkserver: this process holds torch (`pattern_lens._engine.warm`)
            session = stack.enter_context(parallel_session(n_jobs, backend, scheduler, profiles=(profile,)))
            if not session.in_process:
                bundle.blob()  # fail now, with advice, if a function cannot travel to the workers
            total_estimate = sum(planner_prior.layer_estimate(PromptWork("", p.seq_len)) for p in prepared) * len(layer_sel)
            if n_jobs is None and prior_knows(bundle) and session.local_processes:
                # as render_prompts: as many workers as the estimate pays for
                session = session.with_workers(default_workers(total_estimate, session.n_workers, SMALL_RUN_SECONDS))
            summary.n_jobs = session.n_workers
            summary.backend = session.backend_name
            # worker processes on this machine get each layer as a file in RAM (/dev/shm where there is
            # one) that they memory-map, deleted when its result is back, so only the layers in flight take
            # space; threads get the array itself, and a dask cluster the array by value
            spill_dir = spill_folder(stack) if session.local_processes else None
            handoff: queue.Queue = queue.Queue(maxsize=max_queued_layers or max(2, session.n_workers))
            t0 = time.perf_counter()
            forward_end = [t0]

            stop = threading.Event()  # set when the consumer gives up (an error, Ctrl-C): the forward thread ends

            def put(item: Any) -> None:
                tw = time.perf_counter()
                while True:
                    if stop.is_set():  # not one more layer once the render side has stopped
                        raise _Stopped
                    try:
                        handoff.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        if stop.is_set():
                            raise _Stopped from None
                summary.wait_seconds += time.perf_counter() - tw

            def produce() -> None:
                try:
                    for batch in make_batches(prepared, batch_size):
                        writers = (
                            {id(p): NpzWriter(dirs[id(p)] / ACTIVATIONS_FILE, compress_level) for p in batch}
                            if save_activations
                            else {}
                        )

                        def sink(p: Any, layer: int, arr: np.ndarray) -> None:
                            if writers:
                                tn = time.perf_counter()
                                writers[id(p)].add(layer_key(layer), arr[None])
                                summary.npz_seconds += time.perf_counter() - tn
                            if layer in render_layers:
                                d = str(dirs[id(p)])
                                est = planner_prior.layer_estimate(PromptWork(d, p.seq_len))
                                task = Task(
                                    bundle, force, profile, pm.n_heads, ((d, layer, tuple(head_sel)),), est,
                                    timeout=timeout, root=str(Path(save_path).resolve()), summaries=spec,
                                )
                                handed: np.ndarray | str = arr
                                if spill_dir is not None:  # worker processes: a file they map, deleted when the result is back
                                    ts = time.perf_counter()
                                    handed = save_layer(spill_dir, arr)
                                    summary.spill_seconds += time.perf_counter() - ts
                                put(InMemoryTask(task, (handed,)))

                        try:
                            run_batch(pm, batch, run_layers, sink, times)
                        except Exception as e:  # noqa: BLE001 -- a failed batch costs its prompts, not the run
                            for w in writers.values():
                                w.abort()  # no partial .npz
                            if isinstance(e, _Stopped):
                                return
                            names = ", ".join(p.where for p in batch)
                            batch_errors.append(
                                (f"forward pass failed for {names}: {type(e).__name__}: {e}", heads_per_prompt * len(batch))
                            )
                        else:
                            for w in writers.values():
                                w.close()
                except BaseException as e:  # noqa: BLE001 -- re-raised in the calling thread
                    failures.append(e)
                finally:
                    forward_end[0] = time.perf_counter()
                    try:
                        put(_DONE)
                    except _Stopped:
                        pass

            producer = threading.Thread(target=produce, name="pattern_lens-forward", daemon=True)
            total = summary.n_heads + len(prepared) * heads_per_prompt
            with ProgressBar(
                total=total, initial=summary.n_heads, unit="head", desc=model_dir.name, disable=not progress,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
            ) as bar:
                tasks = iter(handoff.get, _DONE)
                try:
                    producer.start()
                    # as render's: a task that raises or kills its worker is split into heads and reported
                    results = results_of(session, run_in_memory_task, tasks, in_memory_task_failed, split_in_memory_task)
                    with contextlib.closing(results):  # stopped early: joblib aborts and stops its workers now
                        for res in results:
                            summary.merge(res)
                            if stats_writer is not None:
                                stats_writer.add(res)
                            bar.update(res.n_heads)
                finally:
                    stop.set()
                    producer.join()
                    if stats_writer is not None:
                        stats_writer.close()  # each prompt's file once all its heads are back, atomically
            t_end = time.perf_counter()
            summary.elapsed += t_end - t0
            summary.forward_wall_seconds = forward_end[0] - t0
            summary.tail_seconds = max(0.0, t_end - forward_end[0])
    except RunInterrupted as e:  # the forward pass and the workers are stopped: what was done stays indexed
        write_run_indexes(save_path, model_dir, listed, summary, ATTENTION_MATRIX_FIGURE_FUNCS)
        line = interrupted_line(e.signum, summary, summary.n_prompts * heads_per_prompt)
        raise RunInterrupted(e.signum, line) from None
    if failures:
        raise failures[0]
    for msg, n in batch_errors:
        summary.add_input_error(msg, n)
        summary.n_heads += n
    summary.forward_seconds = times.forward
    summary.copy_out_seconds = times.copy_out
    summary.n_batches = times.n_batches

    write_run_indexes(save_path, model_dir, listed, summary, ATTENTION_MATRIX_FIGURE_FUNCS)
    if verbose:
        print(summary.format())
    return summary
