"""fault injection: every way a run can go wrong ends in a reported failure, index files, a summary and
a clean process table

Real processes: `python -m pattern_lens.cli render` with `cwd` the repository root, figure functions
from `tests/fault_funcs.py` (on PYTHONPATH, so that loky workers import them too). Every child process
carries a marker in its environment, so a process left behind is found whoever its parent is now.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest

from interrupt_support import MARK, assert_one_interrupt_line, interrupt_when
from interrupt_support import child_env as _env
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pattern_lens._errors import InputError, PatternLensError
from pattern_lens._export.png_fast import PNG_IEND, PNG_SIGNATURE
from pattern_lens._output.atomic import atomic_write_bytes
from pattern_lens._output.indexes import sanitize_model_name
from pattern_lens.figures import compute_and_save_figures, figures_main, process_prompt, process_single_head
from pattern_lens.figures import HTConfigMock
from pattern_lens.synthetic import write_synthetic_model

REPO = Path(__file__).resolve().parents[1]
# how tests/fault_funcs.py's `misbehave` ends on each head (passed to it as $FAULTS); only the
# subprocesses import that module (here it would register its functions for every other test)
FAULTS: dict[str, str] = {
    "L0/H1": "exit0",
    "L0/H2": "exit3",
    "L0/H3": "keyboard_interrupt",
    "L1/H0": "memory_error",
    "L1/H1": "hang",
    "L2/H2": "os_exit",
    "L2/H3": "segfault",
}


def _cmd(root: Path, model: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "pattern_lens.cli", "render", "--model", model, "--save-path", str(root), *args]


def _marked(mark: str) -> list[psutil.Process]:
    """live processes started with `mark` in their environment"""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARK) == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _assert_no_leftovers(mark: str, root: Path, pid: int | None = None, within: float = 1.0) -> None:
    """no process with `mark` after `within` seconds, no temporary file under `root`, nothing in /dev/shm"""
    deadline = time.monotonic() + within
    while (left := _marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind: {[(p.pid, p.name()) for p in left]}"
    assert not list(root.rglob("*.tmp")), f"temporary files left: {list(root.rglob('*.tmp'))[:3]}"
    if pid is not None and Path("/dev/shm").is_dir():
        shm = [n for n in os.listdir("/dev/shm") if n.startswith(f"joblib_memmapping_folder_{pid}_")]
        assert not shm, f"/dev/shm leftovers of pid {pid}: {shm}"


def _indexes_exist(root: Path, model_dir: Path) -> None:
    for index in (root / "figures.jsonl", root / "models.jsonl", model_dir / "prompts.jsonl"):
        assert index.is_file() and index.stat().st_size > 0, f"{index} missing"


def _first_hash(model_dir: Path) -> str:
    return json.loads((model_dir / "prompts.jsonl").read_text().splitlines()[0])["hash"]


# ---------------------------------------------------------------------------------------------------
# figure functions that exit, interrupt, run out of memory, hang, or kill their worker

EXPECTED_FIRST_LINE = {
    "exit0": "SystemExit: 0",
    "exit3": "SystemExit: 3",
    "keyboard_interrupt": "KeyboardInterrupt",
    "memory_error": "MemoryError: simulated: cannot allocate",
    "hang": "FigureTimeout: took longer than the time limit of 3 s (--timeout)",
    "os_exit": "worker process died (EXIT(0)): a crash, os._exit or the memory limit",
    "segfault": "worker process died (SIGSEGV(-11)): a crash, os._exit or the memory limit",
}


@pytest.mark.parametrize("jobs", ["1", "2", "default"])
def test_every_fault_of_a_figure_function_is_one_reported_head(tmp_path, jobs):
    """each fault costs its head only: reported in one line, the rest rendered, indexes written, exit 1

    With one job the functions run in the CLI's own process, where `os._exit` and a segfault end the
    process itself: those two are tested with process workers only. Without `--jobs` a run of a
    user's function gets workers however small it is (its cost and its crashes are unknown). The
    time limit counts a fresh worker's first call (imports, loading compiled kernels), hence 3 s on
    a loaded CI machine.
    """
    if jobs == "default" and (os.cpu_count() or 1) < 2:
        pytest.skip("the default uses workers only with 2 or more cores")
    model_dir = write_synthetic_model(tmp_path, n_layers=3, n_heads=4, n_ctx=128, n_prompts=2, seed=1)
    skip = "os_exit,segfault" if jobs == "1" else ""
    faults = {h: f for h, f in FAULTS.items() if f not in skip.split(",")}
    mark = uuid.uuid4().hex
    proc = subprocess.run(
        _cmd(tmp_path, model_dir.name, "--figure-funcs", "raw,misbehave", "--import", "fault_funcs",
             *(["--jobs", jobs] if jobs != "default" else []), "--timeout", "3", "--quiet"),
        cwd=REPO, env=_env(mark, FAULT_HASH=_first_hash(model_dir), FAULT_SKIP=skip, FAULTS=json.dumps(FAULTS)),
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "Fatal Python error" not in out, out
    if jobs != "1":
        assert "jobs, warm" in proc.stdout, "the faults must run in worker processes here"
    assert f"misbehave: {len(faults)} heads; first: " in proc.stdout, out
    assert "raw:" not in proc.stdout, "raw ran before misbehave on every head and must not be blamed"

    total = 2 * 3 * 4
    assert len(list(model_dir.rglob("raw.png"))) == total
    assert len(list(model_dir.rglob("misbehave.png"))) == total - len(faults)
    errors = {str(p.parent.relative_to(p.parents[2])): p for p in model_dir.rglob("misbehave.error.txt")}
    assert sorted(errors) == sorted(faults)
    for head, fault in faults.items():
        first = errors[head].read_text().splitlines()[0]
        assert first.startswith(EXPECTED_FIRST_LINE[fault]), (head, first)
    _indexes_exist(tmp_path, model_dir)
    _assert_no_leftovers(mark, tmp_path)


def _hangs_on_h1(attn, save_dir):
    if Path(save_dir).name == "H1":
        while True:
            time.sleep(0.05)
    atomic_write_bytes(Path(save_dir) / "_hangs_on_h1.bin", b"ok")


_hangs_on_h1.figure_save_fmt = "bin"


def test_time_limit_from_the_python_api(tmp_path):
    """the time limit makes a hung head that function's failure there; the other heads render"""
    model_dir = write_synthetic_model(tmp_path, n_layers=2, n_heads=2, n_ctx=16, n_prompts=1)
    t0 = time.perf_counter()
    summary = figures_main(model_dir.name, tmp_path, None, False, [_hangs_on_h1],
                           n_jobs=1, progress=False, verbose=False, timeout=0.5)
    assert time.perf_counter() - t0 < 30
    assert summary.failures["_hangs_on_h1"].count == 2
    assert summary.failures["_hangs_on_h1"].first_message.startswith("FigureTimeout: took longer than the time limit of 0.5 s")
    assert len(list(model_dir.rglob("_hangs_on_h1.bin"))) == 2


def _writes_nothing(attn, save_dir):
    pass  # declares a PNG, writes none


_writes_nothing.figure_save_fmt = "png"


def _writes_a_truncated_png(attn, save_dir):
    (Path(save_dir) / "_writes_a_truncated_png.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)


_writes_a_truncated_png.figure_save_fmt = "png"


def _plain_writes_nothing(attn, save_dir):
    pass  # no figure_save_fmt: the reference's rule, any `<name>.*` file is its output


def _plain_writes_a_file(attn, save_dir):
    atomic_write_bytes(Path(save_dir) / "_plain_writes_a_file.dat", b"ok")


def test_a_function_that_returns_without_its_outputs_has_failed(tmp_path):
    """returning normally is not enough: the declared files must be there and complete"""
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=8, n_prompts=1)
    funcs = [_writes_nothing, _writes_a_truncated_png, _plain_writes_nothing, _plain_writes_a_file]
    summary = figures_main(model_dir.name, tmp_path, None, False, funcs, n_jobs=1, progress=False, verbose=False)
    assert not summary.ok and summary.n_outputs == 2, summary.format()
    assert sorted(summary.failures) == ["_plain_writes_nothing", "_writes_a_truncated_png", "_writes_nothing"]
    assert all(s.count == 2 for s in summary.failures.values())
    assert summary.failures["_writes_nothing"].first_message.endswith("did not write _writes_nothing.png (missing)")
    truncated = summary.failures["_writes_a_truncated_png"].first_message
    assert "did not write _writes_a_truncated_png.png (truncated PNG" in truncated, truncated
    assert "did not write any _plain_writes_nothing.* file" in summary.failures["_plain_writes_nothing"].first_message
    head = model_dir / "prompts" / _first_hash(model_dir) / "L0" / "H0"
    assert (head / "_writes_nothing.error.txt").read_text().splitlines()[0].endswith("did not write _writes_nothing.png (missing)")
    assert not (head / "_writes_a_truncated_png.png").exists()  # a broken file is not left as if it were a figure
    assert (head / "_plain_writes_a_file.dat").is_file() and not (head / "_plain_writes_a_file.error.txt").exists()


def _raises_three_lines(attn, save_dir):
    raise ValueError("first line\nsecond line\n\tthird line")


_raises_three_lines.figure_save_fmt = "png"


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_multi_line_exception_message_is_one_line_in_the_summary_and_error_file(tmp_path, jobs):
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=8, n_prompts=1)
    summary = figures_main(model_dir.name, tmp_path, None, False, [_raises_three_lines], n_jobs=jobs,
                           progress=False, verbose=False)
    stat = summary.failures["_raises_three_lines"]
    assert stat.count == 2 and stat.first_message == "ValueError: first line second line third line"
    failure_lines = [line for line in summary.format().splitlines() if "_raises_three_lines" in line]
    assert len(failure_lines) == 1 and "first line second line third line" in failure_lines[0]
    text = Path(stat.first_where).read_text()
    assert text.splitlines()[0] == "ValueError: first line second line third line"
    assert "Traceback (most recent call last)" in text  # the traceback follows on later lines


# ---------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM of the run


def test_a_run_started_ignoring_sigint_keeps_ignoring_it(tmp_path):
    """a shell's background job starts with SIGINT ignored (a Ctrl-C for the foreground must not stop
    it): the run leaves it so, renders everything and exits 0"""
    model_dir = write_synthetic_model(tmp_path, n_layers=2, n_heads=4, n_ctx=32, n_prompts=3, seed=2)
    mark = uuid.uuid4().hex
    cmd = _cmd(tmp_path, model_dir.name, "--figure-funcs", "slow", "--import", "fault_funcs", "--jobs", "2", "--no-index-html")
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(mark), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    stdout, stderr = interrupt_when(proc, lambda: len(list(model_dir.rglob("slow.png"))) >= 3, signal.SIGINT)
    assert proc.returncode == 0, stdout + stderr
    assert len(list(model_dir.rglob("slow.png"))) == 24
    _assert_no_leftovers(mark, tmp_path)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_prints_one_line_exits_128_plus_signal_and_resumes(tmp_path, signum):
    model_dir = write_synthetic_model(tmp_path, n_layers=2, n_heads=4, n_ctx=32, n_prompts=3, seed=2)
    mark = uuid.uuid4().hex
    cmd = _cmd(tmp_path, model_dir.name, "--figure-funcs", "slow", "--import", "fault_funcs", "--jobs", "2")
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(mark), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # SIGINT to the whole group (Ctrl-C in a terminal), SIGTERM to the main process only (a job scheduler)
    stdout, stderr = interrupt_when(proc, lambda: len(list(model_dir.rglob("slow.png"))) >= 3, signum)
    assert_one_interrupt_line(proc, signum, stdout, stderr)
    _indexes_exist(tmp_path, model_dir)
    _assert_no_leftovers(mark, tmp_path, pid=proc.pid)
    done = sum((h / "preview.png").is_file() for h in (p.parent for p in model_dir.rglob("slow.png")))
    assert done < 24  # done: the figure and the head's summary (its preview) are there

    rerun = subprocess.run([*cmd, "--quiet"], cwd=REPO, env=_env(mark), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{done} already done" in rerun.stdout
    assert len(list(model_dir.rglob("slow.png"))) == 24
    _assert_no_leftovers(mark, tmp_path)


def _messages(stderr: str) -> list[str]:
    """stderr's lines without the progress bar's"""
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines()]
    return [line for line in lines if line and "%|" not in line and "head/s" not in line and "it/s" not in line]


@pytest.mark.parametrize("delay", [0.25, 0.5, 0.8, 1.2, 1.7, 2.3])
def test_ctrl_c_early_in_a_run_is_one_line_and_exit_130(tmp_path, delay):
    """Ctrl-C while the parser is built, modules import, workers start or warm: never a traceback

    The signal goes to the whole process group, as a terminal sends it: the workers loky is still
    starting get it too. (Before ~0.1 s the interpreter itself is starting, which no code of the
    package can catch.)
    """
    model_dir = write_synthetic_model(tmp_path, n_layers=4, n_heads=4, n_ctx=32, n_prompts=3, seed=2)
    mark = uuid.uuid4().hex
    cmd = _cmd(tmp_path, model_dir.name, "--figure-funcs", "slow", "--import", "fault_funcs", "--jobs", "2",
               "--no-index-html")
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(mark), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    at = time.monotonic() + delay
    stdout, stderr = interrupt_when(proc, lambda: time.monotonic() >= at, signal.SIGINT)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 130, stdout + stderr
    messages = _messages(stderr)
    assert len(messages) == 1 and messages[0].startswith("interrupted"), stderr
    _assert_no_leftovers(mark, tmp_path, pid=proc.pid)


_CTRL_C_AS_IT_EXITS = (
    "import atexit, os, signal, sys, time\n"
    "def at_exit():  # registered before any import: runs last of the exit functions, the command over\n"
    "    import psutil\n"
    "    workers = [p for p in psutil.Process().children() if 'resource_tracker' not in ' '.join(p.cmdline())]\n"
    "    print('workers left:', len(workers), flush=True)\n"
    "    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the process exits\n"
    "    time.sleep(0.3)\n"
    "atexit.register(at_exit)\n"
    "from pattern_lens.cli import console_main\n"
    "sys.argv = ['pattern-lens', *sys.argv[1:]]\n"
    "sys.exit(console_main())  # what the console script runs\n"
)


@pytest.mark.parametrize("backend", ["loky", "warm"])
def test_ctrl_c_as_the_process_exits_changes_nothing(tmp_path, backend):
    """a Ctrl-C after the last file was written, while Python shuts down (where loky joins its
    threads), printed a traceback and exited 0 whatever the run's code: ignored now, the run's code
    stands; and the command stops its workers before it returns, so nothing is left to join"""
    model_dir = write_synthetic_model(tmp_path, n_layers=2, n_heads=2, n_ctx=16, n_prompts=2, seed=2)
    mark = uuid.uuid4().hex
    args = ["render", "-m", model_dir.name, "-s", str(tmp_path), "--backend", backend, "--jobs", "2", "-q"]
    proc = subprocess.run([sys.executable, "-c", _CTRL_C_AS_IT_EXITS, *args], cwd=REPO, env=_env(mark),
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "workers left: 0" in proc.stdout, proc.stdout
    assert f"[2 jobs, {backend}" in proc.stdout, proc.stdout
    assert len(list(model_dir.rglob("raw.png"))) == 8
    _assert_no_leftovers(mark, tmp_path)


_EXIT_HOOKS_MODULE = """
import atexit, os, signal, sys, threading, time
from pathlib import Path

from pattern_lens.attn_figure_funcs import register_attn_figure_func

OUT = Path(__file__).parent

def _late_thread():  # a non-daemon thread still working when the command ends
    threading.main_thread().join()  # returns only once the process exits (threading's shutdown)
    time.sleep(0.3)
    (OUT / "thread_done").write_text("ok")

def _at_exit():
    (OUT / "atexit_done").write_text("ok")
    sys.stdout.write("said at exit, never flushed")  # no newline, no flush: the exit flushes it
    os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C while the process exits changes nothing
    time.sleep(0.2)

class _Teardown:  # the interpreter's teardown of this module's objects: what the quick exit skips
    def __del__(self):
        (OUT / "torn_down").write_text("ok")

KEPT = _Teardown()

@register_attn_figure_func
def boom(attn, save_dir):
    raise ValueError("this figure fails")

atexit.register(_at_exit)
threading.Thread(target=_late_thread).start()
"""


@pytest.mark.parametrize("figure_funcs,code", [("raw", 0), ("raw,boom", 1)])
def test_the_command_process_ends_as_the_interpreter_would(tmp_path, figure_funcs, code):
    """the command process skips the interpreter's teardown of every object (`_command._end_process`),
    not its exit work: non-daemon threads are joined, `atexit` functions run, stdout is flushed, a
    Ctrl-C then is ignored, the code stands"""
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=16, n_prompts=1, seed=2)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "exit_hooks.py").write_text(_EXIT_HOOKS_MODULE)
    env = _env(uuid.uuid4().hex)
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), env["PYTHONPATH"]])
    env.pop("PYTHONUNBUFFERED", None)  # stdout buffered, as in a user's shell: the exit must flush it
    proc = subprocess.run(
        _cmd(tmp_path, model_dir.name, "--import", "exit_hooks", "--figure-funcs", figure_funcs, "--jobs", "1",
             "--no-index-html", "-q"),
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.endswith("said at exit, never flushed"), proc.stdout
    assert (hooks / "atexit_done").read_text() == "ok"
    assert (hooks / "thread_done").read_text() == "ok"
    assert not (hooks / "torn_down").exists()  # the quick exit was taken
    assert len(list(model_dir.rglob("raw.png"))) == 2
    if code:
        assert "this figure fails" in proc.stderr + proc.stdout


def test_output_that_cannot_be_flushed_at_exit_is_reported_and_exits_120(tmp_path):
    """stdout on a full disk (`/dev/full`): the interpreter's own exit says so and exits 120; so does
    the quick exit"""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=1, n_ctx=16, n_prompts=1, seed=2)
    env = _env(uuid.uuid4().hex)
    env.pop("PYTHONUNBUFFERED", None)
    with open("/dev/full", "w") as full:
        proc = subprocess.run(_cmd(tmp_path, model_dir.name, "--jobs", "1", "--no-index-html", "-q"),
                              cwd=REPO, env=env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 120, proc.stderr
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("orig_argv, argv0, ours", [
    (["python", "-m", "pattern_lens.cli", "render"], "/x/pattern_lens/cli.py", True),
    (["python", "-X", "importtime", "-u", "-m", "pattern_lens.figures"], "/x/pattern_lens/figures.py", True),
    (["python", "-mpattern_lens.cli"], "/x/pattern_lens/cli.py", True),
    (["/venv/bin/python", "/venv/bin/pattern-lens", "render"], "/venv/bin/pattern-lens", True),
    (["python", "-m", "cProfile", "-o", "f", "-m", "pattern_lens.cli"], "/x/pattern_lens/cli.py", False),
    (["python", "-m", "pdb", "-m", "pattern_lens.cli"], "/x/pattern_lens/cli.py", False),
    (["python", "my_script.py"], "my_script.py", False),  # a script of the user's that calls console_main() and goes on
    (["python", "-c", "from pattern_lens.cli import console_main; console_main()"], "-c", False),
    (["ipython"], "/usr/bin/ipython", False),
])
def test_the_quick_exit_is_only_for_an_interpreter_started_for_the_command(monkeypatch, orig_argv, argv0, ours):
    from pattern_lens import _command

    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    monkeypatch.setattr(sys, "argv", [argv0])
    monkeypatch.setattr(sys, "gettrace", lambda: None)  # as without pytest's own tools
    monkeypatch.setattr(sys, "getprofile", lambda: None)
    assert _command._started_for_this_command() is ours


def test_an_error_in_threadings_shutdown_is_reported_and_the_exit_goes_on(monkeypatch, capsys):
    """the interpreter reports an exception of `threading._shutdown` and goes on exiting: so does
    the quick exit (the `atexit` functions still run, the command's code stands)"""
    from pattern_lens import _command

    def broken_shutdown():
        raise RuntimeError("a thread hook failed")

    ran, ended = [], []
    monkeypatch.setattr(threading, "_shutdown", broken_shutdown)
    monkeypatch.setattr(_command.atexit, "_run_exitfuncs", lambda: ran.append(True))
    monkeypatch.setattr(_command.os, "_exit", ended.append)
    _command._end_process(3)
    assert ran == [True] and ended == [3]
    err = capsys.readouterr().err
    assert "Exception ignored on threading shutdown" in err and "a thread hook failed" in err


_TEARDOWN_MARKER = """
import os

class _Teardown:  # finalised by the interpreter's teardown, which the quick exit skips
    def __del__(self):
        open(os.environ["TEARDOWN_MARKER"], "w").close()

KEPT = _Teardown()
"""


@pytest.mark.parametrize("args, code, where", [
    (["--help"], 0, "stdout"),
    (["render", "--help"], 0, "stdout"),
    (["render", "--no-such-option"], 2, "stderr"),
])
def test_help_and_a_bad_command_line_take_the_quick_exit_too(tmp_path, args, code, where):
    """argparse ends the command with `SystemExit`: the same exit code and usage text, flushed (with
    `PYTHONUNBUFFERED` off), through the quick exit (a `sitecustomize` object's finaliser never runs)"""
    (tmp_path / "sitecustomize.py").write_text(_TEARDOWN_MARKER)
    env = _env(uuid.uuid4().hex, TEARDOWN_MARKER=str(tmp_path / "torn_down"))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    env.pop("PYTHONUNBUFFERED", None)
    proc = subprocess.run([sys.executable, "-m", "pattern_lens.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "usage: pattern-lens" in getattr(proc, where), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "torn_down").exists()


def test_a_message_in_systemexit_is_printed_and_exits_1(capsys):
    from pattern_lens import _command

    assert _command._exit_code(SystemExit("stopped: no model")) == 1
    assert capsys.readouterr().err == "stopped: no model\n"
    assert _command._exit_code(SystemExit(None)) == 0 and _command._exit_code(SystemExit(2)) == 2


def test_a_ctrl_c_that_an_import_turned_into_an_import_error_is_one_line(capsys):
    """CPython turns a Ctrl-C inside a C extension's initialisation into that import's
    `ImportError: initialization failed` (seen: matplotlib's ft2font while the CLI imports, a Ctrl-C
    0.5 s in, printed a traceback): it is the interruption, one line and 130; other errors still raise"""
    from pattern_lens._command import run_guarded

    def import_interrupted() -> int:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise ImportError("initialization failed") from e

    assert run_guarded(import_interrupted) == 130
    assert capsys.readouterr().err == "interrupted\n"

    def import_failed() -> int:
        raise ImportError("no module named nowhere")

    with pytest.raises(ImportError):
        run_guarded(import_failed)


def test_a_profiled_command_still_writes_its_profile(tmp_path):
    """`python -m cProfile -o F -m pattern_lens.cli ...` writes F after the command returns: the
    command process then takes the interpreter's own exit (`_end_process` would have ended it first)"""
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=16, n_prompts=1, seed=2)
    out = tmp_path / "render.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), *_cmd(tmp_path, model_dir.name, "--jobs", "1", "-q")[1:]]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(uuid.uuid4().hex), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import pstats

    assert pstats.Stats(str(out)).total_calls > 0


_BAR_INTERRUPTED_WHILE_MADE = (
    "import sys, tqdm.std\n"
    "from pattern_lens._progress import ProgressBar\n"
    "def ctrl_c(bar, *args):  # a Ctrl-C inside tqdm's __init__, before it sets `pos`\n"
    "    print('half made:', not hasattr(bar, 'pos'), file=sys.stderr)\n"
    "    raise KeyboardInterrupt\n"
    "tqdm.std.tqdm._get_free_pos = ctrl_c\n"
    "try:\n"
    "    ProgressBar(total=3, file=sys.stderr)\n"
    "except KeyboardInterrupt:\n"
    "    print('interrupted', file=sys.stderr)\n"
    "import gc; gc.collect()\n"
)


def test_a_progress_bar_interrupted_while_it_is_made_says_nothing():
    """a Ctrl-C inside tqdm's `__init__` (a run interrupted 0.5 s in): tqdm's own finaliser then
    printed "Exception ignored ... no attribute 'pos'" with a traceback (tqdm 4.67); the run's bar
    says nothing"""
    proc = subprocess.run([sys.executable, "-c", _BAR_INTERRUPTED_WHILE_MADE], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.split() == ["half", "made:", "True", "interrupted"], proc.stderr


def test_main_called_from_python_leaves_the_callers_ctrl_c_alone(tmp_path):
    """`main()` with a patched `sys.argv` (as the reference's tests call its mains) is not the
    process's own command: Ctrl-C still raises in the caller afterwards"""
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=16, n_prompts=1, seed=2)
    script = (
        "import signal, sys\n"
        "from pattern_lens.cli import main\n"
        "sys.argv = ['pattern-lens', *sys.argv[1:]]\n"
        "code = main()\n"
        "print('default handler:', signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, "render", "-m", model_dir.name, "-s", str(tmp_path), "-q", "--jobs", "2"],
                          cwd=REPO, env=_env(uuid.uuid4().hex), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "default handler: True" in proc.stdout, proc.stdout


# ---------------------------------------------------------------------------------------------------
# outputs that cannot be written, and outputs that are there but broken


def test_an_index_that_cannot_be_written_is_reported_after_every_head(tmp_path):
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=3, n_ctx=16, n_prompts=2)
    (tmp_path / "figures.jsonl").mkdir()  # the index's place is taken: writing it fails (even as root)
    summary = figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    assert not summary.ok and summary.n_outputs == 6
    assert len(list(model_dir.rglob("raw.png"))) == 6
    assert any("figures.jsonl: cannot write the index (IsADirectoryError" in m for m in summary.input_errors)
    assert (tmp_path / "models.jsonl").is_file() and (model_dir / "prompts.jsonl").is_file()
    assert "cannot write the index" in summary.format()


def test_broken_outputs_are_redone_and_reported(tmp_path):
    """resume trusts no file name: empty, truncated, non-PNG, linked and folder outputs are redone or failed"""
    model_dir = write_synthetic_model(tmp_path / "run", n_layers=1, n_heads=6, n_ctx=24, n_prompts=1, seed=3)
    clean_dir = write_synthetic_model(tmp_path / "clean", n_layers=1, n_heads=6, n_ctx=24, n_prompts=1, seed=3)
    run = dict(n_samples=None, force=False, figure_funcs_select="raw",
               n_jobs=1, progress=False, verbose=False)
    assert figures_main(model_dir.name, tmp_path / "run", **run).ok
    assert figures_main(clean_dir.name, tmp_path / "clean", **run).ok
    heads = sorted(model_dir.rglob("raw.png"))
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not yours")
    heads[0].write_bytes(b"")  # 0 bytes
    heads[1].write_bytes(heads[1].read_bytes()[:-20])  # truncated: no IEND
    heads[2].write_bytes(b"GIF89a" + b"\0" * 100)  # not a PNG
    heads[3].unlink()
    heads[3].symlink_to(outside)  # a link: redone as a file, the target untouched
    heads[4].unlink()
    heads[4].mkdir()  # a folder where the file should be: cannot be replaced, reported
    summary = figures_main(model_dir.name, tmp_path / "run", **run)
    assert len(summary.repaired) == 5, summary.repaired
    assert any("empty (0 bytes)" in m for m in summary.repaired)
    assert any("truncated PNG" in m for m in summary.repaired)
    assert any("not a PNG" in m for m in summary.repaired)
    assert any("symbolic link" in m for m in summary.repaired)
    assert any("not a regular file" in m for m in summary.repaired)
    assert summary.failures["raw"].count == 1 and not summary.ok  # the folder
    assert outside.read_bytes() == b"not yours"
    for h in heads[:4]:
        rel = h.relative_to(model_dir)
        assert h.is_file() and not h.is_symlink()
        assert h.read_bytes() == (clean_dir / rel).read_bytes()
    assert "were broken and were redone" in summary.format()


# ---------------------------------------------------------------------------------------------------
# bad input costs its prompt only


def test_a_bad_line_in_prompts_jsonl_costs_that_prompt_only(tmp_path):
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=16, n_prompts=3)
    lines = (model_dir / "prompts.jsonl").read_text().splitlines()
    (model_dir / "prompts.jsonl").write_text("\n".join([lines[0], "{not json", "[1, 2]", *lines[1:]]) + "\n")
    summary = figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    assert not summary.ok
    assert summary.n_outputs == 3 * 2
    assert any("prompts.jsonl:2: not valid JSON" in m for m in summary.input_errors), summary.input_errors
    assert any("prompts.jsonl:3: expected a JSON object, got list" in m for m in summary.input_errors)


def test_a_line_that_is_not_utf8_costs_that_prompt_only(tmp_path):
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=16, n_prompts=3)
    index = model_dir / "prompts.jsonl"
    lines = index.read_bytes().splitlines()
    index.write_bytes(b"\n".join([lines[0], b'{"hash": "x\xff"}', *lines[1:]]) + b"\n")
    summary = figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    assert summary.n_outputs == 3 * 2 and not summary.ok
    assert [m for m in summary.input_errors if f"{index}:2: not valid UTF-8" in m], summary.input_errors
    assert len(summary.input_errors) == 1


def test_the_index_keeps_its_good_rows_in_order_after_a_bad_line(tmp_path):
    """a bad line must not cost the index its order, or the rows whose prompt.json is missing"""
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=1, n_ctx=8, n_prompts=4)
    index = model_dir / "prompts.jsonl"
    rows = [json.loads(line) for line in index.read_text().splitlines()]
    rows = [rows[2], rows[0], rows[3], rows[1]]  # an order that is not the folders' (sorted) order
    (model_dir / "prompts" / rows[1]["hash"] / "prompt.json").unlink()
    index.write_bytes(b"".join((json.dumps(r) + "\n").encode() for r in rows[:2]) + b"{bad\n\xff\xfe\n"
                      + b"".join((json.dumps(r) + "\n").encode() for r in rows[2:]))
    summary = figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    assert summary.n_outputs == 4 and len(summary.input_errors) == 3, summary.input_errors  # 2 bad lines, 1 prompt.json
    after = [json.loads(line)["hash"] for line in index.read_text().splitlines()]
    assert after == [r["hash"] for r in rows]
    # the row without prompt.json is still there, so the next run still renders (and reports) that prompt
    summary = figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    assert summary.n_prompts == 4 and summary.n_skipped == 4


def test_a_prompt_without_prompt_json_is_rendered_and_reported(tmp_path):
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=16, n_prompts=2)
    missing = model_dir / "prompts" / _first_hash(model_dir) / "prompt.json"
    missing.unlink()
    summary = figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    assert summary.n_outputs == 4 and not summary.ok
    assert any(str(missing) in m and "missing" in m for m in summary.input_errors)


# ---------------------------------------------------------------------------------------------------
# nothing is written outside the save path


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_model_name_dot_dot_is_refused_by_the_cli(tmp_path):
    save = tmp_path / "save"
    model_dir = write_synthetic_model(save, n_layers=1, n_heads=1, n_ctx=8, n_prompts=1)
    # a model config in the save path's parent: `-m ..` would render the save path's parent
    (tmp_path / "model_cfg.json").write_text((model_dir / "model_cfg.json").read_text())
    (tmp_path / "prompts.jsonl").write_text("")
    before = _snapshot(tmp_path)
    proc = subprocess.run(_cmd(save, "..", "--quiet"), cwd=REPO, env=_env("x"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: model name '..' is not a folder name (sanitised: '..'); expected e.g. 'pythia-14m'"
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("link", ["model", "prompt", "layer"])
def test_symlinks_that_leave_the_save_path_are_refused(tmp_path, link):
    save, elsewhere = tmp_path / "save", tmp_path / "elsewhere"
    model_dir = write_synthetic_model(save, n_layers=2, n_heads=2, n_ctx=8, n_prompts=2)
    h = _first_hash(model_dir)
    if link == "model":  # the whole model folder lives elsewhere
        model_dir.rename(elsewhere)
        model_dir.symlink_to(elsewhere)
    elif link == "prompt":
        (model_dir / "prompts" / h).rename(elsewhere)
        (model_dir / "prompts" / h).symlink_to(elsewhere)
    else:
        elsewhere.mkdir()
        (model_dir / "prompts" / h / "L0").symlink_to(elsewhere)
    before = _snapshot(elsewhere)
    if link == "model":
        with pytest.raises(InputError, match="leads outside the save path"):
            figures_main(model_dir.name, save, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    else:
        summary = figures_main(model_dir.name, save, None, False, "raw", n_jobs=1, progress=False, verbose=False)
        assert not summary.ok
        assert any("leads outside the save path" in m for m in summary.input_errors)
        assert summary.n_outputs == (4 if link == "prompt" else 6)  # the other prompt / layer rendered
    assert _snapshot(elsewhere) == before


@pytest.mark.parametrize("where", ["model", "prompt", "L0", "H0"])
@pytest.mark.parametrize("jobs", [1, None])
def test_a_symlink_loop_is_refused_with_a_message_naming_it(tmp_path, where, jobs):
    """a folder that is a link to itself: `Path.resolve()` raises RuntimeError; it must be a refusal"""
    model_dir = write_synthetic_model(tmp_path, n_layers=2, n_heads=2, n_ctx=8, n_prompts=2)
    prompt = model_dir / "prompts" / _first_hash(model_dir)
    loop = {"model": model_dir, "prompt": prompt, "L0": prompt / "L0", "H0": prompt / "L0" / "H0"}[where]
    if loop.exists():
        import shutil

        shutil.rmtree(loop)
    loop.parent.mkdir(parents=True, exist_ok=True)
    loop.symlink_to(loop.name)  # a link to itself
    if where == "model":
        with pytest.raises(InputError, match=str(loop)):
            figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=jobs, progress=False, verbose=False)
        return
    summary = figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=jobs, progress=False, verbose=False)
    assert not summary.ok
    assert [m for m in summary.input_errors if str(loop) in m and "\n" not in m], summary.input_errors
    lost = {"prompt": 4, "L0": 2, "H0": 1}[where]
    assert summary.n_outputs == 8 - lost, summary.format()  # the rest rendered
    _indexes_exist(tmp_path, model_dir)


def test_compute_and_save_figures_refuses_folders_outside_the_save_path(tmp_path):
    save, outside = tmp_path / "save", tmp_path / "outside"
    outside.mkdir()
    model_dir = write_synthetic_model(save, n_layers=1, n_heads=1, n_ctx=8, n_prompts=1)
    cfg = HTConfigMock(**json.loads((model_dir / "model_cfg.json").read_text()))
    prompt = model_dir / "prompts" / _first_hash(model_dir)
    (prompt / "L0").symlink_to(outside)
    before = _snapshot(outside)
    with pytest.raises(InputError, match="leads outside the save path"):
        compute_and_save_figures(cfg, prompt / "activations.npz", np.zeros((1, 1, 4, 4)), [_named("f", "png")], save)
    with pytest.raises(InputError, match="leads outside the save path"):  # activations_path not under save_path
        compute_and_save_figures(cfg, outside / "activations.npz", np.zeros((1, 1, 4, 4)), [_named("f", "png")], save)
    assert _snapshot(outside) == before


def test_python_api_refuses_hashes_and_model_names_that_leave_the_save_path(tmp_path):
    save = tmp_path / "a" / "b" / "save"
    model_dir = write_synthetic_model(save, n_layers=1, n_heads=1, n_ctx=8, n_prompts=1)
    cfg = HTConfigMock(**json.loads((model_dir / "model_cfg.json").read_text()))
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match="is not a folder name"):
        process_prompt({"hash": "../../../x"}, cfg, save, [_named("f", "png")])
    bad_cfg = HTConfigMock(**{**cfg.__dict__, "model_name": ".."})
    with pytest.raises(InputError, match="is not a folder name"):
        compute_and_save_figures(bad_cfg, save / "x" / "activations.npz", np.zeros((1, 1, 4, 4)), [_named("f", "png")], save)
    assert _snapshot(tmp_path) == before


def _named(name: str, fmt: str):
    # a file that passes the completeness check: a broken one is deleted after the call, which would
    # hide a write that escaped
    data = PNG_SIGNATURE + PNG_IEND if fmt == "png" else b"x"

    def func(attn, save_dir):
        atomic_write_bytes(Path(save_dir) / f"{name}.{fmt}", data)

    func.__name__ = name
    func.figure_save_fmt = fmt
    return func


ABSOLUTE = "<abs>"
"in a hostile name, stands for the test's own temporary root: an absolute name that lands where it is watched"

_hostile = st.one_of(
    st.sampled_from([
        "..", ".", "", "../..", "../x", "../../../x", "../../../../x", "a/../../b", "..\\..\\x", "~", "x\0y", " ",
        f"{ABSOLUTE}/x", f"{ABSOLUTE}/d1/d2/x", "../../../../../../../x",
    ]),
    st.text(alphabet=st.sampled_from(list("./\\~x0_- \0")), max_size=12),
)


def _placed(name: str, top: Path) -> str:
    """`name` with `ABSOLUTE`, or a leading `/`, made a path under `top`: an escape through an absolute
    name then writes where the snapshot sees it, never into the real root folder"""
    name = name.replace(ABSOLUTE, str(top))
    return str(top) + name if name.startswith("/") and not name.startswith(str(top)) else name


def _plant(target: Path, top: Path, save: Path, source: Path) -> None:
    """copy `source` (a model folder, or a prompt's activations) to `target` when that is under `top`
    but outside `save`: code that followed the hostile name there would find real input and write
    beside it, so a missing guard shows in the snapshot"""
    import shutil

    target = Path(os.path.normpath(target))
    if "\0" in str(target) or not target.is_relative_to(top) or target.is_relative_to(save):
        return  # not watched, or inside the save path (allowed); an ancestor of the save path is planted
    if source.is_dir():
        for item in source.iterdir():  # merge: `target` may be an ancestor of the save path
            dest = target / item.name
            if not dest.exists():
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, dest)
    elif not (target / source.name).exists():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / source.name)


@settings(max_examples=60, deadline=None)
@given(model=_hostile, prompt_hash=_hostile, figure=_hostile, fmt=st.sampled_from(["png", "bin", "", "/x", ".."]))
@example(model="..", prompt_hash="../../../x", figure=f"{ABSOLUTE}/x", fmt="png")
@example(model="..", prompt_hash=f"{ABSOLUTE}/d1/d2/x", figure="../../../../../../../x", fmt="png")
@example(model="x", prompt_hash="../../../../x", figure="f", fmt="/x")
@example(model="x", prompt_hash="../../../x", figure="f", fmt="png")
@example(model="..", prompt_hash="x", figure="f", fmt="png")
def test_hostile_names_never_write_outside_the_save_path(tmp_path_factory, model, prompt_hash, figure, fmt):
    """every API that takes a model name, a prompt hash or figure names, fed hostile ones

    Real input waits wherever a hostile name leads (`_plant`), and absolute names point into the
    test's own root (`_placed`), so code without its guard renders there and fails the snapshot
    (checked by disabling each guard in turn: the model name's, the hash's, the symlink / folder
    check's and the figure names').
    """
    top = tmp_path_factory.mktemp("hostile")
    save = top / "d1" / "d2" / "save"
    model, prompt_hash, figure = (_placed(x, top) for x in (model, prompt_hash, figure))
    model_dir = write_synthetic_model(save, n_layers=1, n_heads=1, n_ctx=4, n_prompts=1)
    good_hash = _first_hash(model_dir)
    cfg_data = json.loads((model_dir / "model_cfg.json").read_text())
    if sanitize_model_name(model) not in ("", ".", ".."):  # a sanitised name that could be a folder: give it a model
        write_synthetic_model(save, model_name=model, n_layers=1, n_heads=1, n_ctx=4, n_prompts=1)
    _plant(save / sanitize_model_name(model), top, save, model_dir)  # figures_main / process_prompt with the model name
    _plant(model_dir / "prompts" / prompt_hash, top, save, model_dir / "prompts" / good_hash / "activations.npz")
    outside_before = _snapshot(top) - {p for p in _snapshot(top) if p.startswith(str(Path("d1/d2/save")))}
    func = _named(figure, fmt)
    attempts = [
        lambda: figures_main(model, save, None, False, [func], n_jobs=1, progress=False, verbose=False),
        lambda: process_prompt({"hash": prompt_hash}, HTConfigMock(**cfg_data), save, [func]),
        lambda: process_prompt({"hash": good_hash}, HTConfigMock(**{**cfg_data, "model_name": model}), save, [func]),
        lambda: compute_and_save_figures(HTConfigMock(**cfg_data), model_dir / "prompts" / prompt_hash / "activations.npz",
                                         np.eye(2)[None, None], [func], save),
        lambda: process_single_head(0, 0, np.eye(2), model_dir / "prompts" / good_hash / "L0" / "H0", [func]),
    ]
    for attempt in attempts:
        try:
            attempt()
        except (PatternLensError, ValueError, OSError):
            pass
    after = _snapshot(top)
    outside_after = after - {p for p in after if p.startswith(str(Path("d1/d2/save")))}
    assert outside_after == outside_before


# ---------------------------------------------------------------------------------------------------
# the numba cache, for any user and for many processes at once

_KERNEL_CALL = (
    "import numpy as np\n"
    "from pattern_lens.kernels import _jit\n"
    "from pattern_lens.kernels.colormap import lut_indices\n"
    "x = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)\n"
    "out = np.empty(x.shape, np.uint8)\n"
    "lut_indices(x, np.float32(0), np.float32(1), np.float32(0), np.float32(256), 256, out)\n"
    "assert out.min() == 0 and out.max() == 255, out\n"
    "print(_jit.CACHE)\n"
)


def test_eight_processes_compile_into_an_empty_cache_at_once(tmp_path):
    """numba#4807: processes writing and loading one cache at once, from an empty cache, twice"""
    for trial in range(2):
        cache = tmp_path / f"cache{trial}"
        env = _env("numba", NUMBA_CACHE_DIR=str(cache))
        procs = [subprocess.Popen([sys.executable, "-c", _KERNEL_CALL], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        for rc, out, err in results:
            assert rc == 0 and out.strip() == "True", (trial, err[-2000:])
            assert "Warning" not in err, err
        assert list(cache.rglob("*.nbi")), "the kernels were cached"


def test_numba_cache_works_with_a_read_only_package_and_home(tmp_path):
    """a shared install: no writable __pycache__ beside the kernels, HOME not writable"""
    import shutil

    copy = tmp_path / "install"
    copy.mkdir()
    shutil.copytree(REPO / "kernels", copy / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "pattern_lens", copy / "pattern_lens", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "kernels" / "__pycache__").write_text("")  # a file: numba cannot create its cache folder here
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update(HOME="/dev/null", XDG_CACHE_HOME="/dev/null/cache", TMPDIR=str(tmp_path / "tmp"), PYTHONPATH=str(copy))
    (tmp_path / "tmp").mkdir()
    proc = subprocess.run([sys.executable, "-c", _KERNEL_CALL], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "True" and "Warning" not in proc.stderr
    private = tmp_path / "tmp" / f"pattern_lens-numba-{os.getuid()}"
    assert (private.stat().st_mode & 0o777) == 0o700 and list(private.rglob("*.nbi"))

    # the private folder taken by something else (here a file): compiled in the process, one warning
    shutil.rmtree(private)
    private.write_text("")
    proc = subprocess.run([sys.executable, "-c", _KERNEL_CALL], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "False"
    assert proc.stderr.count("no writable numba cache folder") == 1

    # a whole run whose worker processes import the kernels again (loky spawns them): one warning
    from pattern_lens.synthetic import write_synthetic_model

    model = write_synthetic_model(tmp_path / "data", n_layers=2, n_heads=2, n_ctx=16, n_prompts=2, seed=3)
    proc = subprocess.run([sys.executable, "-m", "pattern_lens.cli", "render", "-m", model.name, "-s", str(tmp_path / "data"),
                           "--figure-funcs", "raw", "--backend", "loky", "--jobs", "2", "-q"],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "[2 jobs, loky" in proc.stdout, proc.stdout
    assert proc.stderr.count("no writable numba cache folder") == 1, proc.stderr


# ---------------------------------------------------------------------------------------------------
# an exception outside the figure functions costs what it touches, not the task around it


def _claim_a_huge_layer(npz: Path, key: str, n_heads: int) -> None:
    """rewrite `key` of `npz` with a header claiming (1, n_heads, 300000, 300000) float32 on 1 KiB of data"""
    import io
    import zipfile

    with zipfile.ZipFile(npz) as z:
        members = {n: z.read(n) for n in z.namelist()}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (1, n_heads, 300000, 300000)})
    members[f"{key}.npy"] = buf.getvalue() + b"\0" * 1024
    with zipfile.ZipFile(npz, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_layer_that_cannot_be_read_costs_that_layer_only(tmp_path, jobs):
    """the issue's `.npy` header claiming (1, 3, 300000, 300000) on 1 KB: one layer of one prompt lost"""
    model_dir = write_synthetic_model(tmp_path, n_layers=3, n_heads=3, n_ctx=16, n_prompts=2)
    bad = model_dir / "prompts" / _first_hash(model_dir) / "activations.npz"
    _claim_a_huge_layer(bad, "blocks.1.attn.hook_pattern", 3)
    summary = figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=jobs, progress=False, verbose=False)
    assert not summary.ok
    # heads rendered before the failure in the same task count as already done when its parts rerun
    assert summary.n_rendered + summary.n_skipped == 2 * 3 * 3 - 3, summary.format()
    assert summary.n_input_error_heads == 3
    assert len(summary.input_errors) == 1 and str(bad.parent) in summary.input_errors[0]
    assert "\n" not in summary.input_errors[0]
    assert len(list(model_dir.rglob("raw.png"))) == 15
