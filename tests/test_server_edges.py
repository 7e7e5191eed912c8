"""the server at its edges: raw sockets (malformed requests, TLS, long URLs, Host rebinding, many
connections, a slow client), read-only folders, exit codes, and the reference's way of patching and
subclassing `pattern_lens.server.socketserver` / `http.server`"""

from __future__ import annotations

import gzip
import signal
import socket
import subprocess
import sys
import threading
import time
from unittest import mock

import pytest

from gallery_support import REPO, running_server
from hostile_support import can_mount_read_only, make_base, read_only_command


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("edges")
    (data / "fig.svgz").write_bytes(gzip.compress(b"<svg xmlns='http://www.w3.org/2000/svg'/>"))
    (data / "hello.txt").write_text("hello")
    with running_server(data) as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        yield server, port


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """send `data`, read until the server closes; the response as bytes"""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all (a 65 kB request line)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def _get(port: int, path: str, host: str = "127.0.0.1", extra: str = "") -> tuple[int, bytes, bytes]:
    raw = _raw(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


@pytest.mark.parametrize("request_bytes, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 2, 400),  # a TLS ClientHello
    (b"GET /" + b"a" * 65_530 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),
    (b"GET / HTTP/9.9\r\n\r\n", 505),
    (b"\r\n\r\n", None),  # nothing: the connection is closed
])
def test_malformed_requests_get_an_answer_not_a_traceback(served, request_bytes, status):
    server, port = served
    raw = _raw(port, request_bytes)
    if status is None:
        assert raw == b""
    else:
        assert raw.startswith(f"HTTP/1.0 {status} ".encode()), raw[:200]


def test_host_rebinding_is_refused(served):
    _, port = served
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.", "[::2]"):
        status, _, body = _get(port, "/hello.txt", host=host)
        assert status == 403 and b"hello" not in body, host
    for host in ("127.0.0.1", f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}", "[::1]"):
        status, _, body = _get(port, "/hello.txt", host=host)
        assert status == 200 and body == b"hello", host


def test_allow_host_adds_a_name(tmp_path):
    (tmp_path / "hello.txt").write_text("hello")
    with running_server(tmp_path, "--allow-host", "box.lan") as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        assert _get(port, "/hello.txt", host="box.lan:80")[0] == 200
        assert _get(port, "/hello.txt", host="other.lan")[0] == 403


def test_missing_svgz_404_has_no_gzip_header(served):
    _, port = served
    status, head, _ = _get(port, "/nope.svgz")
    assert status == 404 and b"content-encoding" not in head.lower()
    status, head, _ = _get(port, "/fig.svgz")
    assert status == 200 and b"Content-Encoding: gzip" in head


def test_api_routes_dispatch_under_pl(served):
    _, port = served
    status, head, body = _get(port, "/_pl/version")
    assert status == 200 and b"application/json" in head and b'"server":"pattern_lens"' in body
    status, _, body = _get(port, "/_pl/nothing")
    assert status == 404 and b'"error"' in body


def test_500_concurrent_connections_and_a_slow_client(served):
    server, port = served
    slow = socket.create_connection(("127.0.0.1", port), timeout=30)
    slow.sendall(b"GET /hello.txt HTTP/1.1\r\nHo")  # and then nothing, for a while
    results: list[int] = []
    errors: list[BaseException] = []

    def one():
        try:
            results.append(_get(port, "/hello.txt")[0])
        except BaseException as e:  # noqa: BLE001 -- counted below
            errors.append(e)

    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(500)]  # all open at once
    t0 = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for s in socks:
        s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answered = 0
    for s in socks:
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        answered += data.startswith(b"HTTP/1.0 200")
        s.close()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - t0
    assert answered == 500 and not errors and results == [200] * 100
    # with socketserver's backlog of 5 the kernel drops most of the 600 connections' SYNs and the
    # clients retry after 1 s, 3 s, 7 s...; a backlog of 512 takes them all at once
    assert elapsed < 5.0, f"{elapsed:.1f} s for 600 requests"
    slow.sendall(b"st: 127.0.0.1\r\nConnection: close\r\n\r\n")  # the slow one is still served
    assert slow.recv(100).startswith(b"HTTP/1.0 200")
    slow.close()


def test_disconnects_are_quiet_and_exit_codes(tmp_path):
    (tmp_path / "big.txt").write_bytes(b"x" * 5_000_000)
    with running_server(tmp_path) as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        for _ in range(50):  # ask for a big file, hang up at once
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /big.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
            s.close()
        for garbage in (b"GARBAGE\r\n\r\n", b"\x16\x03\x01\x00"):
            _raw(port, garbage)
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        out, err = server.proc.communicate(timeout=10)
    assert server.proc.returncode == 143, err
    assert "Traceback" not in out + err and "BrokenPipe" not in err and "ConnectionReset" not in err
    assert err.strip().splitlines()[-1] == "server stopped (SIGTERM)"
    assert sum('" 400 ' in line for line in err.splitlines()) == 2  # one line per bad request


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_bad_port_is_a_usage_error(tmp_path, port):
    r = subprocess.run([sys.executable, "-m", "pattern_lens.cli", "serve", str(tmp_path), "--port", port],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is not a port number" in r.stderr and "Traceback" not in r.stderr


def test_read_only_folder_is_served_and_left_alone(tmp_path):
    if (why := can_mount_read_only()) is not None:
        pytest.skip(why)
    save = make_base(tmp_path)
    before = sorted(p.name for p in save.iterdir())
    cmd = f"{sys.executable} -m pattern_lens.cli serve '{save}' --port 0"
    proc = subprocess.Popen(read_only_command(save, cmd), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if " at http://" in line:
                break
        port = int(lines[-1].rsplit(":", 1)[1].strip().strip("/"))
        assert any("serving one built in a temporary folder" in line for line in lines), lines
        status, _, body = _get(port, "/")
        assert status == 200 and b"pattern_lens_gallery/app.js" in body
        assert _get(port, "/pattern_lens_gallery/data/index.js")[0] == 200
        assert _get(port, "/synthetic-1x3-ctx6/model_cfg.json")[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130 and "Traceback" not in out + err
    assert sorted(p.name for p in save.iterdir()) == before  # nothing written into the data


# -- the reference's way: patch or subclass through pattern_lens.server ----------------------------


def test_reference_style_patching_through_the_module():
    """`main(path, port)` serves through `pattern_lens.server.socketserver.TCPServer` and
    `pattern_lens.server.http.server.SimpleHTTPRequestHandler`, which a caller may replace there"""
    import pattern_lens.server as server

    with (
        mock.patch("pattern_lens.server.socketserver.TCPServer") as tcp,
        mock.patch("pattern_lens.server.http.server.SimpleHTTPRequestHandler") as handler,
        mock.patch("pattern_lens.server.os.chdir") as chdir,
        mock.patch("pattern_lens.server.sys.exit") as exit_,
    ):
        tcp.return_value.__enter__.return_value.serve_forever.side_effect = KeyboardInterrupt
        server.main("somewhere", 8123)
    chdir.assert_called_once_with("somewhere")
    tcp.assert_called_once_with(("", 8123), handler)
    exit_.assert_called_once_with(0)
    import http.server as real_http_server
    import socketserver as real_socketserver

    assert server.socketserver.TCPServer is not real_socketserver.TCPServer  # ours, back after the patch
    assert real_http_server.SimpleHTTPRequestHandler.__name__ == "SimpleHTTPRequestHandler"  # the stdlib untouched


def test_reference_style_subclass_keeps_the_safety(tmp_path):
    """a subclass of `pattern_lens.server.http.server.SimpleHTTPRequestHandler` (as a user of the
    reference writes) on `pattern_lens.server.socketserver.TCPServer` still refuses links out and foreign Hosts"""
    import os

    import pattern_lens.server as server

    (tmp_path / "outside.txt").write_text("secret")
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.txt").write_text("ok")
    os.symlink(tmp_path / "outside.txt", data / "link.txt")

    class Mine(server.http.server.SimpleHTTPRequestHandler):
        def end_headers(self):
            self.send_header("X-Mine", "1")
            super().end_headers()

    httpd = server.socketserver.TCPServer(("", 0), Mine)
    httpd.data_folder = str(data.resolve())
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        port = httpd.server_address[1]
        assert httpd.server_address[0] == "127.0.0.1"  # "" is this machine only
        status, head, body = _get(port, "/ok.txt")
        assert status == 200 and body == b"ok" and b"X-Mine: 1" in head
        assert _get(port, "/link.txt")[0] in (403, 404)
        assert _get(port, "/ok.txt", host="evil.example")[0] == 403
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_reference_command_line_without_arguments(tmp_path, monkeypatch):
    """`main()` reads the reference's command line: the gallery first with --rewrite-index, then
    `main(path=, port=)` looked up in the module (so a patched `main` is the one called)"""
    from pattern_lens.server import main as original_main  # imported before the patch, as a caller would

    monkeypatch.setattr(sys, "argv", ["pattern_lens.server", "--path", str(tmp_path), "--port", "8124", "--rewrite-index"])
    with (
        mock.patch("pattern_lens.server.main", side_effect=KeyboardInterrupt) as inner,
        mock.patch("pattern_lens.server.write_html_index") as write,
    ):
        with pytest.raises(KeyboardInterrupt):
            original_main()
    write.assert_called_once()
    inner.assert_called_once_with(path=str(tmp_path), port=8124)


def test_row_route_answers_on_a_plain_stdlib_server(tmp_path):
    """the safe handler on the standard library's own `socketserver.TCPServer` (no `data_folder`,
    the folder given as `directory`): `/_pl/row` answers with a status and JSON, never a dropped
    connection; a route that fails inside answers 500 with one log line"""
    import functools
    import socketserver

    from pattern_lens._view import serve as serve_mod

    handler = functools.partial(serve_mod.DataFolderHandler, directory=str(tmp_path.resolve()))
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        port = httpd.server_address[1]
        status, head, body = _get(port, "/_pl/row?model=m&prompt=p&layer=0&head=0&row=0")
        assert status == 404 and b"application/json" in head and b'"error"' in body
        with mock.patch.dict(serve_mod.API_ROUTES, {"/_pl/boom": lambda handler, query: 1 / 0}):
            status, _, body = _get(port, "/_pl/boom")
        assert status == 500 and b"ZeroDivisionError" in body
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_reference_main_exits_143_on_sigterm(tmp_path):
    """`pattern_lens.server.main(path, port)` (the reference's entry point): Ctrl-C 0 as the
    reference's, SIGTERM 143, each with the one line"""
    code = f"from pattern_lens.server import main; main({str(tmp_path)!r}, port=0)"
    for sig, expected in ((signal.SIGTERM, 143), (signal.SIGINT, 0)):
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        line = ""
        while "serving" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == expected, (sig, out, err)
        assert "server stopped" in out + err and "Traceback" not in out + err
