"""resuming: existing outputs are skipped, --force redoes them, and a run killed with SIGKILL finishes on rerun"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from pattern_lens._output.atomic import atomic_write_bytes
from pattern_lens.figures import figures_main
from pattern_lens.synthetic import write_synthetic_model

REPO = Path(__file__).resolve().parents[1]


def ident(attn, save_dir):
    atomic_write_bytes(Path(save_dir) / "ident.bin", np.ascontiguousarray(attn).tobytes())


ident.figure_save_fmt = "bin"

_FLAKY_STATE = {"fail": True}


def flaky(attn, save_dir):
    """fails while `_FLAKY_STATE['fail']`"""
    if _FLAKY_STATE["fail"]:
        raise RuntimeError("not yet")
    atomic_write_bytes(Path(save_dir) / "flaky.bin", b"ok")


flaky.figure_save_fmt = "bin"


def plain(attn, save_dir):
    """no figure_save_fmt: outputs recognised by the reference's `plain.*` rule"""
    (Path(save_dir) / "plain.out").write_bytes(b"p")


def _run(root: Path, model: Path, funcs, force=False, **kw):
    return figures_main(model.name, root, None, force, funcs, n_jobs=1, progress=False, verbose=False, **kw)


def _mtimes(model_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(model_dir)): p.stat().st_mtime_ns for p in model_dir.rglob("*") if p.is_file()}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rerun_skips_everything_and_touches_nothing(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=2, n_heads=3, n_ctx=32, n_prompts=2)
    first = _run(tmp_path, model, [ident, plain])
    assert first.ok and first.n_rendered == 12
    before = _mtimes(tmp_path)
    time.sleep(0.01)
    again = _run(tmp_path, model, [ident, plain])
    assert again.ok and again.n_skipped == 12 and again.n_rendered == 0 and again.n_outputs == 0
    assert _mtimes(tmp_path) == before, "a rerun with nothing to do must not rewrite any file (indexes included)"


def test_force_redoes_outputs(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=2, n_heads=3, n_ctx=32, n_prompts=2)
    _run(tmp_path, model, [ident])
    out = next(model.rglob("ident.bin"))
    out.write_bytes(b"stale")
    assert _run(tmp_path, model, [ident]).n_skipped == 12
    assert out.read_bytes() == b"stale"
    forced = _run(tmp_path, model, [ident], force=True)
    assert forced.n_rendered == 12 and forced.n_skipped == 0
    assert out.read_bytes() != b"stale"


def test_only_missing_outputs_are_rendered(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=2, n_heads=3, n_ctx=32, n_prompts=2)
    _run(tmp_path, model, [ident])
    outs = sorted(model.rglob("ident.bin"))
    for p in outs[::4]:
        p.unlink()
    before = {k: v for k, v in _mtimes(model).items() if k.endswith("ident.bin")}
    res = _run(tmp_path, model, [ident])
    assert res.n_rendered == len(outs[::4]) and res.n_skipped == 12 - len(outs[::4])
    after = _mtimes(model)
    assert all(after[k] == v for k, v in before.items())
    assert len(list(model.rglob("ident.bin"))) == 12


def test_failed_figures_are_retried_and_their_error_files_removed(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=32, n_prompts=1)
    _FLAKY_STATE["fail"] = True
    try:
        res = _run(tmp_path, model, [ident, flaky])
        assert res.failures["flaky"].count == 2 and len(list(model.rglob("flaky.error.txt"))) == 2
        _FLAKY_STATE["fail"] = False
        res = _run(tmp_path, model, [ident, flaky])
        assert res.ok and res.n_rendered == 2 and res.n_outputs == 2  # ident was not redone
        assert not list(model.rglob("flaky.error.txt")) and len(list(model.rglob("flaky.bin"))) == 2
    finally:
        _FLAKY_STATE["fail"] = True


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has this id now (reuse within the test is very unlikely)


def test_leftover_temporary_files_are_removed(tmp_path):
    """a dead process's temporary files go; a live run's stay, whatever their age or folder"""
    from pattern_lens._layout import this_host

    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=32, n_prompts=1)
    _run(tmp_path, model, [ident])
    head = next(model.rglob("H0"))
    dead, host = _dead_pid(), this_host()
    alive = os.getppid()  # the process that started pytest: alive, and not this run
    (head / f".ident.bin.pl{dead}@{host}.abcd1234.tmp").write_bytes(b"half")
    (model / f".prompts.jsonl.pl{dead}@{host}.x1y2.tmp").write_text("half")
    (tmp_path / ".figures.jsonl.x1y2.tmp").write_text("half")  # no owner in the name: only old ones go
    an_hour_ago = time.time() - 3600
    os.utime(tmp_path / ".figures.jsonl.x1y2.tmp", (an_hour_ago, an_hour_ago))
    live = [
        tmp_path / f".models.jsonl.pl{alive}@{host}.live.tmp",  # another run writing models.jsonl right now
        head / f".ident.bin.pl{alive}@{host}.live.tmp",  # ... and this head
        head / f".ident.bin.pl{dead}@other-host.live.tmp",  # a run on another machine sharing the folder
        head / ".ident.bin.noowner.tmp",  # a recent one without owner (an older version's run)
    ]
    for p in live:
        p.write_text("in flight")
    (head / "ident.bin").unlink()
    _run(tmp_path, model, [ident])
    assert sorted(tmp_path.rglob("*.tmp")) == sorted(live)


def test_a_killed_process_not_yet_reaped_counts_as_gone(tmp_path):
    """a SIGKILLed run's worker is a zombie until the process that inherited it reaps it: its
    temporary files are stale (a rerun started at once left them behind: a flaky leftover)"""
    from pattern_lens._layout import this_host
    from pattern_lens._output.atomic import is_stale_temp, owner_gone

    if not Path("/proc/self/status").is_file():
        pytest.skip("the zombie check reads Linux's /proc")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not owner_gone(child.pid, this_host())  # running: its files are in flight
        child.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE  # dead, not reaped: the pid still answers
        assert owner_gone(child.pid, this_host())
        tmp = tmp_path / f".raw.png.pl{child.pid}@{this_host()}.abcd1234.tmp"
        tmp.write_bytes(b"half")
        assert is_stale_temp(tmp)
    finally:
        child.kill()
        child.wait()


def _marked(mark: str) -> list:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PATTERN_LENS_TEST_MARK") == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


KILL_TRIALS = 20


def test_sigkill_of_the_parent_at_random_moments_then_rerun_completes_identically(tmp_path):
    """SIGKILL of the main process only (its workers must notice and stop), at seeded random moments
    drawn over an uninterrupted run's length, a random half of the outputs deleted between trials so
    that every trial has work; after each kill no process of the run is alive a second later and
    nothing is written after it; a last run completes and every file equals the uninterrupted run's.

    A worker still in loky's own start-up when its parent dies cannot run our code yet: it ends as
    soon as that start-up reaches our initializer, before any task, so it may outlive the second
    (not 11 s).
    """
    import random

    args = dict(n_layers=8, n_heads=8, n_ctx=128, n_prompts=2, seed=5)
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    model = write_synthetic_model(killed_root, **args)
    write_synthetic_model(clean_root, **args)
    total = 8 * 8 * 2
    rng = random.Random(20261127)

    def cmd(root):
        return [sys.executable, "-m", "pattern_lens.cli", "render", "--model", model.name, "--save-path", str(root),
                "--figure-funcs", "raw", "--jobs", "2", "--quiet", "--no-index-html"]  # figures_main writes no gallery

    # the uninterrupted run first: its length scales the moments of the kills to this machine's speed
    t0 = time.monotonic()
    clean = subprocess.run(cmd(clean_root), cwd=REPO, capture_output=True, text=True, timeout=300)
    run_seconds = time.monotonic() - t0
    assert clean.returncode == 0 and f"{total} rendered" in clean.stdout, clean.stdout + clean.stderr

    landed_mid_run = slow_starts = 0
    killed_pids: list[int] = []
    for trial in range(KILL_TRIALS):
        outputs = sorted(killed_root.rglob("raw.png"))
        for p in rng.sample(outputs, k=len(outputs) // 2):
            p.unlink()
        mark = f"kill-{trial}-{os.getpid()}"
        env = {**os.environ, "PATTERN_LENS_TEST_MARK": mark, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(cmd(killed_root), cwd=REPO, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.9) * run_seconds)  # start-up (imports, workers starting) or rendering
        finished = proc.poll() is not None
        killed_pids.append(proc.pid)
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)  # the main process only, as the OOM killer would
        killed_at = time.time()
        proc.wait()
        landed_mid_run += not finished
        deadline = time.monotonic() + 1.0
        while (left := _marked(mark)) and time.monotonic() < deadline:
            time.sleep(0.05)
        late = []
        for p in left:
            try:
                late.append((p.pid, p.num_threads(), " ".join(p.cmdline())[-60:]))
            except psutil.Error:
                pass  # ended meanwhile
        # a worker killed while still starting (one thread: loky's start-up, before any code of ours)
        # ends when its start-up reaches our initializer, which sees the run is gone; resource
        # trackers end after the workers. Anything else alive a second later is a failure.
        unexplained = [x for x in late if not ((x[1] == 1 and "popen_loky_posix" in x[2]) or "resource_tracker" in x[2])]
        slow_starts += bool(late)
        deadline = time.monotonic() + 10
        while (left := _marked(mark)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            os.killpg(proc.pid, signal.SIGKILL)  # clean up before failing
        assert not unexplained, f"trial {trial}: processes alive 1 s after the run was killed: {unexplained}"
        assert not left, f"trial {trial}: processes alive 11 s after the run was killed: {late}"
        written_late = [p for p in killed_root.rglob("*") if p.is_file() and p.stat().st_mtime > killed_at + 0.5]
        assert not written_late, f"trial {trial}: written after the run was killed: {written_late[:3]}"
    assert landed_mid_run >= KILL_TRIALS // 2, f"only {landed_mid_run} kills landed while the run was alive"
    print(f"{landed_mid_run} of {KILL_TRIALS} kills landed mid-run; {slow_starts} caught a worker still starting")

    rerun = subprocess.run(cmd(killed_root), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    killed_tree, clean_tree = _tree(killed_root), _tree(clean_root)
    assert sorted(killed_tree) == sorted(clean_tree)
    assert sum(k.endswith("raw.png") for k in killed_tree) == total
    different = [k for k in clean_tree if killed_tree[k] != clean_tree[k]]
    assert not different, f"{len(different)} files differ after resuming, e.g. {different[:3]}"
    assert not [k for k in killed_tree if k.endswith(".tmp")]
    if Path("/dev/shm").is_dir():  # joblib's memmapping folders, loky's semaphores: none left by the killed runs
        shm = [n for n in os.listdir("/dev/shm") for pid in killed_pids
               if n.startswith((f"joblib_memmapping_folder_{pid}_", f"sem.loky-{pid}-"))]
        assert not shm, f"/dev/shm leftovers of killed runs: {shm[:5]}"


def test_stale_error_file_after_a_failed_forced_rerun_is_removed(tmp_path):
    """success, then --force fails (error.txt beside the old output), then a plain rerun: consistent"""
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=1, n_ctx=16, n_prompts=1)
    _FLAKY_STATE["fail"] = False
    try:
        assert _run(tmp_path, model, [flaky]).ok
        _FLAKY_STATE["fail"] = True
        assert not _run(tmp_path, model, [flaky], force=True).ok
        head = next(model.rglob("H0"))
        assert sorted(p.name for p in head.iterdir()) == ["flaky.bin", "flaky.error.txt", "preview.png"]
        assert _run(tmp_path, model, [flaky]).ok  # the output is there: done, and the error is stale
        assert sorted(p.name for p in head.iterdir()) == ["flaky.bin", "preview.png"]
    finally:
        _FLAKY_STATE["fail"] = True


def test_parallel_false_or_zero_is_one_process(tmp_path):
    """the reference's `parallel` switch: any falsy value renders serially"""
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=16, n_prompts=1)
    for parallel in (False, 0):
        summary = figures_main(model.name, tmp_path, None, True, [ident], parallel=parallel, progress=False, verbose=False)
        assert summary.ok and summary.n_jobs == 1
