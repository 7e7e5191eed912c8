"""helpers for the hostile-data tests: a sentinel tree outside the save path, crafted data folders, real processes"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from gallery_support import REPO

MODEL = "synthetic-1x3-ctx6"
MARKER = 0.123456789
"a statistic only the sentinel's files hold: seeing it in the gallery's data means a file outside was read"


def snapshot(root: Path) -> dict[str, tuple]:
    """every entry under `root` (links not followed): kind, and content hash for files, target for links"""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def make_base(root: Path) -> Path:
    """a clean data folder: one synthetic model, 1 layer x 3 heads, 2 prompts of 6 tokens"""
    from pattern_lens.synthetic import write_synthetic_model

    save = root / "data"
    write_synthetic_model(save, n_layers=1, n_heads=3, n_ctx=6, n_prompts=2)
    return save


def make_sentinel(root: Path, save: Path) -> Path:
    """a tree outside the save path that a hostile folder points into: statistics with `MARKER`, a
    model folder with a config, an `.npz`, an empty folder to be written into"""
    s = root / "sentinel"
    (s / "X").mkdir(parents=True)
    (s / "X" / "head_stats.json").write_text(json.dumps({"heads": [{"layer": 0, "head": 0, "entropy": MARKER}]}))
    (s / "gallery_target").mkdir()
    (s / "elsewhere_model").mkdir()
    (s / "elsewhere_model" / "model_cfg.json").write_text(json.dumps({"model_name": "secret", "n_layers": 1, "n_heads": 1}))
    (s / "elsewhere_model" / "prompts.jsonl").write_text(json.dumps({"text": "secret", "hash": "S"}) + "\n")
    prompts = sorted((save / MODEL / "prompts").iterdir())
    shutil.copy(prompts[0] / "activations.npz", s / "activations.npz")
    (s / "layer").mkdir()
    return s


def run(args: list[str], cwd: Path = REPO, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """`python -m pattern_lens.cli ARGS` as a real process"""
    return subprocess.run(
        [sys.executable, "-m", "pattern_lens.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw
    )


def no_traceback(*results: subprocess.CompletedProcess) -> None:
    for r in results:
        text = r.stdout + r.stderr
        assert "Traceback" not in text, f"{r.args}:\n{text}"


def can_mount_read_only() -> str | None:
    """why a read-only bind mount cannot be made here (`unshare -m` as root), or `None` when it can"""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "read-only folder tests need root and unshare (a bind mount made read-only)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return None if probe.returncode == 0 else f"unshare -m is not allowed here: {probe.stderr.decode()[:200]}"


def read_only_command(folder: Path, command: str) -> list[str]:
    """`sh -c` running `command` with `folder` bind-mounted read-only (in a private mount namespace)"""
    f = str(folder)
    return ["unshare", "-m", "sh", "-c", f"mount --bind '{f}' '{f}' && mount -o remount,bind,ro '{f}' && exec {command}"]
