"""the rendering pipeline: reference parity through the CLI, the reference API, selection, failures, bad input"""

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import joblib
import numpy as np
import pytest

import pattern_lens.attn_figure_funcs as aff
from conftest import SHARED
import pattern_lens.figures as figures
from pattern_lens._engine import planner as _planner
from pattern_lens._layout import layer_key
from pattern_lens._output.atomic import atomic_write_bytes, atomic_write_text
from pattern_lens._engine.planner import PromptWork, TaskPlanner
from pattern_lens.figure_util import matplotlib_figure_saver, matplotlib_multifigure_saver
from pattern_lens.figures import (
    FigureFuncTransferError,
    HTConfigMock,
    InputError,
    PatternLensError,
    compute_and_save_figures,
    figures_main,
    process_prompt,
    process_single_head,
    select_attn_figure_funcs,
)
from pattern_lens.profile import export_profile
from pattern_lens.synthetic import synthetic_layer, write_synthetic_model

REPO = Path(__file__).resolve().parents[1]
PARITY_ROOT = SHARED / "parity"


def _plan(prompts, layers, heads, n_funcs, n_workers, profile="exact"):
    """every task the planner makes without feedback (its prior estimate only)"""
    return [items for items, _ in TaskPlanner(prompts, layers, heads, n_funcs, n_workers, profile)]


# figure functions at module level: worker processes import them from this module


def ident(attn, save_dir):
    """the pattern's bytes"""
    atomic_write_bytes(Path(save_dir) / "ident.bin", np.ascontiguousarray(attn).tobytes())


ident.figure_save_fmt = "bin"


def boom(attn, save_dir):
    """fails where row 1 attends more to token 1 than to token 0"""
    if attn[1, 1] > attn[1, 0]:
        raise ValueError(f"boom at {attn[1, 1]:.3f}")
    atomic_write_bytes(Path(save_dir) / "boom.bin", b"ok")


boom.figure_save_fmt = "bin"


def multi(attn, save_dir):
    """two figures"""
    for name in multi._figure_names:
        atomic_write_bytes(Path(save_dir) / f"{name}.bin", f"{name}:{attn.shape[0]}".encode())


multi.figure_save_fmt = "bin"
multi._figure_names = ("multi.first", "multi.second")  # the reference's convention: full names


def profile_probe(attn, save_dir):
    """records the export profile active where it runs"""
    atomic_write_text(Path(save_dir) / "profile_probe.txt", export_profile())


profile_probe.figure_save_fmt = "txt"


@matplotlib_figure_saver(fmt="png")
def mpl_heat(attn, ax):
    """a matplotlib figure"""
    ax.matshow(attn, cmap="viridis")
    ax.axis("off")


@matplotlib_multifigure_saver(names=("rows", "cols"), fmt="png")
def mpl_sums(attn, axes):
    """two matplotlib figures"""
    axes["rows"].plot(attn.sum(axis=1))
    axes["cols"].plot(attn.sum(axis=0))


def _tiny(tmp_path, **kw) -> Path:
    args = dict(n_layers=2, n_heads=3, n_ctx=32, n_prompts=2, seed=1)
    args.update(kw)
    return write_synthetic_model(tmp_path, **args)


def _prompt_dirs(model_dir: Path) -> list[Path]:
    return sorted(p for p in (model_dir / "prompts").iterdir() if p.is_dir())


def _outputs(model_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(model_dir)): p.read_bytes()
        for p in sorted(model_dir.rglob("L*/H*/*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------------
# parity with the reference renders, through `python -m pattern_lens.figures`


def _parity_copy(dst: Path) -> Path:
    """copy the parity corpus's inputs (json, jsonl, npz), not its PNGs"""
    if not (PARITY_ROOT / "pythia-14m").is_dir():
        pytest.skip(f"parity corpus not found at {PARITY_ROOT} (no ../shared beside this checkout; PATTERN_LENS_SHARED can name the folder)")
    for src in (PARITY_ROOT / "pythia-14m").rglob("*"):
        if src.is_file() and src.suffix in {".json", ".jsonl", ".npz"}:
            out = dst / src.relative_to(PARITY_ROOT)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
    return dst


def test_cli_reproduces_the_reference_pngs_byte_for_byte(tmp_path):
    root = _parity_copy(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pattern_lens.figures", "--model", "pythia-14m", "--save-path", str(root),
         "--figure-funcs", "raw", "--quiet"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = sorted((PARITY_ROOT / "pythia-14m").rglob("raw.png"))
    assert len(expected) == 768
    different = [
        str(p.relative_to(PARITY_ROOT))
        for p in expected
        if (root / p.relative_to(PARITY_ROOT)).read_bytes() != p.read_bytes()
    ]
    assert not different, f"{len(different)} PNGs differ, e.g. {different[:5]}"
    assert len(list(root.rglob("raw.png"))) == 768
    assert not list(root.rglob("*.tmp")) and not list(root.rglob("*.error.txt"))
    # the indexes
    figures = [json.loads(line) for line in (root / "figures.jsonl").read_text().splitlines()]
    assert [f["name"] for f in figures] == sorted(f["name"] for f in figures)
    raw = next(f for f in figures if f["name"] == "raw")
    assert raw["func_name"] == "raw" and raw["figure_save_fmt"] == "png" and "return attn_matrix" in raw["code"]
    assert set(raw) == {"name", "func_name", "doc", "figure_save_fmt", "source", "code"}
    models = [json.loads(line) for line in (root / "models.jsonl").read_text().splitlines()]
    assert [(m["model_name"], m["sanitized_name"]) for m in models] == [("pythia-14m", "pythia-14m")]
    original = (PARITY_ROOT / "pythia-14m" / "prompts.jsonl").read_text().splitlines()
    rebuilt = (root / "pythia-14m" / "prompts.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in rebuilt] == [json.loads(x) for x in original]


# ---------------------------------------------------------------------------------------------------
# the pipeline


def test_every_head_rendered_from_its_own_pattern(tmp_path):
    model_dir = _tiny(tmp_path)
    summary = figures_main(model_dir.name, tmp_path, None, False, [ident], n_jobs=1, progress=False, verbose=False)
    assert summary.ok and summary.n_heads == 12 and summary.n_rendered == 12 and summary.n_outputs == 12
    for prompt_dir in _prompt_dirs(model_dir):
        with np.load(prompt_dir / "activations.npz") as npz:
            for layer in range(2):
                pats = npz[layer_key(layer)][0]
                for head in range(3):
                    got = (prompt_dir / f"L{layer}" / f"H{head}" / "ident.bin").read_bytes()
                    assert got == pats[head].tobytes()


def test_workers_write_what_one_process_writes(tmp_path, use_workers):
    a = _tiny(tmp_path / "a", n_ctx=48, n_layers=3, n_heads=4, n_prompts=3)
    b = _tiny(tmp_path / "b", n_ctx=48, n_layers=3, n_heads=4, n_prompts=3)
    funcs = [ident, multi, aff.raw]
    s1 = figures_main(a.name, a.parent, None, False, funcs, n_jobs=1, progress=False, verbose=False)
    s2 = figures_main(b.name, b.parent, None, False, funcs, n_jobs=2, progress=False, verbose=False)
    assert s1.backend == "sequential" and s2.backend == "warm" and s2.n_jobs == 2
    assert s1.ok and s2.ok and s2.n_outputs == 36 * (1 + 2 + 1)  # files: ident, multi's two figures, raw
    assert _outputs(a) == _outputs(b)
    assert (a.parent / "figures.jsonl").read_text() == (b.parent / "figures.jsonl").read_text()


def test_a_module_added_to_sys_path_after_the_workers_started_is_found(tmp_path, monkeypatch):
    """two runs in one session: the second uses a module from a folder put on sys.path after the
    first run started the (reused) worker pool"""
    a = _tiny(tmp_path / "a", n_ctx=8, n_layers=1, n_heads=2, n_prompts=1)
    assert figures_main(a.name, a.parent, None, True, "raw", n_jobs=2, progress=False, verbose=False).backend == "warm"
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "pl_late_figs.py").write_text(
        "import numpy as np\nfrom pathlib import Path\n\n"
        "def late(attn, save_dir):\n    (Path(save_dir) / 'late.bin').write_bytes(np.asarray(attn).tobytes())\n\n"
        "late.figure_save_fmt = 'bin'\n"
    )
    monkeypatch.syspath_prepend(str(mods))
    import pl_late_figs

    try:
        s = figures_main(a.name, a.parent, None, True, [pl_late_figs.late], n_jobs=2, progress=False, verbose=False)
        assert s.ok and s.backend == "warm" and len(list(a.rglob("late.bin"))) == 2, s.format()
    finally:
        sys.modules.pop("pl_late_figs", None)


@pytest.fixture
def use_workers(monkeypatch):
    """a tiny run is normally one task: cut it into many, so that every worker of the pool gets some"""
    monkeypatch.setattr(_planner, "MIN_TASK_SECONDS", 1e-6)


def slow_ident(attn, save_dir):
    """`ident` at the cost of a matplotlib figure (the planner's prior does not know it), into its own
    file: a function that returns without its declared `slow_ident.bin` has failed"""
    time.sleep(0.1)
    atomic_write_bytes(Path(save_dir) / "slow_ident.bin", np.ascontiguousarray(attn).tobytes())


slow_ident.figure_save_fmt = "bin"


def test_explicit_n_jobs_is_honoured_and_the_default_trusts_its_prior_only_for_its_own_figures(tmp_path, use_workers):
    """a tiny run: `n_jobs=2` gets 2 workers; the default stays here for the package's `raw`, whose
    cost the prior knows, and starts workers for a user's function (it may cost 100x, or crash)"""
    if joblib.effective_n_jobs(-1) < 2:
        pytest.skip("the default's choice of workers needs 2 cores")
    kw = dict(progress=False, verbose=False)
    a = _tiny(tmp_path / "a", n_ctx=16, n_layers=4, n_heads=4, n_prompts=1)
    explicit = figures_main(a.name, a.parent, None, True, [ident], n_jobs=2, **kw)
    assert explicit.backend == "warm" and explicit.n_jobs == 2 and explicit.n_rendered == 16
    builtin_default = figures_main(a.name, a.parent, None, True, "raw", **kw)
    assert builtin_default.backend == "sequential" and builtin_default.n_rendered == 16
    for func in (ident, slow_ident):  # fast or slow (1.6 s of work): the prior knows neither
        user_default = figures_main(a.name, a.parent, None, True, [func], **kw)
        assert user_default.backend == "warm" and user_default.n_jobs == joblib.effective_n_jobs(-1)
        assert user_default.ok and user_default.n_rendered == 16


def test_matplotlib_figure_functions_run_in_workers(tmp_path, use_workers):
    a = _tiny(tmp_path / "a", n_ctx=16, n_layers=1, n_heads=2, n_prompts=1)
    b = _tiny(tmp_path / "b", n_ctx=16, n_layers=1, n_heads=2, n_prompts=1)
    s1 = figures_main(a.name, a.parent, None, False, [mpl_heat, mpl_sums], n_jobs=1, progress=False, verbose=False)
    s2 = figures_main(b.name, b.parent, None, False, [mpl_heat, mpl_sums], n_jobs=2, progress=False, verbose=False)
    assert s1.ok and s2.ok and s2.backend == "warm"
    head = _prompt_dirs(b)[0] / "L0" / "H1"
    assert sorted(p.name for p in head.iterdir()) == ["mpl_heat.png", "mpl_sums.cols.png", "mpl_sums.rows.png", "preview.png"]
    assert _outputs(a) == _outputs(b)
    assert figures_main(b.name, b.parent, None, False, [mpl_heat, mpl_sums], n_jobs=2, progress=False, verbose=False).n_skipped == 2


def test_export_profile_is_set_inside_every_worker_task(tmp_path, use_workers):
    model_dir = _tiny(tmp_path, n_ctx=64, n_layers=3, n_heads=4, n_prompts=2)
    summary = figures_main(
        model_dir.name, tmp_path, None, False, [profile_probe, aff.raw], n_jobs=2, profile="fast",
        progress=False, verbose=False,
    )
    assert summary.backend == "warm" and summary.profile == "fast"
    probes = list(model_dir.rglob("profile_probe.txt"))
    assert len(probes) == 24 and {p.read_text() for p in probes} == {"fast"}
    # profile=None takes the caller's active profile
    with export_profile("fast"):
        s = figures_main(model_dir.name, tmp_path, None, True, [profile_probe], n_jobs=1, progress=False, verbose=False)
    assert s.profile == "fast"


def test_multi_figure_function_outputs_and_index(tmp_path):
    model_dir = _tiny(tmp_path)
    figures_main(model_dir.name, tmp_path, None, False, [multi], n_jobs=1, progress=False, verbose=False)
    head = _prompt_dirs(model_dir)[0] / "L1" / "H2"
    assert sorted(p.name for p in head.iterdir()) == ["multi.first.bin", "multi.second.bin", "preview.png"]
    rows = [json.loads(x) for x in (tmp_path / "figures.jsonl").read_text().splitlines()]
    names = [r["name"] for r in rows]
    assert "multi.first" in names and "multi.second" in names and "raw" in names
    assert all(r["func_name"] == "multi" for r in rows if r["name"].startswith("multi."))


def test_failures_write_error_files_and_are_summarised(tmp_path):
    model_dir = _tiny(tmp_path, n_prompts=3)
    summary = figures_main(model_dir.name, tmp_path, None, False, [ident, boom], n_jobs=1, progress=False, verbose=False)
    expected_failures = sum(
        int((lay[:, 1, 1] > lay[:, 1, 0]).sum())
        for k in range(3)
        for lay in (synthetic_layer(L, 2, 3, 32, 1, k) for L in range(2))
    )
    assert 0 < expected_failures < 18, "the synthetic seed should make boom fail on some heads only"
    assert not summary.ok
    assert set(summary.failures) == {"boom"}
    stat = summary.failures["boom"]
    assert stat.count == expected_failures and stat.first_message.startswith("ValueError: boom at")
    assert stat.first_where.endswith("boom.error.txt") and Path(stat.first_where).is_file()
    errors = list(model_dir.rglob("boom.error.txt"))
    assert len(errors) == expected_failures
    text = errors[0].read_text()
    assert text.startswith("ValueError: boom at") and "Traceback" in text and "in boom" in text
    # the other function ran everywhere, and the failing one everywhere else
    assert len(list(model_dir.rglob("ident.bin"))) == 18
    assert len(list(model_dir.rglob("boom.bin"))) == 18 - expected_failures
    text = summary.format()
    assert f"boom: {expected_failures} heads; first: ValueError: boom at" in text


def test_plan_splits_one_prompt_over_every_worker_and_covers_each_head_once():
    prompts = [PromptWork("/p0", 512)]
    tasks = _plan(prompts, range(4), range(12), n_funcs=1, n_workers=8)
    assert len(tasks) >= 8
    covered = sorted((layer, h) for t in tasks for (_, layer, hs) in t for h in hs)
    assert covered == [(layer, h) for layer in range(4) for h in range(12)]
    # enough layers for every worker: layers stay whole (a head batch re-inflates its whole layer)
    tasks = _plan([PromptWork("/p0", 512), PromptWork("/p1", 512)], range(12), range(12), n_funcs=1, n_workers=2)
    assert all(hs == tuple(range(12)) for t in tasks for (_, _, hs) in t) and len(tasks) >= 4
    # many small prompts: few, big tasks (scheduling cost stays small), still every head once
    many = [PromptWork(f"/p{i}", 64) for i in range(200)]
    tasks = _plan(many, range(6), range(4), n_funcs=1, n_workers=2)
    est_head = _planner.HEAD_SECONDS["exact"][0] + _planner.HEAD_SECONDS["exact"][1] * 64 * 64
    sizes = [sum(len(hs) for (_, _, hs) in t) for t in tasks]
    assert min(sizes[:-1]) * est_head >= _planner.MIN_TASK_SECONDS
    assert sum(sizes) == 200 * 6 * 4 and len({(p, layer) for t in tasks for (p, layer, _) in t}) == 1200


def test_layers_and_heads_selection(tmp_path):
    model_dir = _tiny(tmp_path, n_layers=3, n_heads=4)
    s = figures_main(
        model_dir.name, tmp_path, None, False, [ident], n_jobs=1, layers=[0, 2], heads=[1, 3], progress=False, verbose=False
    )
    assert s.ok and s.n_heads == 2 * 2 * 2
    made = sorted({str(p.parent.relative_to(p.parents[2])) for p in model_dir.rglob("ident.bin")})
    assert made == ["L0/H1", "L0/H3", "L2/H1", "L2/H3"]
    with pytest.raises(InputError, match=r"layer \[3\] out of range: .*model_cfg.json has 3 layers"):
        figures_main(model_dir.name, tmp_path, None, False, [ident], layers=[3], progress=False, verbose=False)


# ---------------------------------------------------------------------------------------------------
# selection


def test_select_by_glob_set_and_functions(monkeypatch):
    registry = [aff.raw, ident, boom, multi]
    monkeypatch.setattr(figures, "ATTENTION_MATRIX_FIGURE_FUNCS", registry)  # as the reference's tests patch it
    assert select_attn_figure_funcs(None) == registry
    assert select_attn_figure_funcs("b*") == [boom]
    assert select_attn_figure_funcs("*i*") == [ident, multi]
    assert select_attn_figure_funcs({"multi", "raw"}) == [aff.raw, multi]  # registration order
    assert select_attn_figure_funcs([boom]) == [boom]
    with pytest.raises(PatternLensError, match=r"unknown figure functions \['nope'\]"):
        select_attn_figure_funcs({"raw", "nope"})
    with pytest.raises(PatternLensError, match="no figure function matches 'zz\\*'"):
        select_attn_figure_funcs("zz*")
    with pytest.raises(TypeError):
        select_attn_figure_funcs(3)


def test_figures_main_selects_by_glob_and_set(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "ATTENTION_MATRIX_FIGURE_FUNCS", [ident, boom, multi])
    model_dir = _tiny(tmp_path)
    figures_main(model_dir.name, tmp_path, None, False, "mul*", n_jobs=1, progress=False, verbose=False)
    head = _prompt_dirs(model_dir)[0] / "L0" / "H0"
    assert sorted(p.name for p in head.iterdir()) == ["multi.first.bin", "multi.second.bin", "preview.png"]
    figures_main(model_dir.name, tmp_path, None, False, {"ident"}, n_jobs=1, progress=False, verbose=False)
    assert sorted(p.name for p in head.iterdir()) == ["ident.bin", "multi.first.bin", "multi.second.bin", "preview.png"]


# ---------------------------------------------------------------------------------------------------
# figure functions that cannot travel to workers


def _closure_over_lock():
    lock = threading.Lock()

    def locked_fig(attn, save_dir):
        with lock:
            atomic_write_bytes(Path(save_dir) / "locked_fig.bin", b"x")

    locked_fig.figure_save_fmt = "bin"
    return locked_fig


def test_unpicklable_function_fails_early_with_advice(tmp_path):
    model_dir = _tiny(tmp_path)
    fn = _closure_over_lock()
    with pytest.raises(FigureFuncTransferError) as info:
        figures_main(model_dir.name, tmp_path, None, False, [ident, fn], n_jobs=2, backend="loky", progress=False, verbose=False)
    msg = str(info.value)
    assert "'locked_fig'" in msg and "lock" in msg and "importable module" in msg and "--jobs 1" in msg
    assert not list(model_dir.rglob("ident.bin")), "nothing should run before the check"
    # in one process, or with threads, it is fine
    for kw in ({"n_jobs": 1}, {"n_jobs": 2, "backend": "threading"}):
        s = figures_main(model_dir.name, tmp_path, None, True, [fn], progress=False, verbose=False, **kw)
        assert s.ok and s.n_outputs == 12


def test_function_whose_module_workers_cannot_import(tmp_path, use_workers):
    """pickled by reference, but the module exists only in this process"""
    import types

    mod = types.ModuleType("pl_ephemeral_figs")
    exec(
        "from pathlib import Path\n"
        "def eph(attn, save_dir):\n"
        "    (Path(save_dir) / 'eph.bin').write_bytes(b'x')\n"
        "eph.figure_save_fmt = 'bin'\n",
        mod.__dict__,
    )
    sys.modules["pl_ephemeral_figs"] = mod
    try:
        model_dir = _tiny(tmp_path)
        with pytest.raises(FigureFuncTransferError, match="cannot load the figure functions.*pl_ephemeral_figs"):
            figures_main(model_dir.name, tmp_path, None, False, [mod.eph], n_jobs=2, backend="loky", progress=False, verbose=False)
    finally:
        del sys.modules["pl_ephemeral_figs"]


# ---------------------------------------------------------------------------------------------------
# bad input: named, reported, and nothing else lost


def test_missing_model_cfg_names_the_file(tmp_path):
    model_dir = _tiny(tmp_path)
    (model_dir / "model_cfg.json").unlink()
    with pytest.raises(InputError, match=r"model config not found: .*model_cfg.json"):
        figures_main(model_dir.name, tmp_path, None, False, [ident], progress=False, verbose=False)
    (model_dir / "model_cfg.json").write_text('{"n_layers": 2, "model_name": "x"}')
    with pytest.raises(InputError, match=r"model_cfg.json: 'n_heads' is None, expected a positive integer"):
        figures_main(model_dir.name, tmp_path, None, False, [ident], progress=False, verbose=False)


def test_missing_prompt_index_names_the_file(tmp_path):
    model_dir = _tiny(tmp_path)
    (model_dir / "prompts.jsonl").unlink()
    with pytest.raises(InputError, match=r"prompt index not found: .*prompts.jsonl"):
        figures_main(model_dir.name, tmp_path, None, False, [ident], progress=False, verbose=False)


def _break(model_dir: Path, how: str) -> Path:
    """damage the first prompt's activations; returns the damaged file"""
    npz = _prompt_dirs(model_dir)[0] / "activations.npz"
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    if how == "missing_key":
        del arrays[layer_key(1)]
    elif how == "wrong_shape":
        arrays[layer_key(1)] = arrays[layer_key(1)][:, :2]
    elif how == "nonfinite":
        arrays[layer_key(1)][0, 2, 5, 3] = np.nan
    elif how == "garbage":
        npz.write_bytes(b"this is not a zip archive")
        return npz
    elif how == "truncated":
        data = npz.read_bytes()
        npz.write_bytes(data[: len(data) // 2])
        return npz
    elif how == "missing_file":
        npz.unlink()
        return npz
    np.savez_compressed(npz, **arrays)
    return npz


@pytest.mark.parametrize(
    ("how", "message", "lost"),
    [
        ("missing_key", r"no key 'blocks.1.attn.hook_pattern' \(found 1 keys: blocks.0.attn.hook_pattern\)", 3),
        ("wrong_shape", r"key 'blocks.1.attn.hook_pattern' has shape \(1, 2, 32, 32\), expected \(1, 3, n_ctx, n_ctx\)", 3),
        ("nonfinite", r"key 'blocks.1.attn.hook_pattern' head 2 has 1 non-finite values", 1),
        ("garbage", r"cannot read activations: not a .npz \(zip\) archive", 6),
        ("truncated", r"cannot read", 6),
        ("missing_file", r"activations file not found", 6),
    ],
)
def test_bad_activations_are_reported_and_the_rest_renders(tmp_path, how, message, lost):
    model_dir = _tiny(tmp_path, n_prompts=3)
    bad = _break(model_dir, how)
    summary = figures_main(model_dir.name, tmp_path, None, False, [ident], n_jobs=1, progress=False, verbose=False)
    assert not summary.ok and not summary.failures
    assert len(summary.input_errors) == 1, summary.input_errors
    err = summary.input_errors[0]
    assert err.startswith(str(bad)) or str(bad) in err
    assert re.search(message, err), err
    assert summary.n_input_error_heads == lost
    assert len(list(model_dir.rglob("ident.bin"))) == 18 - lost
    # the other prompts are complete
    for prompt_dir in _prompt_dirs(model_dir):
        if prompt_dir != bad.parent:
            assert len(list(prompt_dir.rglob("ident.bin"))) == 6
    assert "bad input (1 problems" in summary.format()


_NEG_NAN = np.frombuffer(np.uint32(0xFFC00000).tobytes(), dtype=np.float32)[0]  # a NaN with the sign bit set


@pytest.mark.parametrize("profile", ["fast", "exact"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, _NEG_NAN], ids=["nan", "inf", "-inf", "-nan"])
@pytest.mark.parametrize("where", [(5, 3), (7, 7), (3, 20)], ids=["below", "diagonal", "masked"])
def test_a_nonfinite_value_is_found_where_the_summaries_check_finiteness(tmp_path, value, where, profile):
    """with `raw` and the summaries, the summaries' pass (its min and max) tells whether a head is
    finite, instead of a numpy pass of its own: a NaN or inf anywhere, the causal mask's part too,
    is still the head's input error, and the other heads render"""
    model_dir = _tiny(tmp_path, n_prompts=1)
    npz = _prompt_dirs(model_dir)[0] / "activations.npz"
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    assert arrays[layer_key(1)].dtype == np.float32
    arrays[layer_key(1)][0, 2, where[0], where[1]] = value
    np.savez_compressed(npz, **arrays)
    summary = figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=1, profile=profile, progress=False,
                           verbose=False)
    assert summary.input_errors and "head 2 has 1 non-finite values" in summary.input_errors[0], summary.format()
    assert summary.n_input_error_heads == 1 and summary.n_rendered == 5 and not summary.failures
    assert not (_prompt_dirs(model_dir)[0] / "L1" / "H2" / "raw.png").exists()
    assert len(list(model_dir.rglob("raw.png"))) == len(list(model_dir.rglob("preview.png"))) == 5


def test_finite_heads_take_no_pass_of_their_own_for_the_check(tmp_path, monkeypatch):
    """`raw` with the summaries: the finiteness check is the summaries' min and max (one pass of the
    4 MB of an n_ctx 1024 head less); a function that is not marked read-only keeps numpy's check"""
    import pattern_lens._engine.worker as worker

    calls = []
    real = worker.nonfinite_heads
    monkeypatch.setattr(worker, "nonfinite_heads", lambda *a, **k: calls.append(1) or real(*a, **k))
    model_dir = _tiny(tmp_path, n_prompts=1)
    assert figures_main(model_dir.name, tmp_path, None, True, "raw", n_jobs=1, progress=False, verbose=False).ok
    assert calls == []
    assert figures_main(model_dir.name, tmp_path, None, True, [ident], n_jobs=1, progress=False, verbose=False).ok
    assert len(calls) == 6


def test_bad_prompt_hash_is_reported(tmp_path):
    model_dir = _tiny(tmp_path)
    index = model_dir / "prompts.jsonl"
    index.write_text(index.read_text() + json.dumps({"text": "x", "hash": "../escape"}) + "\n")
    summary = figures_main(model_dir.name, tmp_path, None, False, [ident], n_jobs=1, progress=False, verbose=False)
    assert summary.input_errors == [f"{index}: prompt 3 has hash '../escape', expected a folder name under {model_dir / 'prompts'}"]
    assert len(list(model_dir.rglob("ident.bin"))) == 12


# ---------------------------------------------------------------------------------------------------
# the reference's per-head / per-prompt API


def test_process_single_head_statuses_and_skipping(tmp_path):
    heads = (p for k in range(3) for L in range(2) for p in synthetic_layer(L, 2, 3, 32, 1, k))
    pattern = next(p for p in heads if p[1, 1] > p[1, 0])  # boom fails on it
    with pytest.warns(UserWarning, match="Error in boom for L0H1"):
        pass_one = process_single_head(0, 1, pattern, tmp_path / "h", [ident, boom, multi])
    assert pass_one["ident"] is True and pass_one["multi"] is True and isinstance(pass_one["boom"], ValueError)
    mtime = (tmp_path / "h" / "ident.bin").stat().st_mtime_ns
    with pytest.warns(UserWarning):
        pass_two = process_single_head(0, 1, pattern, tmp_path / "h", [ident, boom, multi])
    assert pass_two["ident"] is True and (tmp_path / "h" / "ident.bin").stat().st_mtime_ns == mtime


def test_compute_and_save_figures_and_process_prompt(tmp_path):
    model_dir = _tiny(tmp_path)
    cfg = HTConfigMock.load(json.loads((model_dir / "model_cfg.json").read_text()))
    assert cfg.model_name_sanitized == model_dir.name and cfg.serialize()["n_heads"] == 3
    prompt = json.loads((model_dir / "prompts.jsonl").read_text().splitlines()[0])
    npz = model_dir / "prompts" / prompt["hash"] / "activations.npz"
    with np.load(npz) as f:
        cache = {k: f[k] for k in f.files}
    res = compute_and_save_figures(cfg, npz, cache, [ident], save_path=tmp_path, track_results=True)
    assert set(res["ident"]) == {(L, h) for L in range(2) for h in range(3)}
    first = _outputs(model_dir)
    stacked = np.stack([cache[layer_key(L)][0] for L in range(2)])
    compute_and_save_figures(cfg, npz, stacked, [ident], save_path=tmp_path, force_overwrite=True)
    assert _outputs(model_dir) == first
    shutil.rmtree(npz.parent / "L0")
    process_prompt(prompt, cfg, tmp_path, [ident])
    assert _outputs(model_dir) == first


def test_heads_per_s_counts_rendered_heads_and_skipped_ones_are_reported_apart(tmp_path):
    model_dir = _tiny(tmp_path)
    first = figures_main(model_dir.name, tmp_path, None, False, [ident], n_jobs=1, progress=False, verbose=False)
    again = figures_main(model_dir.name, tmp_path, None, False, [ident], n_jobs=1, progress=False, verbose=False)
    assert first.n_rendered == 12 and first.heads_per_s == pytest.approx(12 / first.elapsed)
    assert again.n_rendered == 0 and again.n_skipped == 12 and again.heads_per_s == 0.0
    assert "0 rendered (0.0 heads/s), 12 already done (skipped)" in again.format()
    stages = first.stage_seconds
    assert set(stages) == {"read", "render", "other", "idle"} and stages["read"] > 0 and stages["render"] > 0
    assert sum(stages.values()) == pytest.approx(first.elapsed * first.n_jobs, rel=1e-6) or stages["idle"] == 0
