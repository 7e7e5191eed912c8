"""facts about the machine a process runs on: usable cores and peak memory, portably"""

import os
import sys

__all__ = ["available_cpus", "peak_rss_bytes"]


def available_cpus() -> int:
    """cores this process may use (its CPU affinity where the OS reports one)"""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def peak_rss_bytes() -> int:
    """the peak resident set of this process so far, in bytes (0 where the OS does not say)"""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in bytes on macOS, KiB on Linux and the BSDs
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024
