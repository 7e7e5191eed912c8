"""serve a data folder and its gallery on http://127.0.0.1:8000 (the reference's `python -m pattern_lens.server`)

```bash
python -m pattern_lens.server --path attn_data --port 8000 [--rewrite-index]
pattern-lens serve attn_data                      # the same
```

The reference's options: `--path` (default: the current folder), `--port` (default 8000; 0 picks a
free one), `--rewrite-index` (write the gallery again before serving). The gallery is also written
when the folder has none yet. Only files inside the folder are served; Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pattern_lens._command import run_command
from pattern_lens._errors import PatternLensError
from pattern_lens._layout import GALLERY_DIR, GALLERY_INDEX

__all__ = ["main", "add_arguments", "run_from_args"]


def main(path: str | Path = ".", port: int = 8000, *, host: str = "127.0.0.1", rewrite_index: bool = False) -> None:
    """serve `path` until Ctrl-C; writes the gallery first if `rewrite_index` or if it is missing

    # Parameters:
     - `path : str | Path` the data folder (defaults to `"."`)
     - `port : int` TCP port, 0 for any free one (defaults to `8000`)
     - `host : str` address to listen on (defaults to `"127.0.0.1"`: this machine only)
     - `rewrite_index : bool` write the gallery even if present (defaults to `False`)

    # Raises:
     - `InputError` for a missing folder or a port in use
    """
    from pattern_lens._view.gallery import write_gallery
    from pattern_lens._view.serve import make_server, serve_forever

    folder = Path(path)
    server = make_server(folder, port, host)  # first: a busy port fails before any file is written
    try:
        if rewrite_index or not (folder / GALLERY_INDEX).is_file() or not (folder / GALLERY_DIR).is_dir():
            info = write_gallery(folder)
            print(f"gallery written: {info.n_models} models, {info.n_prompts} prompts", flush=True)
    except BaseException:
        server.server_close()
        raise
    serve_forever(server, folder.resolve())


def add_arguments(p: argparse.ArgumentParser, positional: bool = False) -> None:
    """the options: `--path`, `--port`, `--rewrite-index`, `--host` (and a positional DATA for `pattern-lens serve`)"""
    if positional:
        p.add_argument("data", nargs="?", default=None, metavar="DATA", help="the data folder (same as --path)")
    p.add_argument("--path", type=str, default=None, help="the data folder to serve (default: the current folder)")
    p.add_argument("--port", type=int, default=8000, help="port to serve on, 0 for any free one (default: 8000)")
    p.add_argument("--host", type=str, default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--rewrite-index", action="store_true", help="write the gallery again before serving")


def run_from_args(args: argparse.Namespace) -> int:
    """run parsed arguments; returns the exit code"""
    data = getattr(args, "data", None)
    if data is not None and args.path is not None and Path(data) != Path(args.path):
        raise PatternLensError(f"two data folders given: {data!r} and --path {args.path!r}")
    main(data or args.path or ".", args.port, host=args.host, rewrite_index=args.rewrite_index)
    return 0


def _cli(argv: Sequence[str] | None = None) -> int:
    return run_command(
        "serve", lambda p: add_arguments(p, positional=True), run_from_args, argv, prog="python -m pattern_lens.server"
    )


if __name__ == "__main__":
    sys.exit(_cli())
