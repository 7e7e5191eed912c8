"""helpers for the gallery and server tests: a real server process, and the browser or a clear failure"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from signals_support import sigint_reaches_children

sigint_reaches_children()  # the servers started here stop on SIGINT (benchmarks import this too)

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("PATTERN_LENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_browser():
    """`playwright.sync_api.sync_playwright`, or: under CI a failure, elsewhere a skip, saying what is missing"""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        reason = f"playwright is not installed ({e}): pip install '.[test]'"
    else:
        if not Path(CHROMIUM).is_file():
            reason = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set PATTERN_LENS_CHROMIUM)"
    if reason is None:
        return sync_playwright
    if in_ci():
        pytest.fail(f"browser tests cannot run under CI: {reason}")
    pytest.skip(reason)


class ServerProcess:
    """`python -m pattern_lens.server` as a real subprocess; `url` once it listens"""

    def __init__(self, path: Path, *extra: str, module: str = "pattern_lens.server"):
        args = [sys.executable, "-m", module, *(["serve", str(path)] if module == "pattern_lens.cli" else ["--path", str(path)])]
        self.proc = subprocess.Popen(
            [*args, "--port", "0", *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self.url: str | None = None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = re.search(r"at (http://\S+)", line)
            if match:
                self.url = match.group(1)
                break
        if self.url is None:
            out, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"the server did not start:\n{''.join(self.lines)}{out}\n{err}")

    def stop(self) -> tuple[int, str, str]:
        """SIGINT (Ctrl-C), then the exit code and the rest of stdout and stderr"""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"the server did not stop on SIGINT within 10 s:\n{out}\n{err}") from None
        return self.proc.returncode, "".join(self.lines) + out, err


@contextmanager
def running_server(path: Path, *extra: str, module: str = "pattern_lens.server"):
    server = ServerProcess(path, *extra, module=module)
    try:
        yield server
    finally:
        server.stop()
