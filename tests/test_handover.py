"""a layer split into batches of heads is read once, in the parent, and handed to every batch (`handover`)"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import pattern_lens._input.handover as handover
from pattern_lens._layout import ACTIVATIONS_FILE
from pattern_lens._input.npz import ActivationsFile
from pattern_lens._engine.planner import PromptWork, TaskPlanner
from pattern_lens._engine.transfer import FigureFuncs
from pattern_lens._engine.worker import InMemoryTask, Task
from pattern_lens.attn_figure_funcs import raw
from pattern_lens.figures import figures_main
from pattern_lens.synthetic import write_synthetic_model

def _planned(model_dir: Path, n_heads: int, n_ctx: int, n_workers: int, layers=(0,)) -> list[Task]:
    prompt = next(p for p in (model_dir / "prompts").iterdir() if p.is_dir())
    planner = TaskPlanner([PromptWork(str(prompt), n_ctx)], list(layers), range(n_heads), 1, n_workers, "fast")
    return [Task(FigureFuncs([raw]), False, "fast", n_heads, tuple(items), est) for items, est in planner]


@pytest.fixture
def reads(monkeypatch) -> list[int]:
    """the layers `ActivationsFile.read_layer` reads in this process, in order"""
    got: list[int] = []
    real = ActivationsFile.read_layer
    monkeypatch.setattr(ActivationsFile, "read_layer", lambda self, layer: got.append(layer) or real(self, layer))
    return got


@pytest.fixture
def spill(tmp_path, monkeypatch) -> Path:
    """the hand-over folders' root, in the test's folder"""
    root = tmp_path / "spill"
    root.mkdir()
    monkeypatch.setattr(handover, "spill_root", lambda: str(root))
    return root


def test_each_split_layer_is_read_once_and_every_batch_maps_the_same_file(tmp_path, reads, spill):
    model_dir = write_synthetic_model(tmp_path / "data", n_layers=2, n_heads=8, n_ctx=32, n_prompts=1, seed=1)
    tasks = _planned(model_dir, 8, 32, n_workers=4, layers=(0, 1))
    assert len(tasks) == 4 and all(len(t.items) == 1 for t in tasks)  # two batches per layer
    seconds = [0.0]
    jobs = list(handover.share_split_layers(tasks, str(spill), seconds))
    assert sorted(reads) == [0, 1] and seconds[0] > 0
    assert [j.task for j in jobs] == tasks and all(isinstance(j, InMemoryTask) and j.from_npz for j in jobs)
    prompt = Path(tasks[0].items[0][0])
    with np.load(prompt / ACTIVATIONS_FILE) as npz:
        for layer in (0, 1):
            mine = [j for j in jobs if j.task.items[0][1] == layer]
            stats = [os.stat(j.patterns[0]) for j in mine]
            assert len({s.st_ino for s in stats}) == 1 and stats[0].st_nlink == 2  # one file, a name per batch
            for j in mine:
                np.testing.assert_array_equal(np.load(j.patterns[0], mmap_mode="r"), npz[f"blocks.{layer}.attn.hook_pattern"][0])
    assert sorted(p.name for p in spill.iterdir()) == sorted(os.path.basename(j.patterns[0]) for j in jobs)


def test_a_layer_that_is_done_or_cannot_be_read_here_is_left_to_the_workers(tmp_path, reads, spill):
    model_dir = write_synthetic_model(tmp_path / "data", n_layers=1, n_heads=4, n_ctx=16, n_prompts=1, seed=2)
    assert figures_main(model_dir.name, tmp_path / "data", None, False, "raw", n_jobs=1, summaries=False,
                        progress=False, verbose=False).ok
    tasks = _planned(model_dir, 4, 16, n_workers=2)
    reads.clear()  # the render above read the layer in this process
    assert list(handover.share_split_layers(tasks, str(spill))) == tasks and reads == []  # resumed: never read
    npz = Path(tasks[0].items[0][0]) / ACTIVATIONS_FILE
    npz.write_bytes(npz.read_bytes()[:100])  # truncated: the workers read it and report it, as before
    forced = [Task(t.funcs, True, t.profile, t.n_heads, t.items, t.estimate) for t in tasks]
    assert list(handover.share_split_layers(forced, str(spill))) == forced
    assert not list(spill.iterdir())


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and "L0" in p.parts}


@pytest.fixture
def share_two_batches(monkeypatch):
    """on 2 cores a layer is split into 2 batches, below the sharing threshold: share them anyway"""
    monkeypatch.setattr(handover, "SHARE_MIN_BATCHES", 2)


@pytest.fixture
def shares(monkeypatch) -> list[int]:
    """one entry per run that read split layers in the parent"""
    called: list[int] = []
    real = handover.share_split_layers
    monkeypatch.setattr("pattern_lens._engine.run.share_split_layers", lambda *a: called.append(1) or real(*a))
    return called


def test_render_with_shared_layers_writes_what_one_process_writes_and_leaves_nothing(tmp_path, share_two_batches, spill, shares):
    kw = dict(n_layers=1, n_heads=8, n_ctx=48, n_prompts=1, seed=3)
    one, two = write_synthetic_model(tmp_path / "one", **kw), write_synthetic_model(tmp_path / "two", **kw)
    a = figures_main(one.name, tmp_path / "one", None, False, "raw", n_jobs=1, progress=False, verbose=False)
    b = figures_main(two.name, tmp_path / "two", None, False, "raw", n_jobs=2, progress=False, verbose=False)
    assert a.ok and b.ok and b.backend == "warm" and b.n_rendered == 8, b.format()
    assert shares == [1] and _tree(one) == _tree(two)
    assert not list(spill.iterdir())  # the run's folder and every layer file are gone


def exits_on_h4(attn, save_dir):
    """a figure function whose worker dies on head 4 (its process exits), a PNG elsewhere"""
    if Path(save_dir).name == "H4":
        os._exit(9)
    (Path(save_dir) / "exits_on_h4.bin").write_bytes(np.ascontiguousarray(attn).tobytes())


exits_on_h4.figure_save_fmt = "bin"


def test_a_worker_that_dies_on_a_shared_batch_costs_that_head_only(tmp_path, share_two_batches, spill):
    """the batch falls back to its .npz (its hand-over file may be gone), split into heads, rerun alone"""
    model_dir = write_synthetic_model(tmp_path / "d", n_layers=1, n_heads=6, n_ctx=32, n_prompts=1, seed=4)
    s = figures_main(model_dir.name, tmp_path / "d", None, False, [raw, exits_on_h4], n_jobs=2, progress=False, verbose=False)
    assert s.failures["exits_on_h4"].count == 1, s.format()
    assert s.failures["exits_on_h4"].first_message.startswith("worker process died (EXIT(9))")
    assert len(list(model_dir.rglob("raw.png"))) == 6 and len(list(model_dir.rglob("exits_on_h4.bin"))) == 5
    assert not list(spill.iterdir())


def test_runs_whose_layers_are_not_split_hand_nothing_over(tmp_path, share_two_batches, spill, shares):
    model_dir = write_synthetic_model(tmp_path / "d", n_layers=2, n_heads=2, n_ctx=16, n_prompts=2, seed=5)
    assert figures_main(model_dir.name, tmp_path / "d", None, False, "raw", n_jobs=2, progress=False, verbose=False).ok
    assert shares == [] and not list(spill.iterdir())


def test_a_head_folder_that_cannot_be_listed_is_reported_and_the_rest_of_a_shared_layer_renders(tmp_path, share_two_batches, spill, shares):
    """the parent's look at the head folders must not fail the task stream (it did: nothing rendered, exit 0)"""
    model_dir = write_synthetic_model(tmp_path / "d", n_layers=1, n_heads=6, n_ctx=16, n_prompts=1, seed=6)
    prompt = next(p for p in (model_dir / "prompts").iterdir() if p.is_dir())
    (prompt / "L0").mkdir()
    (prompt / "L0" / "H0").write_text("not a folder")
    s = figures_main(model_dir.name, tmp_path / "d", None, False, "raw", n_jobs=2, progress=False, verbose=False)
    assert not s.ok and s.n_rendered == 5, s.format()
    assert any("H0: cannot list the head folder" in m for m in s.input_errors), s.input_errors
    assert len(list(model_dir.rglob("raw.png"))) == 5 and shares == [1]  # 2 jobs: 2 batches, shared (fixture)


def test_an_error_of_the_task_stream_itself_is_raised_not_taken_for_a_dead_pool():
    from pattern_lens._engine.backends import parallel_session, run_all

    def tasks():
        yield 1
        raise ValueError("the planner broke")

    with parallel_session(2, "loky", None) as session, pytest.raises(ValueError, match="the planner broke"):
        list(run_all(session, abs, tasks(), on_error=lambda t, e: None, split=lambda t, e=None: [t]))
