"""`python -m pattern_lens.server` / `pattern-lens serve`: only files in the data folder, clear errors, Ctrl-C"""

import gzip
import http.client
import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from gallery_support import REPO, running_server
from pattern_lens._view.serve import is_safe_request_path

SECRET = "top secret, outside the data folder"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """a data folder beside a secret file, links inside it pointing out, and its server"""
    root = tmp_path_factory.mktemp("serve")
    (root / "secret.txt").write_text(SECRET)
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_text(SECRET)
    data = root / "data"
    (data / "model" / "sub").mkdir(parents=True)
    (data / "models.jsonl").write_text('{"model_name": "model"}\n')
    (data / "model" / "fig.svgz").write_bytes(gzip.compress(b"<svg xmlns='http://www.w3.org/2000/svg'/>"))
    os.symlink(root / "outside", data / "link_dir")
    os.symlink(root / "secret.txt", data / "link_file")
    with running_server(data) as server:
        yield data, server


def _get(url: str, raw_path: str) -> tuple[int, dict, bytes]:
    """GET with the path sent exactly as given (no client-side normalisation)"""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_serves_files_of_the_folder_and_the_gallery(served):
    data, server = served
    assert server.url.startswith("http://127.0.0.1:")
    status, _, body = _get(server.url, "/models.jsonl")
    assert status == 200 and body == (data / "models.jsonl").read_bytes()
    status, _, body = _get(server.url, "/")
    assert status == 200 and b"pattern_lens_gallery/app.js" in body  # written at start: the folder had none
    assert (data / "pattern_lens_gallery" / "data" / "index.js").is_file()


def test_svgz_is_sent_as_gzip_encoded_svg(served):
    data, server = served
    status, headers, body = _get(server.url, "/model/fig.svgz")
    assert status == 200
    assert headers["content-type"] == "image/svg+xml" and headers["content-encoding"] == "gzip"
    assert body == (data / "model" / "fig.svgz").read_bytes()


@pytest.mark.parametrize("raw_path", [
    "/../secret.txt",
    "/model/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/model/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/%252e%252e%252fsecret.txt",
    "/..%5csecret.txt",
    "/model%5c..%5c..%5csecret.txt",
    "/link_dir/secret.txt",
    "/link_file",
    "//secret.txt",
    "/%00/../secret.txt",
])
def test_nothing_outside_the_folder(served, raw_path):
    _, server = served
    status, _, body = _get(server.url, raw_path)
    assert status in (403, 404), (raw_path, status)
    assert SECRET.encode() not in body


def test_folders_are_not_listed(served):
    _, server = served
    status, _, body = _get(server.url, "/model/sub/")
    assert status == 404 and b"fig.svgz" not in body


def test_safe_path_rule():
    assert is_safe_request_path("/a/b.png?x=1")
    assert is_safe_request_path("/a..b/c")  # dots inside a name are fine
    for bad in ("/../x", "/a/%2e%2e/x", "/%252E%252E/x", "/a\\b", "/a%5cb", "/a%00b"):
        assert not is_safe_request_path(bad), bad


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for cmd in (
            [sys.executable, "-m", "pattern_lens.server", "--path", str(tmp_path), "--port", str(port)],
            [sys.executable, "-m", "pattern_lens.cli", "serve", str(tmp_path), "--port", str(port)],
        ):
            result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
            assert result.returncode == 1, result
            assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
            assert "--port" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "index.html").exists()  # nothing written when the server could not start


def test_missing_folder_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pattern_lens.cli", "serve", str(tmp_path / "nope")], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "data folder not found" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("module", ["pattern_lens.server", "pattern_lens.cli"])
def test_ctrl_c_stops_cleanly(tmp_path, module):
    with running_server(tmp_path, module=module) as server:
        status, _, _ = _get(server.url, "/index.html")
        assert status == 200
        code, out, err = server.stop()
    assert code == 130, err  # as `render`: 128 + SIGINT, and one line
    assert "server stopped" in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    with pytest.raises(OSError):  # the port is closed
        _get(server.url, "/index.html")


def test_serve_defaults_to_attn_data_like_render(tmp_path):
    """`pattern-lens serve` with no folder serves `attn_data` (as render, gallery and stats default
    to it); the reference's `python -m pattern_lens.server` keeps the current folder"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ours = subprocess.run([sys.executable, "-m", "pattern_lens.cli", "serve", "--port", "0"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    assert ours.returncode == 1 and "data folder not found: attn_data" in ours.stderr, ours
    help_text = subprocess.run([sys.executable, "-m", "pattern_lens.server", "--help"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60, env=env).stdout
    assert "the current folder" in help_text
