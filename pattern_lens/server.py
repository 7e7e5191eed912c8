"""serve a data folder and its gallery on http://127.0.0.1:8000 (the reference's `python -m pattern_lens.server`)

```bash
python -m pattern_lens.server --path attn_data --port 8000 [--rewrite-index]
pattern-lens serve attn_data                      # the same
```

The reference's options: `--path` (default: the current folder), `--port` (default 8000; 0 picks a
free one), `--rewrite-index` (write the gallery again before serving). Ours: `--host` (default: this
machine only), `--allow-host NAME` (another name the `Host` header may give, e.g. the machine's name
on the network; 127.0.0.1, localhost and the `--host` are always accepted). The gallery is also
written when the folder has none yet; a folder that cannot be written (read-only) is served with a
gallery built in a private temporary folder, leaving the data untouched. Only files inside the folder
are served (a link inside it pointing outside is refused). Ctrl-C stops the server (exit 130; SIGTERM:
143), as `render`.

As in the reference, `main(path, port)` serves with `socketserver.TCPServer(("", port),
http.server.SimpleHTTPRequestHandler)`, where `socketserver` and `http` are this module's: those two
names are this package's safe server and handler (`pattern_lens._view.serve`), so code that patches
or subclasses them through `pattern_lens.server` works on top of the safe ones. The host `""` means
127.0.0.1 here, not every address.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from pattern_lens._command import run_command
from pattern_lens._errors import InputError, PatternLensError, RunInterrupted
from pattern_lens._layout import GALLERY_DIR, GALLERY_INDEX
from pattern_lens._view.serve import DataFolderHandler, DataFolderServer, serve_forever
from pattern_lens._view.serve_args import add_arguments
from pattern_lens._view.stdlib_names import overlay
from pattern_lens.indexes import write_html_index

__all__ = ["main", "add_arguments", "run_from_args", "socketserver", "http", "write_html_index"]

socketserver = overlay("socketserver", TCPServer=DataFolderServer, ThreadingTCPServer=DataFolderServer)
"`socketserver`, with `TCPServer` this package's safe server (see `pattern_lens._view.stdlib_names`)"

http = overlay(
    "http",
    server=overlay("http.server", SimpleHTTPRequestHandler=DataFolderHandler, HTTPServer=DataFolderServer, ThreadingHTTPServer=DataFolderServer),
)
"`http`, with `http.server.SimpleHTTPRequestHandler` this package's safe handler"


def main(
    path: str | Path | None = None,
    port: int = 8000,
    *,
    host: str = "",
    rewrite_index: bool = False,
    allow_hosts: Iterable[str] = (),
) -> None:
    """serve `path` until Ctrl-C (then exit 0, as the reference); writes the gallery first if
    `rewrite_index` or if it is missing (into a private temporary folder when `path` is read-only)

    Called without `path`, reads the reference's command line from `sys.argv` (`--path`, `--port`,
    `--rewrite-index`, and ours) and calls `main(path=..., port=...)` with it.

    # Parameters:
     - `path : str | Path | None` the data folder; the process changes into it, as the reference's
       (defaults to `None`: the command line)
     - `port : int` TCP port, 0 for any free one (defaults to `8000`)
     - `host : str` address to listen on (defaults to `""`: 127.0.0.1, this machine only)
     - `rewrite_index : bool` write the gallery even if present (defaults to `False`)
     - `allow_hosts : Iterable[str]` more names the `Host` header may give (defaults to none)

    # Raises:
     - `InputError` for a missing folder, a port outside 0..65535 or in use
    """
    if path is None:
        _reference_command_line()
        return
    try:
        os.chdir(path)
    except OSError as e:
        raise InputError(f"data folder not found: {path} ({e.strerror or e})") from None
    try:
        _serve(Path(os.getcwd()), port, host, rewrite_index, allow_hosts)
    except KeyboardInterrupt as e:
        print("server stopped", flush=True)
        # Ctrl-C: 0, as the reference's; SIGTERM: 143, as a process the reference left to the signal
        sys.exit(128 + e.signum if isinstance(e, RunInterrupted) and e.signum != signal.SIGINT else 0)


def _reference_command_line() -> None:
    """the reference's `python -m pattern_lens.server` read from `sys.argv`: gallery, then `main(path=, port=)`"""
    parser = argparse.ArgumentParser(prog="python -m pattern_lens.server")
    add_arguments(parser)
    args = parser.parse_args()
    path = args.path if args.path is not None else "."
    if args.rewrite_index:
        write_html_index(path=Path(path))
    extra = {k: v for k, v in (("host", args.host), ("allow_hosts", tuple(args.allow_host))) if v}
    main(path=path, port=args.port, **extra)  # looked up here at call time: a test may have replaced it


def _serve(folder: Path, port: int, host: str, rewrite_index: bool, allow_hosts: Iterable[str]) -> None:
    """open the server (a busy port fails before any file is written), make the gallery, serve"""
    with socketserver.TCPServer((host, port), http.server.SimpleHTTPRequestHandler) as httpd:
        if not isinstance(httpd, DataFolderServer):  # replaced (a test's patch, a user's class): just run it
            print(f"serving {folder} at http://localhost:{port}", flush=True)
            httpd.serve_forever()
            return
        httpd.data_folder = str(folder.resolve())
        httpd.allow_hosts(allow_hosts)
        with tempfile.TemporaryDirectory(prefix="pattern_lens_gallery.") as private:
            _prepare_gallery(httpd, folder, rewrite_index, private)
            serve_forever(httpd, folder.resolve())


def _prepare_gallery(httpd: DataFolderServer, folder: Path, rewrite_index: bool, private: str) -> None:
    """write the gallery into `folder` when asked or missing; where that fails (read-only, a file in
    the way), build it in `private` and serve it from there: the data is not touched"""
    from pattern_lens._view.gallery import write_gallery

    gallery = folder / GALLERY_DIR
    if not (rewrite_index or not (folder / GALLERY_INDEX).is_file() or gallery.is_symlink() or not gallery.is_dir()):
        return
    try:
        info = write_gallery(folder)
    except (OSError, PatternLensError) as e:
        why = " ".join(str(e).split())[:300]
        try:
            info = write_gallery(folder, out=private)
        except OSError as e2:
            raise InputError(f"cannot build the gallery of {folder}: {e2}") from None
        httpd.gallery_folder = private
        print(f"cannot write the gallery into {folder} ({why}): serving one built in a temporary folder", flush=True)
    print(f"gallery written: {info.n_models} models, {info.n_prompts} prompts", flush=True)


def run_from_args(args: argparse.Namespace) -> int:
    """run parsed arguments (`pattern-lens serve`); Ctrl-C and SIGTERM raise `RunInterrupted` (exit 130 / 143)"""
    data = getattr(args, "data", None)
    if data is not None and args.path is not None and Path(data) != Path(args.path):
        raise PatternLensError(f"two data folders given: {data!r} and --path {args.path!r}")
    folder = Path(data or args.path or getattr(args, "default_folder", "."))
    if not folder.is_dir():
        raise InputError(f"data folder not found: {folder}")
    _serve(folder, args.port, args.host, args.rewrite_index, args.allow_host)
    return 0


def _cli(argv: Sequence[str] | None = None) -> int:
    return run_command(
        "serve", lambda p: add_arguments(p, positional=True), run_from_args, argv, prog="python -m pattern_lens.server"
    )


if __name__ == "__main__":
    from pattern_lens._command import as_process

    sys.exit(as_process(_cli))
