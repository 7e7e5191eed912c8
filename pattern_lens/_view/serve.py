"""a small HTTP server for one data folder: files under it and nothing else, on 127.0.0.1 by default

- Only regular files whose real path (links followed) lies inside the data folder are served; a
  request path with a `..` segment, a backslash or a NUL, raw or percent-encoded (once or twice),
  gets 403. Folders are not listed.
- `.svgz` files go out as `image/svg+xml` with `Content-Encoding: gzip`, so `<img>` shows them.
- Responses say `Cache-Control: no-cache`: a refreshed gallery is seen on reload.
- Only failed requests are logged (a grid view requests hundreds of images).
- `GET /_pl/row?...`: one row of one head's weights from an `activations.npz` (`values.py`).
"""

from __future__ import annotations

import errno
import http.server
import io
import os
import posixpath
import sys
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pattern_lens._errors import InputError
from pattern_lens._view import values

__all__ = ["DataFolderHandler", "make_server", "serve_forever", "is_safe_request_path", "server_url"]


def is_safe_request_path(raw_path: str) -> bool:
    """whether a request path (as sent, percent-encoded) names something inside the served folder

    Refused: `..` segments, backslashes and NUL bytes, in the raw path or after decoding it once or
    twice (a double-encoded `%252e%252e` is a classic way around a single decode).
    """
    path = urlsplit(raw_path).path
    for candidate in (path, unquote(path), unquote(unquote(path))):
        if "\\" in candidate or "\x00" in candidate:
            return False
        if any(part == ".." for part in candidate.split("/")):
            return False
    return True


class DataFolderHandler(http.server.SimpleHTTPRequestHandler):
    """`SimpleHTTPRequestHandler` confined to `directory`: see the module docstring"""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".svg": "image/svg+xml",
        ".svgz": "image/svg+xml",
        ".js": "text/javascript",
        ".jsonl": "application/jsonl",
        ".json": "application/json",
    }

    def _inside(self, fs_path: str) -> bool:
        root = os.path.realpath(self.directory)
        real = os.path.realpath(fs_path)
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def send_head(self):
        if urlsplit(self.path).path == values.ROW_ROUTE:  # one head's row of weights, read from the .npz
            status, body = values.handle_row_request(self.directory, urlsplit(self.path).query)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return io.BytesIO(body)
        if not is_safe_request_path(self.path):
            self.send_error(403, "path outside the data folder")
            return None
        fs_path = self.translate_path(self.path)
        if not self._inside(fs_path):
            self.send_error(403, "path outside the data folder")
            return None
        if os.path.isdir(fs_path):
            index = os.path.join(fs_path, "index.html")
            if not os.path.isfile(index):
                self.send_error(404, "no index.html here (folders are not listed)")
                return None
            if not self.path.split("?", 1)[0].endswith("/"):
                return super().send_head()  # the redirect to "path/"
            fs_path = index
        if not os.path.isfile(fs_path) or not self._inside(fs_path):
            self.send_error(404, "file not found")
            return None
        return super().send_head()

    def list_directory(self, path):  # never reached (send_head refuses folders without index.html)
        self.send_error(404, "folders are not listed")
        return None

    def end_headers(self):
        if posixpath.splitext(urlsplit(self.path).path)[1].lower() == ".svgz":
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_request(self, code="-", size="-"):
        if isinstance(code, int) and code >= 400:  # HTTPStatus is an int
            super().log_request(code, size)


def make_server(path: Path | str, port: int = 8000, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """a server for the folder `path` (not started)

    # Raises:
     - `InputError` when `path` is not a folder, or the port cannot be used (in use, not allowed)
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"data folder not found: {folder}")
    handler = partial(DataFolderHandler, directory=str(folder.resolve()))
    try:  # ThreadingHTTPServer: a thread per request, daemon threads (Ctrl-C does not wait for them)
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise InputError(
                f"port {port} on {host} is already in use (another server?): choose another with --port N, "
                "or --port 0 for any free port"
            ) from None
        if e.errno == errno.EACCES:
            raise InputError(f"not allowed to listen on port {port} on {host} (ports below 1024 need privileges)") from None
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def server_url(server: http.server.ThreadingHTTPServer) -> str:
    """`http://HOST:PORT/` of a server (127.0.0.1 for one listening on every address)"""
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def serve_forever(server: http.server.ThreadingHTTPServer, folder: Path | str) -> None:
    """print the URL, serve until Ctrl-C (SIGINT), then close and say so"""
    print(f"serving {folder} at {server_url(server)}", flush=True)
    print("press Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("server stopped", file=sys.stderr, flush=True)
