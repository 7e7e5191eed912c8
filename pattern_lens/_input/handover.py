"""handing layers to worker processes as files in RAM: streamed layers (`run`), and split layers read once

A layer reaches a worker process as a `.npy` file in the run's hand-over folder (in /dev/shm, which
is RAM, where there is one), which the worker memory-maps (`worker.run_in_memory_task`) and the
run deletes when the task's result is back (`recovery.release_handover`: a result lost with a pool
that died leaves the file for the task's rerun); only the layers in flight take space.

- `pattern-lens run` hands over every layer the forward pass computes (`pattern_lens._engine.stream`).
- `render` hands over the layers the planner splits into `SHARE_MIN_BATCHES` or more batches of
  heads (one prompt on many cores, or one long-context layer): `share_split_layers` reads such a
  layer once, here, in a
  thread (libdeflate releases the GIL) a layer or two ahead of the workers, and gives each batch a
  hard link of its own to the same file. Before, every batch inflated the whole layer again: one
  read per batch, and a copy of the layer in every worker's memory; now one read, and one copy in
  RAM that the workers' mappings share (up to `LOOKAHEAD` + 1 layers at a time). joblib asks for the
  next batch from its own thread as workers free up; a batch whose layer is still being read waits
  there for it. A stored (`np.savez`) member is left to the workers, which
  map their own heads' pages of it. A layer that cannot be read here, or a folder that cannot hold
  it (after which no more layers are read here), leaves its batches as they were: the workers read
  the layer themselves and report what is wrong with it as before.

The folder is `pattern_lens_layers_<pid>@<host>_<random>`, removed when the run ends; a SIGKILLed
run cannot remove its own, so every `render` and `run` first deletes those of processes that are
gone (`remove_stale_spill_folders`).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pattern_lens._layout import ACTIVATIONS_FILE, PREVIEW_FILE, head_dir, this_host
from pattern_lens._output.atomic import STALE_TEMP_SECONDS, owner_gone
from pattern_lens._input.npz import ActivationsFile
from pattern_lens._output.outputs import is_complete, list_head_dir
from pattern_lens._engine.worker import InMemoryTask, Task

__all__ = [
    "SPILL_PREFIX",
    "spill_root",
    "spill_folder",
    "remove_stale_spill_folders",
    "save_layer",
    "share_split_layers",
    "SHARE_MIN_BATCHES",
]

SPILL_PREFIX: str = "pattern_lens_layers_"
"start of a run's hand-over folder's name: `pattern_lens_layers_<pid>@<host>_<random>`"

_SPILL_OWNER: re.Pattern = re.compile(rf"^{SPILL_PREFIX}(\d+)@([A-Za-z0-9-]*)_")

LOOKAHEAD: int = 2
"split layers read ahead of the batch being handed out: one being rendered while the next is read"

SHARE_MIN_BATCHES: int = 3
"""the fewest batches of a layer that `render` reads once for all of them (`run.render_prompts`).
Reading here costs a write into /dev/shm and makes the workers wait for the read, where batches
reading the layer themselves read it at the same time: measured on 2 cores (one layer of 8 heads at
n_ctx 4096, fast, 2 batches), 2 jobs ran at 0.71x one job's speed sharing the layer, about 1x each
reading it. From 3 batches up, the reads saved (and the copies of the layer in RAM: 16 workers on
a 2 GiB layer held 32 GiB) outweigh the write."""


def spill_root() -> str | None:
    """where layers handed to worker processes are written: /dev/shm (RAM) when there is one, else the temp folder"""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _spill_stale(entry: os.DirEntry) -> bool:
    m = _SPILL_OWNER.match(entry.name)
    if m is not None:
        return owner_gone(int(m.group(1)), m.group(2))
    try:  # an older version's folder, without its owner in the name: the age rule of temporary files
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS
    except OSError:
        return False


def remove_stale_spill_folders() -> list[str]:
    """delete the hand-over folders in `spill_root()` of runs that are gone

    A run deletes its own folder when it ends, but a SIGKILLed one cannot: its layers (in RAM, in
    /dev/shm) would stay until a reboot. Another live run's folder, or another machine's, is kept.

    # Returns:
     - `list[str]` the folders deleted
    """
    removed: list[str] = []
    try:
        entries = [e for e in os.scandir(spill_root() or tempfile.gettempdir()) if e.name.startswith(SPILL_PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and _spill_stale(entry):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def spill_folder(stack: contextlib.ExitStack) -> str:
    """this run's hand-over folder, named with its pid and host and removed when `stack` closes (the
    folders of runs that are gone: `remove_stale_spill_folders`, at the start of every run)"""
    prefix = f"{SPILL_PREFIX}{os.getpid()}@{this_host()}_"
    return stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix, dir=spill_root()))


@contextlib.contextmanager
def _removed_on_failure(path: str) -> Iterator[None]:
    """a file being written inside is deleted if the writing fails (a full /dev/shm: no partial file)"""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def save_layer(folder: str, patterns: np.ndarray) -> str:
    """write one layer into the hand-over folder under a name of its own; returns its path"""
    fd, path = tempfile.mkstemp(suffix=".npy", dir=folder)
    with _removed_on_failure(path), os.fdopen(fd, "wb") as f:
        np.save(f, patterns)
    return path


def add_name(path: str, name: str, copy: bool = False) -> str:
    """`name` for the hand-over file at `path` too: a hard link (no bytes copied), or with `copy` a copy
    where links cannot be made; on failure nothing of `name` is left. Each task's name is deleted
    when its result is back, so one file can serve several tasks; the last name deleted frees it."""
    try:
        os.link(path, name)
    except OSError:
        if not copy:
            raise
        with _removed_on_failure(name):
            shutil.copyfile(path, name)
    return name


def _links(path: str, n: int) -> list[str]:
    """`n` names of their own for the file at `path`, which loses its own name (`add_name`); never a
    copy: `n` copies of a layer are what reading it once is for"""
    made: list[str] = []
    try:
        for k in range(n):
            made.append(add_name(path, f"{path[:-4]}.{k}.npy"))
    except OSError:
        for name in made:
            with contextlib.suppress(OSError):
                os.unlink(name)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return made


def _layer_has_work(group: list[Task]) -> bool:
    """whether a head of these batches may need the layer (by file names only, nothing deleted: the
    worker checks each output properly; a layer that turns out to be needed after all is read there)"""
    if any(task.force for task in group):
        return True
    for task in group:
        for prompt_dir, layer, heads in task.items:
            for h in heads:
                try:
                    listing = list_head_dir(head_dir(prompt_dir, layer, h), clean_temp=False)
                except (OSError, RuntimeError):  # not a folder, a link loop, no permission: the worker reports it
                    return True
                if not all(is_complete(f, listing) for f in task.funcs):
                    return True
                if task.summaries is not None and PREVIEW_FILE not in listing:
                    return True
    return False


class _Reader:
    """reads split layers into the hand-over folder, from the reading threads"""

    def __init__(self, folder: str, read_seconds: list[float]) -> None:
        self.folder = folder
        self.read_seconds = read_seconds
        self.full = False  # a write failed (a small /dev/shm): reading the next layers here would be wasted
        self._lock = threading.Lock()

    def __call__(self, task: Task) -> str | None:
        """the layer's file, or `None` when its batches are better off reading it themselves: a stored
        member (each worker maps its own heads' pages of the `.npz`), or a folder that is full"""
        if self.full:
            return None
        prompt_dir, layer, _ = task.items[0]
        t0 = time.perf_counter()
        with ActivationsFile(Path(prompt_dir) / ACTIVATIONS_FILE, n_heads=task.n_heads) as acts:
            if acts.is_stored(layer):
                return None
            patterns = acts.read_layer(layer)
        try:
            path = save_layer(self.folder, patterns)
        except OSError:
            self.full = True
            raise
        finally:
            with self._lock:
                self.read_seconds[0] += time.perf_counter() - t0
        return path


def _handed(group: list[Task], future: Future | None) -> list[Task | InMemoryTask]:
    try:
        path = future.result() if future is not None else None
        if path is None:
            return list(group)
        links = _links(path, len(group))
        return [InMemoryTask(task, (link,), from_npz=True) for task, link in zip(group, links, strict=True)]
    except Exception:  # noqa: BLE001 -- unreadable here (bad input, a full folder): the workers read it and report it
        return list(group)


def share_split_layers(
    tasks: Iterable[Task], folder: str, read_seconds: list[float] | None = None
) -> Iterator[Task | InMemoryTask]:
    """the planner's tasks, each layer split into batches read once here and handed to all its batches

    # Parameters:
     - `tasks : Iterable[Task]` batches of one layer each, the batches of a layer one after another
       (what `TaskPlanner` yields when it splits layers)
     - `folder : str` the run's hand-over folder (`spill_folder`)
     - `read_seconds : list[float] | None` a one-element list the reading time is added to (defaults
       to `None`: not counted)

    # Returns:
     - `Iterator[Task | InMemoryTask]` an `InMemoryTask` for each batch of a layer read here, the
       `Task` itself where the layer is not needed (resumed) or could not be read here
    """
    reader = _Reader(folder, read_seconds if read_seconds is not None else [0.0])
    ahead: collections.deque[tuple[list[Task], Future | None]] = collections.deque()
    with ThreadPoolExecutor(max_workers=LOOKAHEAD, thread_name_prefix="pattern_lens-read") as pool:
        try:
            for _, batches in itertools.groupby(tasks, key=lambda t: [(p, layer) for p, layer, _ in t.items]):
                group = list(batches)
                shared = len(group) > 1 and all(len(t.items) == 1 for t in group) and _layer_has_work(group)
                ahead.append((group, pool.submit(reader, group[0]) if shared else None))
                if len(ahead) > LOOKAHEAD:
                    yield from _handed(*ahead.popleft())
            while ahead:
                yield from _handed(*ahead.popleft())
        finally:
            for _, future in ahead:  # stopped early: nothing reads these layers now (the folder goes too)
                if future is not None:
                    future.cancel()
