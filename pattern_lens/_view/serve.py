"""a small HTTP server for one data folder: files under it and nothing else, on 127.0.0.1 by default

- Only regular files whose real path (links followed) lies inside the data folder are served
  (`pattern_lens._guard.is_inside`); a request path with a `..` segment, a backslash or a NUL, raw or
  percent-encoded (once or twice), gets 403. Folders are not listed.
- The `Host` header must name the server (127.0.0.1, localhost, ::1, the address it listens on, and
  the names given with `--allow-host`): a page on another site that rebinds its own name to
  127.0.0.1 (DNS rebinding) gets 403 and reads nothing.
- Malformed requests (garbage, a TLS handshake, a request line over 65,536 bytes) get 400 / 414 and
  one log line; a client that disconnects is not reported; a slow client times out alone
  (`DataFolderHandler.timeout`) while a thread per request serves the others, with a listen backlog of
  `REQUEST_QUEUE_SIZE`.
- `.svgz` files go out as `image/svg+xml` with `Content-Encoding: gzip`, so `<img>` shows them (an
  error page never carries that header).
- The gallery (`index.html`, `pattern_lens_gallery/`) may come from a private temporary folder
  (`gallery_folder`) when it cannot be written into the data folder (read-only): the data is not touched.
- JSON API routes under `/_pl/` dispatch through one table, `API_ROUTES` (route -> function).
- Responses say `Cache-Control: no-cache`: a refreshed gallery is seen on reload.
- Only failed requests are logged (a grid view requests hundreds of images).
- `GET /_pl/row?...`: one row of one head's weights from an `activations.npz` (`values.py`).
"""

from __future__ import annotations

import errno
import http.server
import json
import os
import posixpath
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from pattern_lens._errors import InputError, RunInterrupted
from pattern_lens._guard import is_inside
from pattern_lens._json_limits import dumps_strict
from pattern_lens._layout import GALLERY_DIR, GALLERY_INDEX
from pattern_lens._view import values
from pattern_lens._view.serve_args import check_port

__all__ = [
    "REQUEST_QUEUE_SIZE",
    "LOCAL_NAMES",
    "API_ROUTES",
    "ApiError",
    "DataFolderHandler",
    "DataFolderServer",
    "check_port",
    "make_server",
    "serve_forever",
    "is_safe_request_path",
    "server_url",
]

REQUEST_QUEUE_SIZE: int = 512
"the listen backlog: connections the kernel holds while every thread is busy (socketserver's default is 5)"

LOCAL_NAMES: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1"})
"the names a browser on this machine uses for the server: always accepted in the `Host` header"


class ApiError(Exception):
    """raised by an API route: the status and the message of the JSON error the client gets"""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def _row_route(handler: "DataFolderHandler", query: dict[str, list[str]]) -> object:
    """one row of one head's weights, read from its `activations.npz` (`pattern_lens._view.values`)"""
    status, body = values.handle_row_request(handler.directory, urlencode(query, doseq=True))  # the served folder, however the server was made
    answer = json.loads(body)
    if status != 200:
        raise ApiError(status, answer.get("error", "bad request"))
    return answer


API_ROUTES: dict[str, Callable[["DataFolderHandler", dict[str, list[str]]], object]] = {
    "/_pl/version": lambda handler, query: {"server": "pattern_lens", "api": 1},
    values.ROW_ROUTE: _row_route,
}
"""`GET /_pl/<name>` -> `function(handler, query)` returning a JSON-able value (sent with status
200), or raising `ApiError`; `handler.server.data_folder` is the folder. Add a route by adding here."""


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


def _host_name(header: str) -> str:
    """the name part of a `Host` header, lower case: `"LocalHost:8000"` -> `"localhost"`, `"[::1]:80"` -> `"::1"`"""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


_QUIET_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, socket.timeout)
"errors of a client that went away or stalled: not worth a line, and never a traceback"


class DataFolderHandler(http.server.SimpleHTTPRequestHandler):
    """`SimpleHTTPRequestHandler` confined to its folder: see the module docstring

    The folder is `directory` when given, else the server's `data_folder`, else the current folder
    (as `SimpleHTTPRequestHandler`), so `TCPServer(("", port), DataFolderHandler)` works as the
    reference's `TCPServer(("", port), SimpleHTTPRequestHandler)` does after `os.chdir(path)`.
    """

    timeout = 30  # seconds a client may stall before its connection is closed (its thread is freed)

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".svg": "image/svg+xml",
        ".svgz": "image/svg+xml",
        ".js": "text/javascript",
        ".jsonl": "application/jsonl",
        ".json": "application/json",
    }

    def __init__(self, request, client_address, server, *, directory: str | None = None) -> None:
        if directory is None:
            directory = getattr(server, "data_folder", None)
        self._gzip_body = False
        super().__init__(request, client_address, server, directory=directory)

    # -- the connection: quiet on disconnects and bad requests ------------------------------------

    def handle(self) -> None:
        try:
            super().handle()
        except _QUIET_ERRORS:
            self.close_connection = True

    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line and headers

    def handle_one_request(self) -> None:
        self._gzip_body = False
        try:
            first = self.rfile.peek(1)[:1]
        except (AttributeError, ValueError):  # an unbuffered stream: no look-ahead, no TLS check
            first = b""
        if first == b"\x16":  # a TLS handshake record: https:// to a plain HTTP server; no newline will come
            self.requestline, self.request_version, self.command = "(TLS handshake)", "HTTP/1.0", ""
            self.close_connection = True
            self.send_error(400, "this server speaks plain HTTP: use http://, not https://")
            return
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        allowed = getattr(self.server, "allowed_hosts", None)
        host = self.headers.get("Host")
        if allowed is not None and host is not None and _host_name(host) not in allowed:
            self.send_error(403, f"Host {host[:100]!r} is not a name of this server (add it with --allow-host)")
            return False
        return True

    def end_headers(self) -> None:
        if self._gzip_body:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_request(self, code="-", size="-") -> None:
        if isinstance(code, int) and code >= 400:  # HTTPStatus is an int
            super().log_request(code, size)

    def log_error(self, format: str, *args) -> None:
        # send_error logs once through log_error and once through log_request: keep the latter's line
        # (method, path, status); the former would repeat it (and a raw request line is already quoted)
        pass

    def log_message(self, format: str, *args) -> None:
        text = format % args
        sys.stderr.write(f"{self.address_string()} - {' '.join(text.split())[:300]}\n")

    # -- the files ---------------------------------------------------------------------------------

    def _base(self, url_path: str) -> str:
        """the folder a request path is read from: the private gallery folder for the gallery's
        files when the server has one, else the data folder"""
        gallery = getattr(self.server, "gallery_folder", None)
        if gallery is not None:
            first = url_path.lstrip("/").split("/", 1)[0]
            if first in ("", GALLERY_INDEX, GALLERY_DIR):
                return os.fspath(gallery)
        return self.directory

    def translate_path(self, path: str) -> str:
        url_path = unquote(urlsplit(path).path)
        base = self._base(url_path)
        words = [w for w in posixpath.normpath(url_path).split("/") if w and w not in (os.curdir, os.pardir)]
        return os.path.join(base, *words) + ("/" if url_path.endswith("/") else "")

    def send_head(self):
        url_path = urlsplit(self.path).path
        if not is_safe_request_path(self.path):
            self.send_error(403, "path outside the data folder")
            return None
        base = os.path.realpath(self._base(unquote(url_path)))
        fs_path = self.translate_path(self.path)
        if not is_inside(fs_path, base):
            self.send_error(403, "path outside the data folder")
            return None
        if os.path.isdir(fs_path):
            index = os.path.join(fs_path, "index.html")
            if not os.path.isfile(index):
                self.send_error(404, "no index.html here (folders are not listed)")
                return None
            if not url_path.endswith("/"):
                return super().send_head()  # the redirect to "path/"
            fs_path = index
        if not os.path.isfile(fs_path) or not is_inside(fs_path, base):
            self.send_error(404, "file not found")
            return None
        self._gzip_body = fs_path.lower().endswith(".svgz")
        try:
            return super().send_head()
        except OSError:
            self._gzip_body = False
            raise

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self._gzip_body = False  # an error page is plain HTML, never gzip
        super().send_error(code, message, explain)

    def list_directory(self, path):  # never reached (send_head refuses folders without index.html)
        self.send_error(404, "folders are not listed")
        return None

    # -- the API -----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path.startswith("/_pl/"):
            self._api(parts.path, parse_qs(parts.query))
            return
        super().do_GET()

    def _api(self, route: str, query: dict[str, list[str]]) -> None:
        func = API_ROUTES.get(route)
        try:
            if func is None:
                raise ApiError(404, f"no API route {route[:100]!r} (routes: {', '.join(sorted(API_ROUTES))})")
            status, payload = 200, func(self, query)
        except ApiError as e:
            status, payload = e.status, {"error": str(e)}
        except Exception as e:  # noqa: BLE001 -- a route's bug or an unreadable file: an answer and one log line, not a dropped connection
            self.log_error("API route %s failed: %s: %s", route[:100], type(e).__name__, " ".join(str(e).split())[:300])
            status, payload = 500, {"error": f"{type(e).__name__} while answering {route[:100]}"}
        body = dumps_strict(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class DataFolderServer(http.server.ThreadingHTTPServer):
    """a thread per request, a backlog of `REQUEST_QUEUE_SIZE`, the `Host` check's names, clear errors

    `server_address` as `socketserver.TCPServer`'s; the host `""` (the reference's) means this
    machine only here (127.0.0.1), not every address. After construction set `data_folder` (else the
    handler serves the current folder) and, optionally, `gallery_folder`.

    # Raises:
     - `InputError` for a port outside 0..65535, or a port that cannot be used (in use, not allowed)
    """

    request_queue_size = REQUEST_QUEUE_SIZE
    daemon_threads = True  # Ctrl-C does not wait for requests in flight

    def __init__(self, server_address, RequestHandlerClass, bind_and_activate: bool = True) -> None:
        host, port = server_address[0] or "127.0.0.1", check_port(server_address[1])
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.data_folder: str | None = None
        self.gallery_folder: str | None = None
        self.allowed_hosts: set[str] = {*LOCAL_NAMES, host.lower().strip("[]")}
        try:
            super().__init__((host, port), RequestHandlerClass, bind_and_activate)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise InputError(
                    f"port {port} on {host} is already in use (another server?): choose another with --port N, "
                    "or --port 0 for any free port"
                ) from None
            if e.errno == errno.EACCES:
                raise InputError(f"not allowed to listen on port {port} on {host} (ports below 1024 need privileges)") from None
            raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None

    def allow_hosts(self, names: Iterable[str]) -> None:
        """accept these names in the `Host` header too (e.g. the machine's name on the network)"""
        self.allowed_hosts.update(_host_name(n) for n in names if n)

    def handle_error(self, request, client_address) -> None:
        """one line, never a traceback (a client going away is not even that)"""
        e = sys.exc_info()[1]
        if isinstance(e, _QUIET_ERRORS):
            return
        sys.stderr.write(f"{client_address[0]} - request failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}\n")


def make_server(
    path: Path | str, port: int = 8000, host: str = "127.0.0.1", allow_hosts: Iterable[str] = ()
) -> DataFolderServer:
    """a server for the folder `path` (not started)

    # Raises:
     - `InputError` when `path` is not a folder, or the port cannot be used (see `DataFolderServer`)
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"data folder not found: {folder}")
    server = DataFolderServer((host, port), DataFolderHandler)
    server.data_folder = str(folder.resolve())
    server.allow_hosts(allow_hosts)
    return server


def server_url(server: http.server.HTTPServer) -> str:
    """`http://HOST:PORT/` of a server (127.0.0.1 for one listening on every address)"""
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def _stop_on_sigterm() -> Callable[[], None]:
    """make SIGTERM stop the server as Ctrl-C does (exit 143, one line); returns the undo"""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_term(signum, frame):
        raise RunInterrupted(signum, "server stopped (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)


def serve_forever(server: http.server.HTTPServer, folder: Path | str) -> None:
    """print the URL, serve until Ctrl-C or SIGTERM, then close

    # Raises:
     - `RunInterrupted` (a `KeyboardInterrupt`) saying "server stopped": the CLI exits 130 on
       Ctrl-C, 143 on SIGTERM
    """
    undo = _stop_on_sigterm()  # before the ready line: a SIGTERM sent on reading it gets the one line too
    try:
        print(f"serving {folder} at {server_url(server)}", flush=True)
        print("press Ctrl-C to stop", flush=True)
        server.serve_forever()
    except RunInterrupted:
        raise
    except KeyboardInterrupt:
        raise RunInterrupted(signal.SIGINT, "server stopped (Ctrl-C)") from None
    finally:
        undo()
        server.server_close()
