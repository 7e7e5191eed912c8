"""interrupting a real run as a terminal or a job scheduler would, and checking what it said (tests only)"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

MARK: str = "PATTERN_LENS_TEST_MARK"
"the environment variable a test's child processes carry, so the test can find them (and only them)"

_REPO = Path(__file__).resolve().parents[1]


def child_env(mark: str, **extra: str) -> dict[str, str]:
    """this environment for a child process: this checkout and tests/ on `PYTHONPATH`, `MARK` set to
    `mark`, plus `extra`"""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_REPO), str(_REPO / "tests"), env.get("PYTHONPATH", "")])
    env[MARK] = mark
    env.update(extra)
    return env


def interrupt_when(proc: subprocess.Popen, ready: Callable[[], bool], signum: int, wait: float = 120) -> tuple[str, str]:
    """wait until `ready()` while `proc` runs, then send `signum`: SIGINT to its process group (Ctrl-C
    in a terminal), SIGTERM to the process alone (a job scheduler); its stdout and stderr once it ended

    `proc` must have been started with `start_new_session=True`; it is killed (group) if it outlives this.
    """
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def assert_one_interrupt_line(proc: subprocess.Popen, signum: int, stdout: str, stderr: str) -> None:
    """exit code 128 + signal, no traceback, and a last line saying what was done and that a rerun resumes"""
    assert proc.returncode == 128 + signum, stdout + stderr
    assert "Traceback" not in stderr, stderr
    last = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert last.startswith(f"interrupted by {signal.Signals(signum).name} after "), stderr
    assert "rerun the same command to resume" in last
