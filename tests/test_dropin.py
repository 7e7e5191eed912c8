"""the reference's documented usage, run as its users and tests run it

Each test follows the reference's docs or tests: stacking `register_attn_figure_multifunc` on
`matplotlib_multifigure_saver`, patching `pattern_lens.figures` names, resolving every annotation
(`typing.get_type_hints`, as the reference's own test does), and running under jaxtyping's import
hook with beartype, which the reference's test setup applies to the whole package.
"""

import importlib
import inspect
import io
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import pattern_lens
import pattern_lens.attn_figure_funcs as aff
import pattern_lens.figures as figures
from pattern_lens._output.indexes import read_jsonl
from pattern_lens.figure_util import matplotlib_multifigure_saver, save_matrix_wrapper
from pattern_lens.synthetic import write_synthetic_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def registry():
    """the registry, restored in place afterwards (`pattern_lens.figures` holds the same list)"""
    saved = list(aff.ATTENTION_MATRIX_FIGURE_FUNCS)
    yield aff.ATTENTION_MATRIX_FIGURE_FUNCS
    aff.ATTENTION_MATRIX_FIGURE_FUNCS[:] = saved


def _causal(n: int) -> np.ndarray:
    m = np.tril(np.arange(1, n * n + 1, dtype=np.float32).reshape(n, n))
    return m / m.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------------
# register_attn_figure_multifunc only registers


def test_multifunc_stacked_on_multifigure_saver_renders_and_resumes(tmp_path, registry):
    """the reference's usage: `@register_attn_figure_multifunc(names)` on `@matplotlib_multifigure_saver(names)`"""

    def stats(attn_matrix, axes):
        axes["hist"].hist(attn_matrix.flatten(), bins=10)
        axes["heatmap"].matshow(attn_matrix, cmap="viridis")

    saved = matplotlib_multifigure_saver(["hist", "heatmap"], fmt="png")(stats)
    registered = aff.register_attn_figure_multifunc(["hist", "heatmap"])(saved)
    assert registered is saved, "registering must return the function itself, not wrap it again"
    assert registry[-1] is saved and figures.ATTENTION_MATRIX_FIGURE_FUNCS is registry
    assert saved._figure_names == ("stats.hist", "stats.heatmap")  # the reference's attribute and names
    assert aff.get_all_figure_names()[-2:] == ["stats.hist", "stats.heatmap"]

    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=8, n_prompts=1, seed=1)
    first = figures.figures_main(model_dir.name, tmp_path, None, False, "stats", n_jobs=1, progress=False, verbose=False)
    assert first.ok and first.n_rendered == 2, first.format()
    heads = sorted(model_dir.glob("prompts/*/L0/H*"))
    assert [sorted(p.name for p in h.iterdir()) for h in heads] == [["preview.png", "stats.heatmap.png", "stats.hist.png"]] * 2
    for png in model_dir.rglob("stats.*.png"):
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # resume: both figures exist, so nothing runs again; a missing one brings the function back
    again = figures.figures_main(model_dir.name, tmp_path, None, False, "stats", n_jobs=1, progress=False, verbose=False)
    assert (again.n_rendered, again.n_skipped) == (0, 2), again.format()
    (heads[0] / "stats.hist.png").unlink()
    third = figures.figures_main(model_dir.name, tmp_path, None, False, "stats", n_jobs=1, progress=False, verbose=False)
    assert (third.n_rendered, third.n_skipped) == (1, 1) and (heads[0] / "stats.hist.png").exists()

    rows = [r["name"] for r in read_jsonl(tmp_path / "figures.jsonl")]
    assert "stats.hist" in rows and "stats.heatmap" in rows and "stats" not in rows


def test_single_function_registration_sets_its_name(registry):
    @aff.register_attn_figure_func
    @save_matrix_wrapper(fmt="png")
    def plain(matrix):
        return matrix

    assert plain._figure_names == ("plain",) and aff.get_all_figure_names()[-1] == "plain"


# ---------------------------------------------------------------------------------------------------
# pattern_lens.figures names the reference's tests patch


def test_figures_module_names_the_reference_patches(tmp_path):
    """the reference's `test_compute_and_save_figures`: a plain config object, patched module names"""
    assert figures.ATTENTION_MATRIX_FIGURE_FUNCS is aff.ATTENTION_MATRIX_FIGURE_FUNCS

    class MockConfig:  # no model_name_sanitized: any object with the three fields works
        n_layers, n_heads, model_name = 2, 2, "test-model"

    prompt_dir = tmp_path / "test-model" / "prompts" / "test-hash"
    prompt_dir.mkdir(parents=True)
    caches = [
        {f"blocks.{i}.attn.hook_pattern": np.random.default_rng(i).random((1, 2, 5, 5), dtype=np.float32) for i in range(2)},
        np.random.default_rng(2).random((2, 2, 5, 5), dtype=np.float32),
    ]

    @save_matrix_wrapper(fmt="png")
    def test_fig_func(matrix):
        return matrix

    with (
        mock.patch("pattern_lens.figures.ATTENTION_MATRIX_FIGURE_FUNCS", [test_fig_func]),
        mock.patch("pattern_lens.figures.process_single_head") as mock_head,
        mock.patch("pattern_lens.figures.generate_prompts_jsonl") as mock_gen,
    ):
        assert figures.select_attn_figure_funcs(None) == [test_fig_func]
        for cache in caches:
            mock_head.reset_mock()
            mock_gen.reset_mock()
            mock_head.return_value = {"test_fig_func": True}
            figures.compute_and_save_figures(
                model_cfg=MockConfig(),
                activations_path=prompt_dir / "activations.npz",
                cache=cache,
                figure_funcs=figures.ATTENTION_MATRIX_FIGURE_FUNCS,
                save_path=tmp_path,
                force_overwrite=True,
            )
            assert mock_head.call_count == 4
            mock_gen.assert_called_once_with(tmp_path / "test-model")


def test_compute_and_save_figures_without_figure_funcs_runs_the_registry(tmp_path):
    """the reference's published `test_compute_and_save_figures` omits `figure_funcs`: the registry is meant"""

    class MockConfig:
        n_layers, n_heads, model_name = 1, 2, "test-model"

    prompt_dir = tmp_path / "test-model" / "prompts" / "test-hash"
    prompt_dir.mkdir(parents=True)

    @save_matrix_wrapper(fmt="png")
    def only_fig(matrix):
        return matrix

    with mock.patch("pattern_lens.figures.ATTENTION_MATRIX_FIGURE_FUNCS", [only_fig]):
        figures.compute_and_save_figures(
            model_cfg=MockConfig(), activations_path=prompt_dir / "activations.npz",
            cache=np.stack([_causal(4), _causal(4)])[None], save_path=tmp_path, force_overwrite=True,
        )
    assert sorted(p.relative_to(prompt_dir).as_posix() for p in prompt_dir.rglob("*.png")) == ["L0/H0/only_fig.png", "L0/H1/only_fig.png"]


def test_indexes_module_rebuilds_what_a_run_wrote(tmp_path):
    """the reference's `pattern_lens.indexes` functions, called as its `figures_main` called them"""
    from pattern_lens import indexes

    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=2, n_ctx=8, n_prompts=2, seed=3)
    assert figures.figures_main(model_dir.name, tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False).ok
    written = {p: p.read_bytes() for p in (model_dir / "prompts.jsonl", tmp_path / "models.jsonl")}
    for p in written:
        p.unlink()
    (tmp_path / "figures.jsonl").unlink()
    indexes.generate_prompts_jsonl(model_dir)
    indexes.generate_models_jsonl(tmp_path)
    indexes.generate_functions_jsonl(tmp_path)
    # the same rows (without the old index to keep its order, prompts come in folder-name order)
    assert {p: sorted(p.read_bytes().splitlines()) for p in written} == {p: sorted(b.splitlines()) for p, b in written.items()}
    rows = read_jsonl(tmp_path / "figures.jsonl")
    assert {r["name"] for r in rows} == set(aff.get_all_figure_names())
    assert indexes.get_func_metadata(aff.raw)[0]["name"] == "raw" and "def raw" in indexes.get_func_metadata(aff.raw)[0]["code"]
    indexes.write_html_index(tmp_path)
    assert (tmp_path / "index.html").is_file()


def test_spinner_context_is_muutils_compatible():
    out = io.StringIO()
    with figures.SpinnerContext(message="loading prompts", output_stream=out, update_interval=0.05) as sp:
        sp.update_value(" (3 of 3)")
    # first frame on entry, the completion mark with the elapsed time and the value on exit
    assert re.fullmatch(r"\r\| \(0\.\d\ds\) loading prompts\r# \(\d\.\d\ds\) loading prompts \(3 of 3\)\n", out.getvalue()), out.getvalue()
    # the reference's SPINNER_KWARGS (newer muutils: `config`)
    out = io.StringIO()
    with figures.SpinnerContext(message="parsing args", output_stream=out, config=dict(success="✔️ ")):
        pass
    assert out.getvalue().endswith(") parsing args\n") and "\r✔️  (" in out.getvalue(), out.getvalue()
    for bad in (dict(format_string="{nope}"), dict(colour="red")):
        with pytest.raises(ValueError):
            figures.SpinnerContext(output_stream=io.StringIO(), **bad)
    with pytest.raises(ValueError):
        figures.SpinnerContext("positional")


# ---------------------------------------------------------------------------------------------------
# every annotation resolves


def _all_callables():
    """every function and method defined in every module of the package (the reference's test walks them too)"""
    for _, modname, _ in pkgutil.walk_packages(pattern_lens.__path__, prefix="pattern_lens."):
        mod = importlib.import_module(modname)
        for name, obj in vars(mod).items():
            if getattr(obj, "__module__", None) != modname:
                continue
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    member = getattr(member, "__func__", getattr(member, "fget", member))
                    if inspect.isfunction(member):
                        yield f"{modname}.{name}.{attr}", member
            elif callable(obj):
                yield f"{modname}.{name}", obj


def test_every_annotation_resolves():
    names = []
    for qualname, obj in _all_callables():
        names.append(qualname)
        try:
            typing.get_type_hints(obj)
        except Exception as e:  # noqa: BLE001 -- report which one, with the error
            pytest.fail(f"typing.get_type_hints({qualname}) raised {type(e).__name__}: {e}")
    for public in (
        "pattern_lens.attn_figure_funcs.register_attn_figure_multifunc",
        "pattern_lens.figure_util.matplotlib_figure_saver",
        "pattern_lens.figure_util.matplotlib_multifigure_saver",
        "pattern_lens.figures.figures_main",
    ):
        assert public in names


def test_pyplot_stays_off_the_worker_start_up_path():
    """resolving annotations may import pyplot; importing the worker and rendering a matrix must not"""
    code = textwrap.dedent("""
        import sys, tempfile, numpy as np
        import pattern_lens._engine.worker, pattern_lens.figures
        from pattern_lens.attn_figure_funcs import raw
        raw(np.eye(4, dtype=np.float32), tempfile.mkdtemp())
        print("pyplot" if "matplotlib.pyplot" in sys.modules else "no pyplot")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no pyplot"


# ---------------------------------------------------------------------------------------------------
# jaxtyping's import hook with beartype over the whole package


HOOKED_RUN = textwrap.dedent("""
    import pathlib, sys
    import numpy as np
    from jaxtyping import install_import_hook

    with install_import_hook("pattern_lens", "beartype.beartype"):
        from pattern_lens import attn_figure_funcs, figure_util, figures
        from pattern_lens.synthetic import write_synthetic_model

    out = pathlib.Path(sys.argv[1])

    @attn_figure_funcs.register_attn_figure_multifunc(["a", "b"])
    @figure_util.matplotlib_multifigure_saver(["a", "b"], fmt="png")
    def two(attn, axes):
        axes["a"].matshow(attn)
        axes["b"].plot(attn.sum(axis=0))

    @attn_figure_funcs.register_attn_figure_func
    @figure_util.matplotlib_figure_saver(fmt="png")
    def one(attn, ax):
        ax.matshow(attn)

    @attn_figure_funcs.register_attn_figure_func
    @figure_util.save_matrix_wrapper(fmt="svgz", normalize=True)
    def squared(attn):
        return attn**2

    model_dir = write_synthetic_model(out, n_layers=1, n_heads=2, n_ctx=6, n_prompts=1, seed=0)
    for profile in ("exact", "fast"):
        s = figures.figures_main(model_dir.name, out, None, True, None, n_jobs=1, progress=False,
                                 verbose=False, profile=profile)
        assert s.ok and s.n_rendered == 2, s.format()
    try:  # the hook is really checking: an int matrix is not a Float[np.ndarray, "n m"]
        figure_util.matrix_to_image_preprocess(np.eye(3, dtype=np.int64), normalize=True)
    except Exception as e:
        print("checked:", type(e).__name__)
    print(" ".join(sorted(p.name for p in out.rglob("L0/H0/*"))))
""")


def test_package_runs_under_jaxtyping_import_hook_with_beartype(tmp_path):
    pytest.importorskip("beartype", reason="beartype is in the test extra: pip install '.[test]'")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", HOOKED_RUN, str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("checked: ") and "TypeCheckError" in lines[0], out.stdout
    assert lines[-1] == "one.png preview.png raw.png squared.svgz two.a.png two.b.png"  # summaries ran under the hook too
