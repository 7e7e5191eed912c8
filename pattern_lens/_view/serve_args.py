"""the server's command-line options, light to import (no http server): `pattern-lens --help` builds them"""

from __future__ import annotations

import argparse

from pattern_lens._errors import InputError

__all__ = ["check_port", "port_number", "add_arguments"]


def check_port(port: object) -> int:
    """`port` when it is a TCP port number (0..65535; 0: any free one)

    # Raises:
     - `InputError` otherwise
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port {port!r} is not a port number: expected 0..65535 (0: any free port)")
    return port


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0..65535 (`--port 99999` is a usage error, exit 2)"""
    try:
        return check_port(int(text))
    except (ValueError, InputError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: expected 0..65535 (0: any free port)") from None


def add_arguments(p: argparse.ArgumentParser, positional: bool = False, default_folder: str = ".") -> None:
    """the options: `--path`, `--port`, `--rewrite-index`, `--host`, `--allow-host` (and a positional DATA for `pattern-lens serve`)

    # Parameters:
     - `p : argparse.ArgumentParser` the parser to add them to
     - `positional : bool` also a positional DATA, the same as `--path` (defaults to `False`)
     - `default_folder : str` the folder served when none is given (defaults to `"."`, the reference's
       `python -m pattern_lens.server`; `pattern-lens serve` gives `attn_data`, as `render` and `stats`)
    """
    p.set_defaults(default_folder=default_folder)
    if positional:
        p.add_argument("data", nargs="?", default=None, metavar="DATA", help=f"the data folder (same as --path; default: {default_folder})")
    p.add_argument("--path", type=str, default=None, help=f"the data folder to serve (default: {'the current folder' if default_folder == '.' else default_folder})")
    p.add_argument("--port", type=port_number, default=8000, help="port to serve on, 0 for any free one (default: 8000)")
    p.add_argument("--host", type=str, default="", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="another name the browser may use for this server (Host header; repeatable). "
        "127.0.0.1, localhost and --host are always accepted; others are refused (DNS rebinding)",
    )
    p.add_argument("--rewrite-index", action="store_true", help="write the gallery again before serving")
