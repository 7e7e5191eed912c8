"""the execution engine's workers: never more than the usable cores, none for nothing, warm, safe to
start from a process with threads or torch, and a crash that costs only the function that crashes

Real processes: `python -m pattern_lens.cli` with `cwd` the repository root, and the process tree
watched with psutil while it runs (every process ever seen below it is counted; workers live from
their pool's start to the run's end, far longer than one poll).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import pytest

from interrupt_support import child_env
from pattern_lens._engine.run import SMALL_RUN_SECONDS, default_workers
from pattern_lens._system import available_cpus, cgroup_cpu_quota
from pattern_lens.synthetic import write_synthetic_model

REPO = Path(__file__).resolve().parents[1]


def _watch(cmd: list[str], env: dict, timeout: float = 300, **kw) -> tuple[subprocess.CompletedProcess, set[int]]:
    """run `cmd`, polling its process tree until it ends; (the result, pids of every descendant seen)"""
    proc = psutil.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        try:
            seen.update(c.pid for c in proc.children(recursive=True))
        except psutil.Error:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{cmd} still running after {timeout} s")
        time.sleep(0.002)
    out, err = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), seen


def _render(root: Path, model: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "pattern_lens.cli", "render", "-m", model, "-s", str(root), "--no-index-html", *args]


def _two_cores():
    """the child sees at most 2 usable cores (this machine's 2, or 2 of a bigger one)"""
    cores = sorted(os.sched_getaffinity(0))[:2]
    return lambda: os.sched_setaffinity(0, cores)


# ---------------------------------------------------------------------------------------------------
# never more workers than cores, never workers for nothing


def test_jobs_above_the_usable_cores_are_capped_with_one_line(tmp_path):
    """`--jobs 64` on 2 usable cores: one line says so, and 2 workers start (no more)"""
    n = min(2, len(os.sched_getaffinity(0)))
    if n < 2:
        pytest.skip("needs 2 cores")
    model = write_synthetic_model(tmp_path, n_layers=2, n_heads=4, n_ctx=32, n_prompts=2, seed=1)
    done, seen = _watch(
        _render(tmp_path, model.name, "--import", "fault_funcs", "--figure-funcs", "slow", "--jobs", "64", "-q"),
        child_env(uuid.uuid4().hex), preexec_fn=_two_cores(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cap = [line for line in done.stderr.splitlines() if "64 workers asked for" in line]
    assert cap == ["64 workers asked for, 2 cores usable by this process (affinity, CPU quota): using 2"], done.stderr
    assert "[2 jobs, warm" in done.stdout, done.stdout
    assert len(seen) == 2, f"expected 2 worker processes, saw {len(seen)}"


def test_a_resume_with_nothing_to_do_starts_no_process(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=2, n_heads=4, n_ctx=32, n_prompts=2, seed=1)
    first, seen_first = _watch(_render(tmp_path, model.name, "--jobs", "2", "-q"), child_env(uuid.uuid4().hex))
    assert first.returncode == 0 and "16 rendered" in first.stdout, first.stdout + first.stderr
    assert seen_first, "the first run must start workers (else this test could not see any)"
    for jobs in (["--jobs", "2"], ["--jobs", "8"], []):
        again, seen = _watch(_render(tmp_path, model.name, *jobs, "-q"), child_env(uuid.uuid4().hex))
        assert again.returncode == 0 and "16 already done" in again.stdout, again.stdout + again.stderr
        assert seen == set(), f"{jobs}: a run with nothing to do started {len(seen)} processes"


def test_the_default_job_count_follows_the_estimate():
    assert default_workers(0.0, 8) == 1
    assert default_workers(SMALL_RUN_SECONDS * 0.99, 8) == 1
    assert default_workers(SMALL_RUN_SECONDS * 2.5, 8) == 2
    assert default_workers(SMALL_RUN_SECONDS * 100, 8) == 8
    assert default_workers(5.0, 4, per_worker=0.0) == 4


@pytest.mark.parametrize("v2", [True, False])
def test_the_cgroup_cpu_quota_is_read(tmp_path, v2):
    root = tmp_path / "cg"
    if v2:
        (root / "job" / "step").mkdir(parents=True)
        (root / "cpu.max").write_text("max 100000\n")
        (root / "job" / "cpu.max").write_text("150000 100000\n")
        (root / "job" / "step" / "cpu.max").write_text("max 100000\n")
        cgroup = "0::/job/step\n"
    else:
        (root / "cpu,cpuacct" / "job").mkdir(parents=True)
        (root / "cpu,cpuacct" / "job" / "cpu.cfs_quota_us").write_text("250000\n")
        (root / "cpu,cpuacct" / "job" / "cpu.cfs_period_us").write_text("100000\n")
        cgroup = "4:memory:/job\n3:cpu,cpuacct:/job\n"
    (tmp_path / "cgroup").write_text(cgroup)
    assert cgroup_cpu_quota(root, tmp_path / "cgroup") == (1.5 if v2 else 2.5)
    (tmp_path / "cgroup").write_text("0::/\n")
    assert cgroup_cpu_quota(root, tmp_path / "cgroup") is None  # the root's "max": no limit
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------------
# warm workers: safe to start from a process with threads, never inheriting torch

_CHILD = textwrap.dedent("""
    import json, sys, threading, time
    from pathlib import Path
    from pattern_lens.figures import figures_main
    from pattern_lens.synthetic import write_synthetic_model
    import probe_funcs
    from pattern_lens._engine import warm

    root = Path(sys.argv[1])
    model = write_synthetic_model(root, n_layers=2, n_heads=4, n_ctx=32, n_prompts=2, seed=1)
    {setup}
    s = figures_main(model.name, root, None, True, [probe_funcs.probe], n_jobs=2, progress=False, verbose=False)
    print(json.dumps(dict(ok=s.ok, backend=s.backend, n_jobs=s.n_jobs, rendered=s.n_rendered, method=warm.last_method)))
""")

_PROBE = textwrap.dedent("""
    import gc, json, os, sys
    from pathlib import Path

    def probe(attn, save_dir):
        # writes to stderr too: a worker forked while another thread held stderr's lock would hang here
        print("probe", os.getpid(), file=sys.stderr, flush=True)
        info = dict(pid=os.getpid(), torch="torch" in sys.modules, frozen=gc.get_freeze_count())
        (Path(save_dir) / "probe.json").write_text(json.dumps(info))

    probe.figure_save_fmt = "json"
""")


def _probe_run(tmp_path: Path, setup: str) -> tuple[dict, list[dict]]:
    (tmp_path / "probe_funcs.py").write_text(_PROBE)
    env = child_env(uuid.uuid4().hex)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    code = _CHILD.format(setup=textwrap.dedent(setup))
    with open(tmp_path / "stderr.txt", "w") as err:  # a file: the chatter below never blocks on a full pipe
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=err, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + (tmp_path / "stderr.txt").read_text()[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    probes = [json.loads(p.read_text()) for p in (tmp_path / "data").rglob("probe.json")]
    return result, probes


def test_a_parent_with_a_running_thread_does_not_deadlock(tmp_path):
    """a thread writing to stderr without pause while the run starts its workers: the run ends, every
    head rendered in workers (started from the warm forkserver: forking now could copy a held lock)"""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores for 2 workers")
    result, probes = _probe_run(tmp_path, """
        def chatter():
            while True:
                sys.stderr.write("chatter " * 64 + "\\n")  # stderr's lock held during each write
                time.sleep(0.0005)
        threading.Thread(target=chatter, daemon=True).start()
        time.sleep(0.05)
    """)
    assert result == dict(ok=True, backend="warm", n_jobs=2, rendered=16, method="forkserver"), result
    assert len(probes) == 16 and os.getpid() not in {p["pid"] for p in probes}


def test_a_worker_never_inherits_torch(tmp_path):
    """a parent that has imported torch and run an op on its threads: the workers have no torch"""
    pytest.importorskip("torch")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores for 2 workers")
    result, probes = _probe_run(tmp_path, """
        import torch
        torch.ones(256, 256) @ torch.ones(256, 256)  # torch's thread pool is running now
    """)
    assert result["ok"] and result["backend"] == "warm" and result["method"] == "forkserver", result
    assert len(probes) == 16 and not any(p["torch"] for p in probes), probes


def test_without_threads_or_torch_the_workers_are_forked_warm(tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores for 2 workers")
    result, probes = _probe_run(tmp_path, "")
    assert result == dict(ok=True, backend="warm", n_jobs=2, rendered=16, method="fork"), result
    assert len({p["pid"] for p in probes}) <= 2 and not any(p["torch"] for p in probes)
    # what a worker inherited is frozen (`gc.freeze`): loky's collection after the first task must not
    # write to (and so copy) the parent's whole heap, 0.17 s per worker measured
    assert all(p["frozen"] > 10_000 for p in probes), [p["frozen"] for p in probes]


# ---------------------------------------------------------------------------------------------------
# a crash costs only the function that crashes (issue 18, point 5)


@pytest.mark.parametrize("force, crashes", [(False, "all"), (True, "all"), (False, "last"), (True, "last")])
def test_a_crash_costs_only_the_function_that_crashes(tmp_path, force, crashes):
    """`misbehave` kills its worker on every head of one prompt (or on its last head only, after the
    dead worker rendered the others); `raw` before it and `steady` after it, the previews and the
    statistics are all made, and the summary counts what is on disk"""
    model = write_synthetic_model(tmp_path, n_layers=2, n_heads=2, n_ctx=32, n_prompts=2, seed=1)
    first_hash = json.loads((model / "prompts.jsonl").read_text().splitlines()[0])["hash"]
    faults = {f"L{layer}/H{h}": "segfault" for layer in range(2) for h in range(2)} if crashes == "all" else {"L1/H1": "segfault"}
    env = child_env(uuid.uuid4().hex, FAULT_HASH=first_hash, FAULTS=json.dumps(faults))
    args = ["--import", "fault_funcs", "--figure-funcs", "raw,misbehave,steady", "--jobs", "2", "-q"]
    if force:  # every output there already: the crash must not leave the old ones counted as new
        subprocess.run(_render(tmp_path, model.name, *args), cwd=REPO, env=env, capture_output=True, timeout=300)
    done = subprocess.run(_render(tmp_path, model.name, *args, *(["--force"] if force else [])),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out and "Fatal Python error" not in out, out
    assert f"misbehave: {len(faults)} heads; first: worker process died (SIGSEGV(-11))" in done.stdout, out
    assert "not run" not in out and "steady:" not in done.stdout and "raw:" not in done.stdout, out
    crashed = model / "prompts" / first_hash
    for head in faults:
        names = sorted(p.name for p in (crashed / head).iterdir())
        assert names == ["misbehave.error.txt", "preview.png", "raw.png", "steady.png"], (head, names)
    stats = json.loads((crashed / "head_stats.json").read_text())
    assert len(stats["heads"]) == 4, stats
    # the summary agrees with the files on disk: 8 heads rendered, every raw/misbehave/steady file
    # written by this run counted once
    on_disk = sum(1 for name in ("raw.png", "misbehave.png", "steady.png") for _ in model.rglob(name))
    assert on_disk == 8 + (8 - len(faults)) + 8
    assert f"8 heads (2 prompts x 2 layers x 2 heads)" in done.stdout, done.stdout
    assert f": 8 rendered" in done.stdout and f"{on_disk} figures written" in done.stdout and "8 heads summarised" in done.stdout, done.stdout


@pytest.mark.parametrize("given, torch_first, expected", [
    (None, False, "PASSIVE"),  # `run`: torch's OpenMP threads then sleep instead of spinning beside the workers
    ("ACTIVE", False, "ACTIVE"),  # the user's own setting wins
    (None, True, None),  # torch already loaded its OpenMP: a setting now would change nothing, so none is made
])
def test_run_makes_torchs_idle_threads_sleep_unless_told_otherwise(given, torch_first, expected):
    pytest.importorskip("torch")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = ("import torch\n" if torch_first else "") + (
        "import os, sys\n"
        "import pattern_lens._engine.stream\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(expected)


_REALLOCATE = (
    "import resource, sys\n"
    "from pattern_lens._system import reuse_large_buffers\n"
    "if sys.argv[1] == 'reuse':\n"
    "    assert reuse_large_buffers()\n"
    "size = 50 << 20  # a layer of 12 heads at n_ctx 1024\n"
    "b = bytearray(size); del b  # the first layer: its pages come from the kernel either way\n"
    "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "b = bytearray(size)\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_workers_reuse_the_pages_of_the_last_layer():
    """the next 50 MB buffer takes the last one's pages (no page faults) once `reuse_large_buffers`
    ran, as every worker and command process runs it; without it, thousands of faults per layer"""
    faults = {}
    for mode in ("default", "reuse"):
        proc = subprocess.run([sys.executable, "-c", _REALLOCATE, mode], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        faults[mode] = int(proc.stdout.strip())
    assert faults["reuse"] < 500, faults
    # the premise: without it, each of 12,800 pages of 4 KiB is faulted in again (fewer where the
    # kernel hands out huge pages to every mapping, `transparent_hugepage=always`)
    assert faults["default"] > 20 * max(faults["reuse"], 1), faults
