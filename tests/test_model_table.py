"""pattern_lens.model_table and pattern_lens.load_model's name resolution: offline, with and without TransformerLens"""

import socket
import subprocess
import sys
import urllib.error
from pathlib import Path
from unittest import mock

import pytest

import pattern_lens.load_model as lm
import pattern_lens.model_table as mt
from pattern_lens._model.model_table import SNAPSHOT_PATH, parse_csv, snapshot_info
from pattern_lens.consts import sanitize_name_str

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network touched")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(mt.urllib.request, "urlopen", refuse)


@pytest.fixture
def fresh_resolver(monkeypatch, tmp_path):
    monkeypatch.setattr(mt, "MODEL_TABLE_CACHE", tmp_path / "none" / "model_table.csv")
    monkeypatch.setattr(lm, "_NAME_RESOLVER", None)
    monkeypatch.setattr(lm, "_ALIASES", None)
    # TransformerLens absent (it is not installed here; this makes sure)
    with mock.patch.dict("sys.modules", {"transformer_lens": None, "transformer_lens.loading_from_pretrained": None}):
        yield


def test_snapshot_is_shipped_with_date_and_source():
    info = snapshot_info()
    assert info["date"] and "TransformerLens 2.17.0" in info["names_source"] and "mivanit/transformerlens-model-table" in info["n_params_source"]
    rows = parse_csv(SNAPSHOT_PATH.read_text())
    assert len(rows) == info["n_models"] > 200
    assert {"name.default_alias", "name.huggingface", "n_params.as_int"} <= set(rows[0])


def test_fetch_model_table_offline_from_snapshot(no_network, fresh_resolver):
    table = mt.fetch_model_table()
    assert mt.get_model_params("pythia-14m", table) == 1179648
    assert table["gpt2-small"] == mt.ModelInfo("gpt2-small", 84934656)
    with pytest.raises(KeyError, match="'no-such-model' not found in model table"):
        mt.get_model_params("no-such-model", table)


def test_cache_is_used_before_snapshot_and_refresh_only_on_request(tmp_path, monkeypatch):
    cache = tmp_path / "c" / "model_table.csv"
    monkeypatch.setattr(mt, "MODEL_TABLE_CACHE", cache)
    calls = []
    monkeypatch.setattr(mt, "_download_csv", lambda url, path: calls.append(url) or "name.default_alias,n_params.as_int\nx,5\n")
    assert "pythia-14m" in mt.fetch_model_table() and calls == []  # no cache: the snapshot, no download
    cache.parent.mkdir()
    cache.write_text("name.default_alias,n_params.as_int\nonly-this,7\n")
    assert mt.fetch_model_table() == {"only-this": mt.ModelInfo("only-this", 7)}
    assert mt.fetch_model_table(force_refresh=True) == {"x": mt.ModelInfo("x", 5)} and calls == [mt.MODEL_TABLE_URL]


def test_download_writes_cache_atomically(tmp_path, monkeypatch):
    class Resp:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return b"name.default_alias,n_params.as_int\na,1\n"

    monkeypatch.setattr(mt.urllib.request, "urlopen", lambda url, timeout: Resp())
    out = tmp_path / "d" / "t.csv"
    assert mt._download_csv("https://example.invalid/t.csv", out).startswith("name.")
    assert out.read_text().endswith("a,1\n") and [p.name for p in out.parent.iterdir()] == ["t.csv"]
    monkeypatch.setattr(mt.urllib.request, "urlopen", mock.Mock(side_effect=urllib.error.URLError("down")))
    with pytest.raises(urllib.error.URLError):
        mt._download_csv("https://example.invalid/t.csv", out)
    assert out.read_text().endswith("a,1\n")  # the old cache is kept


@pytest.mark.parametrize(
    "name, alias",
    [
        ("tiny-stories-1M", "tiny-stories-1M"),
        ("roneneldan/TinyStories-1M", "tiny-stories-1M"),
        ("TinyStories-1M", "tiny-stories-1M"),
        ("roneneldan-TinyStories-1M", "tiny-stories-1M"),
        ("gpt2", "gpt2-small"),
        ("GPT2-Small", "gpt2-small"),  # TransformerLens's lookup is case-insensitive
        ("solu-1l-old", "solu-1l-pile"),  # a second alias
        ("EleutherAI/pythia-14m", "pythia-14m"),
        ("my-own/model x", "my-own/model x"),
        ("", ""),
    ],
)
def test_resolve_without_transformer_lens(no_network, fresh_resolver, name, alias):
    assert lm.resolve_model_name(name) == alias
    assert lm.sanitize_model_name(name) == sanitize_name_str(alias)
    assert lm.sanitize_model_name(lm.sanitize_model_name(name)) == lm.sanitize_model_name(name)


def test_every_snapshot_model_round_trips(no_network, fresh_resolver):
    for row in parse_csv(SNAPSHOT_PATH.read_text()):
        alias, hf = row["name.default_alias"], row["name.huggingface"]
        tail = hf.rsplit("/", 1)[-1]
        for variant in {alias, hf, tail, sanitize_name_str(hf), sanitize_name_str(tail)}:
            assert lm.resolve_model_name(variant) == alias, (variant, alias)


def test_resolver_uses_fake_transformer_lens_first(fresh_resolver, monkeypatch):
    fake = mock.Mock()
    fake.get_official_model_name = lambda n: {"my-alias": "EleutherAI/pythia-14m"}.get(n) or (_ for _ in ()).throw(ValueError(n))
    with mock.patch.dict("sys.modules", {"transformer_lens": mock.Mock(), "transformer_lens.loading_from_pretrained": fake}):
        assert lm.resolve_model_name("my-alias") == "pythia-14m"
        assert lm.resolve_model_name("unknown/x") == "unknown/x"


def test_load_model_without_transformer_lens_says_what_to_install(fresh_resolver):
    from pattern_lens._model.load import ModelLoadError

    with pytest.raises(ModelLoadError, match="needs transformer-lens"):
        lm.load_model("pythia-14m")


def test_import_touches_no_network_and_cli(tmp_path):
    code = (
        "import socket, urllib.request\n"
        "def refuse(*a, **k): raise SystemExit('network touched')\n"
        "socket.create_connection = refuse; socket.getaddrinfo = refuse; urllib.request.urlopen = refuse\n"
        "import pattern_lens.model_table, pattern_lens.load_model\n"
        "from pattern_lens.load_model import sanitize_model_name\n"
        "assert sanitize_model_name('roneneldan/TinyStories-1M') == 'tiny-stories-1M'\n"
        "import sys; sys.argv = ['x']; sys.exit(pattern_lens.model_table.main())\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "pythia-14m" in r.stdout and "snapshot shipped with pattern_lens" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pattern_lens.model_table", "--cache-path"], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.strip() == str(tmp_path / ".cache" / "pattern_lens" / "model_table.csv")
