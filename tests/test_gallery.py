"""the gallery's Python side: the index data it writes, the summaries adapter, the CLI entries"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pattern_lens._layout import GALLERY_DIR, GALLERY_INDEX
from pattern_lens._view.gallery import DECODABLE_FIGURES, write_gallery
from pattern_lens._view.summaries import HEAD_STATS_VERSIONS, read_head_stats
from pattern_lens.attn_figure_funcs import raw
from pattern_lens.figure_util import matrix_to_image_preprocess
from pattern_lens.synthetic import write_synthetic_model

REPO = Path(__file__).resolve().parents[1]
STATS_FILE = "head_stats.json"  # the names the README documents, written out: the code's constants are under test
PREVIEW_FILE = "preview.png"


def _data(path: Path, key: str) -> object:
    """what a generated script hands to the page under `key`"""
    text = path.read_text()
    if text.startswith("/* pattern_lens "):  # a statistics script's stamp: which version wrote it
        text = text.split("\n", 1)[1]
    prefix = f'(window.PL_DATA = window.PL_DATA || {{}})["{key}"] = '
    assert text.startswith(prefix) and text.endswith(";\n"), text[:200]
    return json.loads(text[len(prefix):-2])


def test_reads_what_the_reference_wrote(tmp_path, parity_dir):
    """a copy of two prompts of the reference's own output: no models.jsonl or figures.jsonl, a <BOS> position"""
    model = tmp_path / "pythia-14m"
    model.mkdir()
    shutil.copy(parity_dir / "model_cfg.json", model)
    rows = [json.loads(line) for line in (parity_dir / "prompts.jsonl").read_text().splitlines()[:2]]
    (model / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for row in rows:
        shutil.copytree(parity_dir / "prompts" / row["hash"], model / "prompts" / row["hash"], ignore=shutil.ignore_patterns("*.npz"))
    info = write_gallery(tmp_path)
    assert (info.n_models, info.n_prompts) == (1, 2)
    index = _data(tmp_path / GALLERY_DIR / "data" / "index.js", "index")
    (m,) = index["models"]
    assert (m["name"], m["n_layers"], m["n_heads"], m["n_prompts"]) == ("pythia-14m", 6, 4, 2)
    assert m["figures"] == [{"name": "raw", "fmt": "png"}]  # no preview: raw's grid shows raw.png
    prompts = _data(tmp_path / GALLERY_DIR / "data" / "pythia-14m" / "prompts.js", "prompts/pythia-14m")
    assert [p["hash"] for p in prompts] == [r["hash"] for r in rows] and prompts[0]["tokens"] == rows[0]["tokens"]
    page = (tmp_path / GALLERY_INDEX).read_text()
    assert "$$" not in page and not re.search(r"(src|href)=\"(https?:)?//", page)


def test_page_and_scripts_use_nothing_from_the_network():
    frontend = REPO / "pattern_lens" / "frontend"
    for path in frontend.iterdir():
        text = path.read_text()
        assert not re.search(r"https?://", text), f"{path.name} names a URL"
        assert "import(" not in text and "@import" not in text


def test_rewrites_only_what_changed(tmp_path):
    write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=8, n_prompts=2)
    write_gallery(tmp_path)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file() and GALLERY_DIR in p.parts or p.name == GALLERY_INDEX)
    before = {p: p.stat().st_mtime_ns for p in files}
    write_gallery(tmp_path)
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_colour_bins_hold_the_values(rng=np.random.default_rng(5)):
    """the page's premise: a pixel of `raw` is the colour of bin floor(256 v) of Blues, v the normalised value"""
    spec = DECODABLE_FIGURES["raw"]
    assert spec == {"cmap": "Blues", "normalized": True}
    from pattern_lens._export.preview import PREVIEW_CMAP

    # the preview, where it has one pixel per token pair, is the pattern coloured as raw colours it
    assert DECODABLE_FIGURES["preview"] == {"cmap": PREVIEW_CMAP, "normalized": True} == spec
    from pattern_lens._view.gallery import _colormap_lut

    lut = np.array(_colormap_lut(spec["cmap"]), dtype=np.uint8)
    bins: dict[tuple, list[int]] = {}
    for i, colour in enumerate(map(tuple, lut)):
        bins.setdefault(colour, []).append(i)
    assert all(b == list(range(b[0], b[-1] + 1)) for b in bins.values())  # shared colours are neighbours
    attn = rng.random((40, 40)).astype(np.float32) ** 3
    rgb = matrix_to_image_preprocess(attn, normalize=True, cmap="Blues")
    norm = (attn - attn.min()) / (attn.max() - attn.min())
    for (q, k), v in np.ndenumerate(norm):
        b = bins[tuple(rgb[q, k])]
        lo, hi = b[0] / 256, (b[-1] + 1) / 256
        assert lo <= v < hi or (v == 1.0 and hi == 1.0), (q, k, v, lo, hi)
    raw_doc = raw.__doc__ or ""
    assert "Blues" in raw_doc  # the figure the table describes


@pytest.mark.parametrize("shape", ["rows", "folders", "arrays"])
def test_head_stats_shapes(tmp_path, shape):
    values = {(L, H): 10 * L + H + 0.5 for L in range(2) for H in range(3)}
    if shape == "rows":
        data = {"heads": [{"layer": L, "head": H, "mean": v, "label": "x", "n_ctx": 9} for (L, H), v in values.items()]}
    elif shape == "folders":
        data = {}
        for (L, H), v in values.items():
            data.setdefault(f"L{L}", {})[f"H{H}"] = {"mean": v}
    else:
        data = {"stats": {"mean": [[values[(L, H)] for H in range(3)] for L in range(2)]}}
    (tmp_path / STATS_FILE).write_text(json.dumps(data))
    stats = read_head_stats(tmp_path, 2, 4)  # a 4th head the file does not cover
    assert stats.values == {"mean": [[0.5, 1.5, 2.5, None], [10.5, 11.5, 12.5, None]]}  # n_ctx is no statistic
    assert stats.n_ctx == ([[9, 9, 9, None], [9, 9, 9, None]] if shape == "rows" else None)


def _render_pass_file(heads: list[dict], **header) -> str:
    """a head_stats.json as pattern_lens._summaries.summaries documents it (written out here, not by it)"""
    data = {"format": "pattern_lens.head_stats", "version": 1, "statistics": ["prev_token", "entropy", "key_max_position"],
            "local_window": 8, "preview": {"file": "preview.png", "size": 64, "cmap": "Blues"}, **header, "heads": heads}
    return json.dumps(data)


def test_head_stats_of_the_render_pass(tmp_path):
    """only the names in `statistics` are offered, in its order; n_ctx per head kept apart; nulls stay"""
    heads = [
        {"layer": 0, "head": 0, "n_ctx": 17, "causal": True, "prev_token": 0.25, "entropy": None, "key_max_position": 3, "extra": 1.0},
        {"layer": 1, "head": 1, "n_ctx": 17, "causal": False, "prev_token": 0.5, "entropy": 0.125, "key_max_position": 0},
    ]
    (tmp_path / STATS_FILE).write_text(_render_pass_file(heads))
    stats = read_head_stats(tmp_path, 2, 2)
    assert list(stats.values) == ["prev_token", "entropy", "key_max_position"]
    assert stats.values["prev_token"] == [[0.25, None], [None, 0.5]]
    assert stats.values["entropy"] == [[None, None], [None, 0.125]]
    assert stats.values["key_max_position"] == [[3.0, None], [None, 0.0]]
    assert stats.n_ctx == [[17, None], [None, 17]]
    # a statistic without any value (undefined everywhere) is still listed; the file before any head: nothing
    (tmp_path / STATS_FILE).write_text(_render_pass_file([{"layer": 0, "head": 0, "n_ctx": 1, "prev_token": None}], statistics=["prev_token"]))
    assert read_head_stats(tmp_path, 1, 1).values == {"prev_token": [[None]]}
    (tmp_path / STATS_FILE).write_text(_render_pass_file([]))
    assert read_head_stats(tmp_path, 1, 1) is None


def test_head_stats_format_is_the_pipelines(tmp_path):
    from pattern_lens._summaries.summaries import SummarySpec

    header = SummarySpec().header()  # what the render pass writes
    assert header["format"] == "pattern_lens.head_stats" and header["version"] in HEAD_STATS_VERSIONS
    (tmp_path / STATS_FILE).write_text(_render_pass_file([{"layer": 0, "head": 0, "prev_token": 0.5}], version=2))
    with pytest.raises(ValueError, match="version 2"):
        read_head_stats(tmp_path, 1, 1)


def test_head_stats_absent_or_bad(tmp_path):
    assert read_head_stats(tmp_path, 1, 1) is None
    (tmp_path / STATS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="cannot read head statistics"):
        read_head_stats(tmp_path, 1, 1)
    (tmp_path / STATS_FILE).write_text('{"x": "y"}')
    with pytest.raises(ValueError, match="no per-head numbers"):
        read_head_stats(tmp_path, 1, 1)


def test_bad_stats_file_does_not_cost_the_gallery(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=1, n_ctx=4, n_prompts=1)
    (next((model / "prompts").iterdir()) / STATS_FILE).write_text("[1, 2")
    with pytest.warns(UserWarning, match="cannot read head statistics"):
        info = write_gallery(tmp_path)
    assert info.n_prompts == 1


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pattern_lens.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_render_writes_the_gallery_unless_told_not_to(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=8, n_prompts=1)
    result = _cli("render", "-m", model.name, "-s", str(tmp_path), "--figure-funcs", "raw", "-j", "1", "--no-index-html", "-q")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / GALLERY_INDEX).exists() and not (tmp_path / GALLERY_DIR).exists()
    result = _cli("render", "-m", model.name, "-s", str(tmp_path), "--figure-funcs", "raw", "-j", "1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / GALLERY_INDEX).is_file()
    assert f"gallery: {(tmp_path / GALLERY_INDEX).resolve().as_uri()}" in result.stdout
    index = _data(tmp_path / GALLERY_DIR / "data" / "index.js", "index")
    # the summaries are on by default: raw's grid shows the previews, and the preview is a figure too
    (m,) = index["models"]
    assert m["figures"] == [{"name": "raw", "fmt": "png", "thumb": PREVIEW_FILE}, {"name": "preview", "fmt": "png"}]
    (prompt_dir,) = (model / "prompts").iterdir()
    assert m["stats_prompts"] == [prompt_dir.name]
    written = json.loads((prompt_dir / STATS_FILE).read_text())
    stats = _data(tmp_path / GALLERY_DIR / "data" / model.name / "stats" / f"{prompt_dir.name}.js", f"stats/{model.name}/{prompt_dir.name}")
    assert list(stats["values"]) == written["statistics"] == m["stats"] and "n_ctx" not in stats["values"]
    for row in written["heads"]:
        assert stats["n_ctx"][row["layer"]][row["head"]] == row["n_ctx"] == 8
        for name in written["statistics"]:
            assert stats["values"][name][row["layer"]][row["head"]] == row[name]


def test_summaries_only_gallery_shows_the_previews(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=8, n_prompts=1)
    result = _cli("render", "-m", model.name, "-s", str(tmp_path), "--summaries-only", "-j", "1", "-q")
    assert result.returncode == 0, result.stderr
    index = _data(tmp_path / GALLERY_DIR / "data" / "index.js", "index")
    assert index["models"][0]["figures"] == [{"name": "preview", "fmt": "png"}]
    assert index["names"]["preview_figure"] == "preview" and index["names"]["preview_file"] == PREVIEW_FILE


def test_gallery_command(tmp_path):
    write_synthetic_model(tmp_path, n_layers=1, n_heads=1, n_ctx=4, n_prompts=3)
    result = _cli("gallery", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "1 models, 3 prompts" in result.stdout and (tmp_path / GALLERY_INDEX).resolve().as_uri() in result.stdout
    result = _cli("gallery", str(tmp_path / "missing"))
    assert result.returncode == 1 and "data folder not found" in result.stderr


def test_demo_says_where_to_open_the_gallery(tmp_path):
    result = _cli("demo", "--out", str(tmp_path / "d"), "--shape", "tiny", "-j", "1", "-q")
    assert result.returncode == 0, result.stderr
    assert f"open {(tmp_path / 'd' / GALLERY_INDEX).resolve().as_uri()}" in result.stdout
    assert f"pattern-lens serve {tmp_path / 'd'}" in result.stdout
    assert (tmp_path / "d" / GALLERY_DIR / "data" / "index.js").is_file()


def test_render_imports_no_server(tmp_path):
    """writing the gallery after a render needs no http server (nor playwright)"""
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=1, n_ctx=4, n_prompts=1)
    code = (
        "import sys; from pattern_lens.cli import main; "
        f"rc = main(['render', '-m', {model.name!r}, '-s', {str(tmp_path)!r}, '--figure-funcs', 'raw', '-j', '1', '-q']); "
        "print(rc, sorted(m for m in ('http.server', 'socketserver', 'pattern_lens._view.serve', 'playwright') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout + result.stderr
    assert (tmp_path / GALLERY_INDEX).is_file()


def test_statistics_scripts_are_rewritten_only_when_their_file_changed(tmp_path, monkeypatch):
    """a render ends by refreshing the gallery: unchanged statistics files are not read again"""
    import pattern_lens._view.gallery as gallery

    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=8, n_prompts=3, seed=1)
    from pattern_lens.figures import figures_main

    assert figures_main(model.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False).ok
    write_gallery(tmp_path)
    reads: list[str] = []
    real = gallery.read_head_stats
    monkeypatch.setattr(gallery, "read_head_stats", lambda d, *a: reads.append(Path(d).name) or real(d, *a))
    write_gallery(tmp_path)
    assert len(reads) == 1  # the model's first prompt, for the statistic names; the others are up to date
    hashes = [json.loads(line)["hash"] for line in (model / "prompts.jsonl").read_text().splitlines()]
    changed = model / "prompts" / hashes[2] / STATS_FILE
    data = json.loads(changed.read_text())
    data["heads"][0]["entropy"] = 0.5
    changed.write_text(json.dumps(data))
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))  # later than its script
    reads.clear()
    write_gallery(tmp_path)
    assert sorted(reads) == sorted([hashes[0], hashes[2]])
    script = tmp_path / "pattern_lens_gallery" / "data" / model.name / "stats" / f"{hashes[2]}.js"
    assert _data(script, f"stats/{model.name}/{hashes[2]}")["values"]["entropy"][0][0] == 0.5
