"""head summaries in the render pass: per-prompt head_stats.json, previews, resuming, `pattern-lens stats`"""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import reference_head_stats as ref
import reference_impl
from pattern_lens._input.npz import ActivationsFile
from pattern_lens._summaries.stats import STATISTICS
from pattern_lens.figures import figures_main
from pattern_lens.synthetic import head_kinds, write_synthetic_model

REPO = Path(__file__).resolve().parents[1]

KIND_STAT = {"previous_token": "prev_token", "first_token": "first_token", "local_window": "local", "uniform": "entropy"}
"each synthetic head kind and the statistic that should rank it first (highest)"


def _seed_with_exactly(kinds: set[str], n_layers: int, n_heads: int) -> int:
    """the first seed whose synthetic model has every one of `kinds` and no other kind (chosen by kinds only)"""
    for seed in range(1000):
        flat = {k for row in head_kinds(n_layers, n_heads, seed) for k in row}
        if flat == kinds:
            return seed
    raise AssertionError("no such seed")


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pattern_lens.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def _prompt_dirs(model: Path) -> list[Path]:
    return sorted(p for p in (model / "prompts").iterdir() if p.is_dir())


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_stats_ranks_each_synthetic_kind_first_on_its_statistic(tmp_path):
    seed = _seed_with_exactly(set(KIND_STAT), 2, 6)
    model = write_synthetic_model(tmp_path, n_layers=2, n_heads=6, n_ctx=64, n_prompts=2, seed=seed)
    kinds = head_kinds(2, 6, seed)
    run = _cli("render", "-m", model.name, "-s", str(tmp_path), "--summaries-only", "-j", "1", "-q")
    assert run.returncode == 0, run.stdout + run.stderr
    for kind, stat in KIND_STAT.items():
        out = _cli("stats", "-m", model.name, "-s", str(tmp_path), "--stat", stat, "--json")
        assert out.returncode == 0, out.stderr
        ranked = json.loads(out.stdout)
        assert len(ranked) == 12 and all(r["n_prompts"] == 2 for r in ranked)
        top = ranked[0]
        assert kinds[top["layer"]][top["head"]] == kind, f"{stat}: L{top['layer']}H{top['head']} is {kinds[top['layer']][top['head']]}"
    table = _cli("stats", "-m", model.name, "-s", str(tmp_path), "--stat", "prev_token", "--top", "3")
    assert table.returncode == 0 and "prev_token" in table.stdout and len(table.stdout.strip().splitlines()) == 5


def test_files_hold_the_statistics_and_previews_of_every_head(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=2, n_heads=3, n_ctx=40, n_prompts=2, seed=3)
    s = figures_main(model.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False,
                     profile="exact", preview_size=16)
    assert s.ok
    for pdir in _prompt_dirs(model):
        data = json.loads((pdir / "head_stats.json").read_text())
        assert data["format"] == "pattern_lens.head_stats" and data["version"] == 1
        assert data["statistics"] == list(STATISTICS)
        assert data["preview"] == {"file": "preview.png", "size": 16, "cmap": "Blues"}
        assert [(r["layer"], r["head"]) for r in data["heads"]] == [(L, H) for L in range(2) for H in range(3)]
        with ActivationsFile(pdir / "activations.npz", n_heads=3) as acts:
            for row in data["heads"]:
                pattern = acts.read_layer(row["layer"])[row["head"]]
                want = ref.head_stats(pattern, True, 8)
                assert row["causal"] is True and row["n_ctx"] == 40
                for name in STATISTICS:
                    assert row[name] == pytest.approx(want[name], rel=2e-5, abs=2e-5), name
                png = (pdir / f"L{row['layer']}" / f"H{row['head']}" / "preview.png").read_bytes()
                # coloured as the reference colours the numpy block average, its first block clipped
                # to the largest other one (it averages the few positions the first rows see)
                blocks = ref.preview(pattern, True, 16).astype(np.float32)
                blocks[0, 0] = min(blocks[0, 0], np.delete(blocks.ravel(), 0).max())
                expected = reference_impl.preprocess(blocks, True, "Blues")
                got = _pixels(png)
                assert got.shape == (16, 16, 3)
                assert np.abs(got.astype(int) - expected.astype(int)).max() <= 3  # float32 block sums: at most a LUT step


def test_preview_is_the_full_image_when_the_context_fits(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=3, n_ctx=48, n_prompts=1, seed=1)
    assert figures_main(model.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False).ok
    for head in (_prompt_dirs(model)[0] / "L0").iterdir():
        assert np.array_equal(_pixels((head / "preview.png").read_bytes()), _pixels((head / "raw.png").read_bytes()))


def test_summaries_only_and_no_summaries(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=2, n_heads=2, n_ctx=32, n_prompts=1)
    only = figures_main(model.name, tmp_path, None, False, None, n_jobs=1, progress=False, verbose=False,
                        summaries_only=True)
    assert only.ok and only.figure_funcs == []
    pdir = _prompt_dirs(model)[0]
    assert sorted(p.name for p in (pdir / "L1" / "H1").iterdir()) == ["preview.png"]
    assert (pdir / "head_stats.json").is_file()
    rows = {r["name"]: r for r in map(json.loads, (tmp_path / "figures.jsonl").read_text().splitlines())}
    assert rows["preview"]["figure_save_fmt"] == "png"

    other = write_synthetic_model(tmp_path / "off", n_layers=1, n_heads=2, n_ctx=32, n_prompts=1)
    run = _cli("render", "-m", other.name, "-s", str(tmp_path / "off"), "--figure-funcs", "raw", "--no-summaries", "-j", "1", "-q")
    assert run.returncode == 0, run.stderr
    odir = _prompt_dirs(other)[0]
    assert not (odir / "head_stats.json").exists()
    assert sorted(p.name for p in (odir / "L0" / "H0").iterdir()) == ["raw.png"]
    no_stats = _cli("stats", "-m", other.name, "-s", str(tmp_path / "off"))
    assert no_stats.returncode == 1 and "no head statistics" in no_stats.stderr and "--summaries-only" in no_stats.stderr
    missing = _cli("stats", "-m", "nope", "-s", str(tmp_path / "off"))
    assert missing.returncode == 1 and "model 'nope' not found" in missing.stderr and f"models under {tmp_path / 'off'}: {other.name}" in missing.stderr


def test_runs_over_different_layers_merge_into_the_same_file(tmp_path):
    args = dict(n_layers=3, n_heads=2, n_ctx=24, n_prompts=1, seed=2)
    split, whole = tmp_path / "split", tmp_path / "whole"
    model = write_synthetic_model(split, **args)
    write_synthetic_model(whole, **args)
    opts = dict(n_jobs=1, progress=False, verbose=False, summaries_only=True)
    figures_main(model.name, split, None, False, None, layers=[2], **opts)
    figures_main(model.name, split, None, False, None, layers=[0, 1], **opts)
    figures_main(model.name, whole, None, False, None, **opts)
    name = f"prompts/{_prompt_dirs(model)[0].name}/head_stats.json"
    assert (split / model.name / name).read_bytes() == (whole / model.name / name).read_bytes()
    # a head whose row vanished from the file gets it back from its preview, without reading its layer
    path = split / model.name / name
    data = json.loads(path.read_text())
    data["heads"] = [r for r in data["heads"] if (r["layer"], r["head"]) != (1, 0)]
    path.write_text(json.dumps(data))
    again = figures_main(model.name, split, None, False, None, **opts)
    assert (again.n_rendered, again.n_summarised, again.n_skipped) == (0, 0, 6)
    assert path.read_bytes() == (whole / model.name / name).read_bytes()
    # without the preview too (or with a preview that is not a complete PNG) it is summarised again,
    # and only that head
    path.write_text(json.dumps(data))
    (path.parent / "L1" / "H0" / "preview.png").unlink()
    (path.parent / "L0" / "H1" / "preview.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # truncated
    again = figures_main(model.name, split, None, False, None, **opts)
    assert (again.n_rendered, again.n_summarised, again.n_skipped) == (2, 2, 4)
    assert len(again.repaired) == 1 and "L0/H1/preview.png: truncated PNG" in again.repaired[0]
    assert path.read_bytes() == (whole / model.name / name).read_bytes()
    tree = {p.relative_to(split): p.read_bytes() for p in (split / model.name / "prompts").rglob("preview.png")}
    assert tree == {p.relative_to(whole): p.read_bytes() for p in (whole / model.name / "prompts").rglob("preview.png")}


def test_a_preview_carries_its_row_and_settings(tmp_path):
    """the row in the preview's text chunk is the file's row; other settings make it stale"""
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=24, n_prompts=1, seed=4)
    opts = dict(n_jobs=1, progress=False, verbose=False, summaries_only=True)
    assert figures_main(model.name, tmp_path, None, False, None, preview_size=8, **opts).ok
    pdir = _prompt_dirs(model)[0]
    data = json.loads((pdir / "head_stats.json").read_text())
    rows = data.pop("heads")
    for row in rows:
        image = Image.open(pdir / f"L{row['layer']}" / f"H{row['head']}" / "preview.png")
        carried = json.loads(image.info["pattern_lens.head_stats"])  # Pillow reads the chunk as a decoder would
        assert set(carried) == {"header", "row"} and carried["row"] == row and carried["header"] == data
        assert carried["header"]["preview"]["size"] == 8
        assert image.size == (8, 8)
    (pdir / "head_stats.json").unlink()
    other = figures_main(model.name, tmp_path, None, False, None, preview_size=12, **opts)
    assert other.n_summarised == 2  # previews of another size: recomputed, not recovered
    assert Image.open(pdir / "L0" / "H0" / "preview.png").size == (12, 12)


def test_a_pattern_that_cannot_be_summarised_is_a_failure_not_a_crash(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=16, n_prompts=1, compress=False)
    pdir = _prompt_dirs(model)[0]
    with np.load(pdir / "activations.npz") as z:
        arr = z["blocks.0.attn.hook_pattern"].copy()
    arr[0, 1, 5, 2] = -0.5  # a negative "attention" value in head 1
    np.savez(pdir / "activations.npz", **{"blocks.0.attn.hook_pattern": arr})
    s = figures_main(model.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    assert not s.ok and s.failures["summaries"].count == 1
    assert "negative" in s.failures["summaries"].first_message
    rows = json.loads((pdir / "head_stats.json").read_text())["heads"]
    assert [(r["layer"], r["head"]) for r in rows] == [(0, 0)]
    assert (pdir / "L0" / "H1" / "raw.png").is_file()  # the figure is still rendered


def test_sigkill_never_leaves_a_half_written_file_and_rerun_is_identical(tmp_path):
    """poll the per-prompt files while a 2-worker run writes them, kill it mid-run, rerun, compare"""
    args = dict(n_layers=6, n_heads=6, n_ctx=192, n_prompts=6, seed=7)
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    model = write_synthetic_model(killed_root, **args)
    write_synthetic_model(clean_root, **args)

    def cmd(root):
        return [sys.executable, "-m", "pattern_lens.cli", "render", "--model", model.name, "--save-path", str(root),
                "--summaries-only", "--jobs", "2", "--no-index-html"]

    proc = subprocess.Popen(cmd(killed_root), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    seen_files = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            files = list(killed_root.rglob("head_stats.json"))
            for f in files:
                data = json.loads(f.read_bytes())  # every read parses: never half-written
                assert len(data["heads"]) == 36  # a prompt's file appears only when all its heads are in
            seen_files = len(files)
            if seen_files >= 2:
                break
            time.sleep(0.002)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers: a group this test started
        proc.wait()
    assert 2 <= seen_files < 6, f"the kill should land mid-run ({seen_files} of 6 prompts done)"
    n_previews = sum(1 for _ in killed_root.rglob("preview.png"))
    assert n_previews < 6 * 36

    rerun = subprocess.run(cmd(killed_root), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    # every head with a preview is done: rows the parent never wrote come back from the previews
    assert f"{n_previews} already done" in rerun.stdout and f"{6 * 36 - n_previews} heads summarised" in rerun.stdout
    clean = figures_main(model.name, clean_root, None, False, None, n_jobs=2, progress=False, verbose=False,
                         summaries_only=True)
    assert clean.ok
    def tree(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    killed_tree, clean_tree = tree(killed_root), tree(clean_root)
    assert sorted(killed_tree) == sorted(clean_tree)
    assert sum(k.endswith("head_stats.json") for k in killed_tree) == 6
    different = [k for k in clean_tree if killed_tree[k] != clean_tree[k]]
    assert not different, f"{len(different)} files differ after resuming, e.g. {different[:3]}"


def test_a_statistics_file_that_cannot_be_written_is_reported_and_the_indexes_still_are(tmp_path):
    model = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=16, n_prompts=2, seed=8)
    first = _prompt_dirs(model)[0]
    (first / "head_stats.json").mkdir()  # its place is taken: writing it fails (even as root)
    s = figures_main(model.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    assert not s.ok and any("head_stats.json: cannot write the head statistics" in m for m in s.input_errors), s.format()
    assert (_prompt_dirs(model)[1] / "head_stats.json").is_file()  # the other prompt's file is written
    for index in (tmp_path / "figures.jsonl", tmp_path / "models.jsonl", model / "prompts.jsonl"):
        assert index.is_file()
    assert len(list(model.rglob("raw.png"))) == 4
