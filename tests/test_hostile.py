"""a data folder is untrusted input: crafted folders through `render`, `gallery`, `serve` and `stats` as real
processes, and the one guard (`pattern_lens._guard`) under hypothesis

Every real-process case snapshots a sentinel tree outside the save path before and after (any change
fails) and fails on a `Traceback` in the output.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gallery_support import REPO, running_server
from hostile_support import (
    MARKER,
    MODEL,
    can_mount_read_only,
    make_base,
    make_sentinel,
    no_traceback,
    read_only_command,
    run,
    snapshot,
)
from pattern_lens import _guard
from pattern_lens._errors import InputError

# -- the guard, in process, many examples ------------------------------------------------------------

_PIECES = st.sampled_from(["..", ".", "/", "\\", "\x00", "\n", "\x7f", "a", "b.c", "-_=", "é", "/etc/passwd", "x" * 300, ""])
_HOSTILE = st.one_of(st.text(max_size=40), st.lists(_PIECES, max_size=6).map("".join))


@pytest.fixture(scope="module")
def link_tree(tmp_path_factory):
    """a root with links in every position: out of the root, to itself (a loop), inside it"""
    base = tmp_path_factory.mktemp("guard")
    root, outside = base / "root", base / "outside"
    (root / "inner").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, root / "out_dir")
    os.symlink(outside / "f", root / "out_file")
    os.symlink(root / "loop", root / "loop")
    os.symlink(root / "inner", root / "in_dir")
    os.symlink(root / "out_dir", root / "chain_out")
    return root.resolve()


@settings(max_examples=600, deadline=None)
@given(name=_HOSTILE)
def test_guard_inside_never_leaves_the_root(link_tree, name):
    """`inside(root, name)` refuses, or gives `root/name`: one component, resolving inside the root"""
    try:
        path = _guard.inside(link_tree, name)
    except InputError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert path.parent == link_tree and path.name == name
    assert path.resolve().is_relative_to(link_tree)


@settings(max_examples=600, deadline=None)
@given(h=st.one_of(_HOSTILE, st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2)))
def test_guard_hash_is_a_plain_name(h):
    try:
        out = _guard.check_hash(h)
    except InputError:
        return
    assert isinstance(out, str) and out not in (".", "..") and len(out.encode()) <= _guard.MAX_NAME_BYTES
    assert set(out) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-=.")


@pytest.mark.parametrize("name", ["out_dir", "out_file", "loop", "chain_out"])
def test_guard_refuses_links_leading_out_and_loops(link_tree, name):
    with pytest.raises(InputError, match="leads outside|cannot be resolved"):
        _guard.inside(link_tree, name)
    with pytest.raises(InputError):
        _guard.inside(link_tree, name, "below")


def test_guard_follows_links_that_stay_inside(link_tree):
    assert _guard.inside(link_tree, "in_dir") == link_tree / "in_dir"


@pytest.fixture(scope="module")
def gallery_world(tmp_path_factory):
    base = tmp_path_factory.mktemp("gallery_hyp")
    save = make_base(base)
    sentinel = make_sentinel(base, save)
    return save, sentinel


@settings(max_examples=60, deadline=None)
@given(hashes=st.lists(_HOSTILE, min_size=1, max_size=4), names=st.lists(_HOSTILE, min_size=1, max_size=3))
def test_gallery_writer_stays_inside_for_any_hash_and_sanitized_name(gallery_world, hashes, names):
    """the gallery writer, in process, with hypothesis-made hashes and `sanitized_name`s (and the
    sentinel's absolute paths among them): nothing outside the save path changes"""
    from pattern_lens._view.gallery import write_gallery

    save, sentinel = gallery_world
    before = snapshot(sentinel.parent / "sentinel")
    index = save / MODEL / "prompts.jsonl"
    original = index.read_text()
    models = save / "models.jsonl"
    try:
        rows = [{"text": "t", "hash": h} for h in [*hashes, str(sentinel / "X"), "../../../sentinel/X"]]
        index.write_text(original + "".join(json.dumps(r) + "\n" for r in rows))
        models.write_text("".join(json.dumps({"model_name": "m", "sanitized_name": n}) + "\n" for n in [*names, str(sentinel / "elsewhere_model")]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_gallery(save)
    finally:
        index.write_text(original)
    assert snapshot(sentinel) == before
    data = save / "pattern_lens_gallery" / "data"
    assert not any(str(MARKER) in p.read_text() for p in data.rglob("*.js"))


# -- real processes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """one data folder holding many hostile cases at once (each named below), and a sentinel beside it"""
    base = tmp_path_factory.mktemp("hostile")
    save = make_base(base)
    s = make_sentinel(base, save)
    model = save / MODEL
    prompts = model / "prompts"
    good = sorted(p.name for p in prompts.iterdir())
    rows = [
        {"text": "absolute hash (issue 18.1)", "hash": str(s / "X")},
        {"text": "relative hash up and out (18.1)", "hash": "../../../../sentinel/X"},
        {"text": "NUL in the hash (18.8)", "hash": "a\u0000b"},
        {"text": "a very long hash", "hash": "h" * 5000},
        {"text": "npz link to outside (18.12)", "hash": "npzlink"},
        {"text": "prompt folder link to outside", "hash": "dirlink"},
        {"text": "prompt folder link loop", "hash": "loop"},
        {"text": "layer folder link to outside", "hash": "layerlink"},
    ]
    with open(model / "prompts.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write("[" * 100_000 + "\n")  # deep JSON (18.7)
    (prompts / "npzlink").mkdir()
    os.symlink(s / "activations.npz", prompts / "npzlink" / "activations.npz")
    os.symlink(s / "X", prompts / "dirlink")
    os.symlink(prompts / "loop", prompts / "loop")
    (prompts / "layerlink").mkdir()
    os.symlink(prompts / good[0] / "activations.npz", prompts / "layerlink" / "activations.npz")  # inside: fine
    os.symlink(s / "layer", prompts / "layerlink" / "L0")
    os.symlink(s / "X" / "head_stats.json", prompts / good[1] / "head_stats.json")  # statistics read through a link out
    (save / "models.jsonl").write_text(
        json.dumps({"model_name": MODEL, "sanitized_name": MODEL}) + "\n"
        + json.dumps({"model_name": "abs", "sanitized_name": str(s / "elsewhere_model")}) + "\n"  # (18.12)
        + json.dumps({"model_name": "up", "sanitized_name": "../sentinel/elsewhere_model"}) + "\n"
    )
    os.symlink(s / "gallery_target", save / "pattern_lens_gallery")  # (18.2)
    return save, s


def test_render_gallery_stats_of_a_hostile_folder(hostile):
    save, sentinel = hostile
    before = snapshot(sentinel)
    r = run(["render", "-m", MODEL, "-s", str(save), "--figure-funcs", "raw", "-j", "1", "-q"])
    g = run(["gallery", str(save)])
    st_ = run(["stats", "-m", MODEL, "-s", str(save), "--json"])
    no_traceback(r, g, st_)
    assert snapshot(sentinel) == before, "something outside the save path changed"
    assert r.returncode == 1  # bad input reported, the good prompts rendered
    out = r.stdout + r.stderr
    assert "is not a folder name" in out and "'a\\x00b'" in out and "nested more than" in out
    assert out.count("leads outside the save path") >= 3  # npz link, prompt folder link, layer link
    assert "cannot be resolved" in out  # the loop
    assert "h" * 200 not in out  # a long name is shown cut
    assert "writing the gallery" not in out  # the gallery was written despite it all
    assert (save / "pattern_lens_gallery").is_dir() and not (save / "pattern_lens_gallery").is_symlink()
    gallery_data = "".join(p.read_text() for p in (save / "pattern_lens_gallery" / "data").rglob("*.js"))
    assert str(MARKER) not in gallery_data and "secret" not in gallery_data
    assert g.returncode == 0 and "GalleryWarning" in g.stderr
    assert st_.returncode == 1 and "skipped:" in st_.stderr and "leads outside" in st_.stderr
    json.loads(st_.stdout)  # strict JSON


def test_serve_a_hostile_folder_over_http(hostile):
    import http.client

    save, sentinel = hostile
    before = snapshot(sentinel)
    with running_server(save, "--rewrite-index") as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        for path in ["/dirlink/head_stats.json", f"/{MODEL}/prompts/npzlink/activations.npz", "/pattern_lens_gallery/../../sentinel/X/head_stats.json"]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.putrequest("GET", path, skip_accept_encoding=True)
            conn.endheaders()
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            assert resp.status in (403, 404) and str(MARKER).encode() not in body, path
        code, out, err = server.stop()
    assert code == 130 and "Traceback" not in out + err
    assert snapshot(sentinel) == before


def _folder_with(tmp_path: Path, edit) -> Path:
    save = make_base(tmp_path)
    edit(save)
    return save


@pytest.mark.parametrize("case, expected", [
    ("layers", "'n_layers' is 100000000000, more than any model has"),
    ("heads", "'n_heads' is 100000000, more than any model has"),
    ("heads5", "'n_heads' is 5, but"),
])
def test_damaged_config_fails_fast_with_one_line(tmp_path, case, expected):
    def edit(save):
        cfg_path = save / MODEL / "model_cfg.json"
        cfg = json.loads(cfg_path.read_text())
        cfg.update({"layers": {"n_layers": 100_000_000_000}, "heads": {"n_heads": 100_000_000}, "heads5": {"n_heads": 5}}[case])
        cfg_path.write_text(json.dumps(cfg))

    save = _folder_with(tmp_path, edit)
    r = run(["render", "-m", MODEL, "-s", str(save), "-j", "1", "-q"], timeout=60)
    no_traceback(r)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr


@pytest.mark.parametrize("case", ["file", "index_folder"])
def test_gallery_with_something_in_the_way_is_one_line(tmp_path, case):
    save = make_base(tmp_path)
    if case == "file":
        (save / "pattern_lens_gallery").write_text("x")
    else:
        (save / "index.html").mkdir()
    r = run(["gallery", str(save)])
    no_traceback(r)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "move it away" in r.stderr


@pytest.mark.parametrize("command", ["render", "activations", "run"])
@pytest.mark.parametrize("model", ["", ",", " , "])
def test_empty_model_names_are_refused(tmp_path, model, command):
    r = run([command, "-m", model, "-s", str(tmp_path)])
    no_traceback(r)
    assert r.returncode in (1, 2) and "no model name" in r.stderr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """a data folder rendered once (with statistics); each test copies it"""
    save = make_base(tmp_path_factory.mktemp("rendered"))
    r = run(["render", "-m", MODEL, "-s", str(save), "--figure-funcs", "raw", "-j", "1", "-q"])
    assert r.returncode == 0, r.stdout + r.stderr
    return save


def _copy(save: Path, tmp_path: Path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(save, out, symlinks=True)
    return out


_HEADER = {"format": "pattern_lens.head_stats", "version": 1, "statistics": ["entropy"]}


@pytest.mark.parametrize("content", [
    "garbage {", [1, 2], b"\x89PNG\x00\xff", "folder", {**_HEADER}, {**_HEADER, "heads": [{"layer": "x"}, 5]},
    {**_HEADER, "version": 99, "heads": []}, "[" * 50_000,
], ids=["garbage", "list", "binary", "folder", "no_heads", "bad_rows", "version99", "deep"])
def test_stats_names_damaged_files_and_skips_them(rendered, tmp_path, content):
    save = _copy(rendered, tmp_path)
    path = sorted((save / MODEL / "prompts").iterdir())[0] / "head_stats.json"
    path.unlink()
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    r = run(["stats", "-m", MODEL, "-s", str(save), "--stat", "entropy"])
    no_traceback(r)
    assert r.returncode == 1
    assert f"skipped: {path}" in r.stderr, r.stderr
    assert "over 1 prompts" in r.stdout  # the other prompt still ranked


def test_stats_excludes_nan_and_inf_with_a_count_and_prints_strict_json(rendered, tmp_path):
    save = _copy(rendered, tmp_path)
    for prompt in (save / MODEL / "prompts").iterdir():
        path = prompt / "head_stats.json"
        data = json.loads(path.read_text())
        data["heads"][0]["entropy"] = math.inf
        data["heads"][1]["entropy"] = math.nan
        path.write_text(json.dumps(data))  # Infinity / NaN literals, as a damaged writer would leave them
    r = run(["stats", "-m", MODEL, "-s", str(save), "--stat", "entropy", "--json"])
    no_traceback(r)
    assert "RuntimeWarning" not in r.stderr
    assert "entropy: 4 values NaN or infinite in the files, excluded from the ranking" in r.stderr
    rows = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert rows[0]["mean"] is None or math.isfinite(rows[0]["mean"])
    assert [(x["layer"], x["head"]) for x in rows if x["mean"] is not None] == [(0, 2)]


@pytest.mark.parametrize("bad", [[0], "0", True, -1], ids=["list", "string", "bool", "negative"])
def test_render_resummarises_heads_whose_rows_are_damaged(rendered, tmp_path, bad):
    """a `head_stats.json` of the run's own settings with a row whose layer is not a layer number
    (unhashable, unorderable): render redoes that head's row, no traceback"""
    save = _copy(rendered, tmp_path)
    path = sorted((save / MODEL / "prompts").iterdir())[0] / "head_stats.json"
    data = json.loads(path.read_text())
    data["heads"][0]["layer"] = bad
    path.write_text(json.dumps(data))
    r = run(["render", "-m", MODEL, "-s", str(save), "--figure-funcs", "raw", "-j", "1", "-q"])
    no_traceback(r)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads(path.read_text())["heads"]
    assert sorted((row["layer"], row["head"]) for row in rows) == [(0, 0), (0, 1), (0, 2)]


def test_gallery_of_a_config_with_absurd_many_heads_does_not_allocate_them(rendered, tmp_path):
    """65,536 x 65,536 heads (each under the per-axis cap) with real statistics: the gallery takes the
    shape as unknown instead of building tables of 4e9 cells"""
    save = _copy(rendered, tmp_path)
    cfg_path = save / MODEL / "model_cfg.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(n_layers=1 << 16, n_heads=1 << 16)
    cfg_path.write_text(json.dumps(cfg))
    (save / "models.jsonl").write_text(json.dumps(cfg) + "\n")  # the gallery reads the index first
    r = run(["gallery", str(save)], timeout=60)
    no_traceback(r)
    assert r.returncode == 0, r.stderr
    assert "more than any model has" in r.stderr


# -- read-only folders ------------------------------------------------------------------------------


def test_render_into_a_read_only_folder_says_one_line_per_layer(tmp_path):
    if (why := can_mount_read_only()) is not None:
        pytest.skip(why)
    save = make_base(tmp_path)
    cmd = f"{shlex.quote(sys.executable)} -m pattern_lens.cli render -m {MODEL} -s {shlex.quote(str(save))} --figure-funcs raw -j 1 -q"
    r = subprocess.run(read_only_command(save, cmd), cwd=REPO, capture_output=True, text=True, timeout=120)
    no_traceback(r)
    assert r.returncode == 1
    lines = (r.stdout + r.stderr).splitlines()
    assert sum("cannot create the layer folder" in line for line in lines) == 2  # 2 prompts x 1 layer, not 6 heads
    assert not any("cannot create the head folder" in line for line in lines)
