"""facts about the machine a process runs on: usable cores and peak memory, portably"""

import math
import os
import sys
from pathlib import Path

__all__ = ["available_cpus", "peak_rss_bytes", "reuse_large_buffers"]

_REUSE_UP_TO: int = 1 << 30
"largest buffer kept for reuse by `reuse_large_buffers` (bytes): a layer of 12 heads at n_ctx 1024 is 50 MB"


def reuse_large_buffers() -> bool:
    """keep large freed buffers in this process for the next allocation (glibc); whether it applied

    Every layer read from a `.npz` is inflated into a new buffer (50 MB for 12 heads at n_ctx 1024).
    glibc serves a buffer above its mmap threshold (at most 32 MB by default) with fresh pages from
    the kernel and returns them when it is freed, so every layer paid its page faults and the
    kernel's zeroing again: 20 of 72 ms of inflating such a layer here. With the threshold (and the
    trim threshold, which returns the top of the heap) raised to 1 GiB, the next layer reuses the
    last one's pages: 72 -> 51 ms (benchmarks/README.md). The cost: a process keeps up to that much
    freed memory instead of returning it, i.e. a worker stays at its peak (about one layer).
    Called in worker processes and in a command's own process, never on import: a library
    caller's allocator is its own. Elsewhere than glibc (musl, macOS, Windows): nothing, `False`.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, _REUSE_UP_TO)) and bool(mallopt(m_trim_threshold, _REUSE_UP_TO))


def available_cpus() -> int:
    """cores this process may use: its CPU affinity where the OS reports one, and no more than its
    cgroup's CPU quota (`cpu.max`, or `cpu.cfs_quota_us` with cgroup v1) allows, rounded up"""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota is not None else max(1, cores)


def cgroup_cpu_quota(root: Path | str = "/sys/fs/cgroup", proc_cgroup: Path | str = "/proc/self/cgroup") -> float | None:
    """the CPUs this process's cgroup (or one above it) may use, e.g. `1.5`; `None` without a limit

    # Parameters:
     - `root : Path | str` where the cgroup file systems are mounted (defaults to `"/sys/fs/cgroup"`)
     - `proc_cgroup : Path | str` the process's cgroup list (defaults to `"/proc/self/cgroup"`)
    """
    root = Path(root)
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # cgroup v2: cpu.max is "QUOTA PERIOD" or "max PERIOD", in every folder up to the root
            folders = [root / path.lstrip("/")]
            files = ("cpu.max",)
        elif "cpu" in controllers.split(","):  # cgroup v1: cpu.cfs_quota_us (-1: none) / cpu.cfs_period_us
            base = next((root / name for name in (controllers, "cpu", "cpu,cpuacct") if (root / name).is_dir()), None)
            if base is None:
                continue
            folders = [base / path.lstrip("/")]
            files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        folder = folders[0]
        while True:
            limit = _cpu_limit(folder, files)
            if limit is not None:
                limits.append(limit)
            if folder == root or root not in folder.parents:
                break
            folder = folder.parent
    return min(limits) if limits else None


def _cpu_limit(folder: Path, files: tuple[str, ...]) -> float | None:
    try:
        if len(files) == 1:
            quota, period = (folder / files[0]).read_text().split()[:2]
        else:
            quota, period = ((folder / name).read_text().strip() for name in files)
        if quota in ("max", "-1") or float(period) <= 0:
            return None
        return float(quota) / float(period)
    except (OSError, ValueError):
        return None


def peak_rss_bytes() -> int:
    """the peak resident set of this process so far, in bytes (0 where the OS does not say)"""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in bytes on macOS, KiB on Linux and the BSDs
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024
