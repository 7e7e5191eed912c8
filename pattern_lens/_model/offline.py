"""loading from the Hugging Face hub without waiting on a network that is not there, and quietly when asked

Without a network, `transformers` spends ~50 s in `huggingface_hub`'s retries (5 a file, waits
1+2+4+8+8 s) before it says it cannot find the model. `hub_offline()` decides once, up front:
`HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` set, or one TCP connection to the hub's host failing
within `PROBE_TIMEOUT_S`; the model is then loaded with `local_files_only=True` (the local cache
only: found at once, or an error at once). With a proxy configured the probe is skipped (the
connection would go through the proxy): the hub counts as reachable.

`quiet_model_loading(True)` turns off the progress bars of `transformers` ("Loading weights") and
`huggingface_hub` (downloads) for the block, and restores them after.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

__all__ = ["PROBE_TIMEOUT_S", "hub_offline", "quiet_model_loading"]

PROBE_TIMEOUT_S: float = 3.0
"one connection try to the hub, this long at most"

_TRUE = {"1", "on", "yes", "true"}


def _env_offline() -> str | None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var]}"
    return None


def hub_offline() -> str | None:
    """why the hub cannot be reached (`"HF_HUB_OFFLINE=1"`, `"no connection to huggingface.co:443 ..."`), or `None`"""
    why = _env_offline()
    if why is not None:
        return why
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return None
    except OSError as e:
        return f"no connection to {host}:{port} ({type(e).__name__}: {e})"


@contextlib.contextmanager
def quiet_model_loading(quiet: bool) -> Iterator[None]:
    """the block without the progress bars of transformers and huggingface_hub when `quiet`"""
    if not quiet:
        yield
        return
    restore = []
    try:
        from transformers.utils import logging as tf_logging

        if tf_logging.is_progress_bar_enabled():
            tf_logging.disable_progress_bar()
            restore.append(tf_logging.enable_progress_bar)
    except (ImportError, AttributeError):
        pass
    try:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        if not are_progress_bars_disabled():
            disable_progress_bars()
            restore.append(enable_progress_bars)
    except ImportError:
        pass
    try:
        yield
    finally:
        for undo in restore:
            undo()
