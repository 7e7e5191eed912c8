"""the `pattern-lens` command line: option parsing, exit codes, messages, the demo"""

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pattern_lens.attn_figure_funcs as aff
from pattern_lens.cli import Command, COMMANDS, build_parser, main, parse_bool, parse_index_list
from pattern_lens.synthetic import write_synthetic_model

REPO = Path(__file__).resolve().parents[1]


def _model(tmp_path, **kw) -> Path:
    args = dict(n_layers=2, n_heads=2, n_ctx=32, n_prompts=2, seed=3)
    args.update(kw)
    return write_synthetic_model(tmp_path, **args)


def _render(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["render", "--model", "m", *argv])


# ---------------------------------------------------------------------------------------------------
# parsing


def test_force_is_a_real_flag():
    assert _render().force is False
    assert _render("--force").force is True
    assert _render("-f").force is True
    # the reference's `--force True` still works, and `--force False` now means false
    assert _render("--force", "True").force is True
    assert _render("--force", "false").force is False
    assert _render("--force", "--quiet").force is True
    with pytest.raises(SystemExit):
        _render("--force", "maybe")


@pytest.mark.parametrize("command", ["render", "run", "activations"])
def test_no_index_html_is_one_option_everywhere(command):
    """the reference's `--no-index-html`: `args.index_html`, true unless the flag is given"""
    parser = build_parser()
    assert parser.parse_args([command, "-m", "m"]).index_html is True
    assert parser.parse_args([command, "-m", "m", "--no-index-html"]).index_html is False


def test_index_lists_and_bools():
    assert parse_index_list("0,2,5-7") == [0, 2, 5, 6, 7]
    assert parse_index_list(" 3 ") == [3]
    for bad in ("", "a", "3-1", "1-x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_index_list(bad)
    assert parse_bool("Yes") is True and parse_bool("0") is False


def test_render_options():
    args = _render("--jobs", "3", "--backend", "threading", "--profile", "fast", "--layers", "1-2", "--heads", "0",
                   "--figure-funcs", "raw,other", "--import", "a", "--import", "b", "-q", "-n", "5")
    assert (args.jobs, args.backend, args.profile, args.layers, args.heads) == (3, "threading", "fast", [1, 2], [0])
    assert args.figure_funcs == "raw,other" and args.imports == ["a", "b"] and args.quiet and args.n_samples == 5
    for bad in (["--jobs", "0"], ["--profile", "slow"], ["-n", "0"]):
        with pytest.raises(SystemExit):
            _render(*bad)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layers", "3-1"], "argument --layers: range '3-1' is reversed: write it low to high, '1-3'"),
        (["--heads", "0,5-2"], "range '5-2' in '0,5-2' is reversed: write it low to high, '2-5'"),
        (["--jobs", "0"], "expected a positive number of workers, or -1 for all cores (-2 all but one, ...), got 0"),
    ],
)
def test_bad_option_messages(argv, message, capsys):
    with pytest.raises(SystemExit):
        _render(*argv)
    err = capsys.readouterr().err
    assert message in err and err.count(" 0") <= 1, err


def test_figure_funcs_help_says_what_the_default_is(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["render", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: every registered function; 'none' also means all, as in the reference)" in text


def test_subcommands_are_table_driven(monkeypatch):
    assert {"render", "demo", "bench"} <= set(COMMANDS)
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([])
    assert info.value.code == 2
    # one entry in the table is a whole subcommand: parsed, dispatched, its exit code returned
    seen = {}
    hello = Command(
        "say hello",
        lambda p: p.add_argument("--name", default="world"),
        lambda args: seen.setdefault("name", args.name) and 7,
    )
    monkeypatch.setitem(COMMANDS, "hello", hello)
    assert main(["hello", "--name", "lens"]) == 7 and seen == {"name": "lens"}


# ---------------------------------------------------------------------------------------------------
# running


def test_render_ok_and_summary(tmp_path, capsys):
    model_dir = _model(tmp_path)
    code = main(["render", "--model", model_dir.name, "--save-path", str(tmp_path), "--figure-funcs", "raw", "--quiet"])
    out = capsys.readouterr()
    assert code == 0, out
    assert len(list(model_dir.rglob("raw.png"))) == 8
    assert "8 heads (2 prompts x 2 layers x 2 heads)" in out.out and "heads/s" in out.out
    assert out.err == ""  # --quiet: no progress bar


def test_progress_bar_counts_heads(tmp_path, capsys):
    model_dir = _model(tmp_path)
    assert main(["render", "-m", model_dir.name, "-s", str(tmp_path), "--figure-funcs", "raw"]) == 0
    err = capsys.readouterr().err
    assert "8/8" in err and "head/s" in err


@pytest.fixture
def failing_module(tmp_path, monkeypatch):
    """a module registering a figure function that always fails (registry restored afterwards)"""
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / "pl_failing_figs.py").write_text(textwrap.dedent("""
        from pattern_lens.attn_figure_funcs import register_attn_figure_func

        @register_attn_figure_func
        def always_fails(attn, save_dir):
            raise RuntimeError("this figure cannot be drawn")

        always_fails.figure_save_fmt = "png"
    """))
    monkeypatch.syspath_prepend(str(mod_dir))
    registered = list(aff.ATTENTION_MATRIX_FIGURE_FUNCS)
    yield "pl_failing_figs"
    aff.ATTENTION_MATRIX_FIGURE_FUNCS[:] = registered  # in place: pattern_lens.figures holds the same list
    sys.modules.pop("pl_failing_figs", None)


def test_failing_function_exit_code_and_summary(tmp_path, capsys, failing_module):
    model_dir = _model(tmp_path / "data")
    code = main(["render", "-m", model_dir.name, "-s", str(tmp_path / "data"), "--import", failing_module, "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    assert "always_fails: 8 heads; first: RuntimeError: this figure cannot be drawn" in out
    assert len(list(model_dir.rglob("always_fails.error.txt"))) == 8
    assert len(list(model_dir.rglob("raw.png"))) == 8  # the other function still ran


MY_FIGURES = textwrap.dedent("""
    import os
    from pathlib import Path

    from pattern_lens.attn_figure_funcs import register_attn_figure_func

    @register_attn_figure_func
    def where(attn, save_dir):
        (Path(save_dir) / "where.pid").write_text(str(os.getpid()))

    where.figure_save_fmt = "pid"
""")


def test_console_script_imports_a_module_from_the_current_folder(tmp_path):
    """the README's example: `pattern-lens render --import my_figures` from the folder holding my_figures.py

    `-P` keeps the current folder off sys.path, as the console script does (unlike `python -m` and
    plain `-c`); worker processes must find the module too.
    """
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_figures.py").write_text(MY_FIGURES)
    model_dir = _model(tmp_path / "data", n_layers=2, n_heads=4, n_ctx=256, n_prompts=2)
    cmd = [sys.executable, "-P", "-c", "import sys; from pattern_lens.cli import main; sys.exit(main())",
           "render", "-m", model_dir.name, "-s", str(tmp_path / "data"), "--import", "my_figures", "--jobs", "2", "-q"]
    proc = subprocess.Popen(cmd, cwd=work, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    pids = {int(p.read_text()) for p in model_dir.rglob("where.pid")}
    assert len(list(model_dir.rglob("where.pid"))) == 2 * 2 * 4
    assert pids - {proc.pid}, "the heads should have been rendered by worker processes"


def test_unimportable_module_is_a_clear_error(tmp_path, capsys):
    model_dir = _model(tmp_path)
    code = main(["render", "-m", model_dir.name, "-s", str(tmp_path), "--import", "no_such_module_xyz", "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot import figure-function module 'no_such_module_xyz'" in err
    assert f"looked in the current folder {os.getcwd()} and on sys.path" in err


def test_missing_model_config_other_models_still_render(tmp_path, capsys):
    good = _model(tmp_path)
    bad = tmp_path / "missing-model"
    bad.mkdir()
    code = main(["render", "-m", f"{bad.name},{good.name}", "-s", str(tmp_path), "--figure-funcs", "raw", "-q"])
    cap = capsys.readouterr()
    assert code == 1
    assert f"error: model config not found: {bad / 'model_cfg.json'}" in cap.err
    assert f"models under {tmp_path}: {good.name}\n" in cap.err  # what is there instead
    assert len(list(good.rglob("raw.png"))) == 8
    assert main(["render", "-m", "x", "-s", str(tmp_path / "empty"), "-q"]) == 1
    assert f"{tmp_path / 'empty'} is not a readable folder" in capsys.readouterr().err


def test_bad_activations_exit_code_names_file(tmp_path, capsys):
    model_dir = _model(tmp_path)
    npz = next((model_dir / "prompts").iterdir()) / "activations.npz"
    npz.write_bytes(b"garbage")
    code = main(["render", "-m", model_dir.name, "-s", str(tmp_path), "--figure-funcs", "raw", "-q"])
    out = capsys.readouterr().out
    assert code == 1 and str(npz) in out and "not a .npz (zip) archive" in out
    assert len(list(model_dir.rglob("raw.png"))) == 4


def test_unknown_figure_function_is_an_error(tmp_path, capsys):
    model_dir = _model(tmp_path)
    assert main(["render", "-m", model_dir.name, "-s", str(tmp_path), "--figure-funcs", "nope*", "-q"]) == 1
    assert "no figure function matches 'nope*'" in capsys.readouterr().err


def test_scheduler_without_dask_backend_is_an_error(tmp_path, capsys):
    model_dir = _model(tmp_path)
    code = main(["render", "-m", model_dir.name, "-s", str(tmp_path), "--scheduler", "tcp://127.0.0.1:1", "-q"])
    assert code == 1 and "needs backend 'dask'" in capsys.readouterr().err


def test_module_entry_point_matches_the_reference_options(tmp_path):
    model_dir = _model(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pattern_lens.figures", "--model", model_dir.name, "--save-path", str(tmp_path),
         "--n-samples", "1", "--force", "--figure-funcs", "raw"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "4 heads (1 prompts x 2 layers x 2 heads)" in proc.stdout
    assert len(list(model_dir.rglob("raw.png"))) == 4


def test_console_script_demo(tmp_path):
    """`pattern-lens demo` as installed: writes a synthetic model, renders it, says where and how fast"""
    exe = Path(sys.executable).parent / "pattern-lens"
    if not exe.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    out = tmp_path / "demo"
    proc = subprocess.run(
        [str(exe), "demo", "--out", str(out), "--shape", "tiny", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    model_dir = out / "synthetic-2x2-ctx32"
    assert len(list(model_dir.rglob("raw.png"))) == 2 * 2 * 2
    assert f"figures: {model_dir / 'prompts'}" in proc.stdout and "heads/s" in proc.stdout
    assert (out / "figures.jsonl").is_file() and (out / "models.jsonl").is_file()


def test_demo_options(tmp_path, capsys):
    out = tmp_path / "d"
    code = main(["demo", "--out", str(out), "--shape", "small", "--n-layers", "2", "--n-ctx", "40", "--n-prompts", "1",
                 "--seed", "7", "--jobs", "1", "--profile", "fast", "-q"])
    assert code == 0
    model_dir = out / "synthetic-2x4-ctx40"
    cfg = json.loads((model_dir / "model_cfg.json").read_text())
    assert (cfg["n_layers"], cfg["n_heads"], cfg["n_ctx"], cfg["seed"]) == (2, 4, 40, 7)
    assert len(list(model_dir.rglob("raw.png"))) == 8
    assert "profile fast" in capsys.readouterr().out
    # again: everything is already there
    assert main(["demo", "--out", str(out), "--shape", "small", "--n-layers", "2", "--n-ctx", "40", "--n-prompts", "1",
                 "--seed", "7", "--jobs", "1", "-q"]) == 0
    assert "8 already done" in capsys.readouterr().out


def test_render_with_prestarted_workers_writes_what_one_process_writes(tmp_path):
    """`--jobs 2 --backend loky` starts and warms the pool while the CLI imports (a user module imported there too)"""
    (tmp_path / "my_figs.py").write_text(textwrap.dedent("""
        from pattern_lens.attn_figure_funcs import register_attn_figure_func
        from pattern_lens.figure_util import save_matrix_wrapper

        @register_attn_figure_func
        @save_matrix_wrapper(fmt="png", normalize=True)
        def doubled(attn):
            return attn * 2
    """))
    a, b = _model(tmp_path / "a"), _model(tmp_path / "b")
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{REPO}"}
    for root, jobs in ((a, "1"), (b, "2")):
        proc = subprocess.run(
            [sys.executable, "-m", "pattern_lens.cli", "render", "-m", root.name, "-s", str(root.parent),
             "--import", "my_figs", "--figure-funcs", "raw,doubled", "--profile", "fast", "--jobs", jobs, "--backend", "loky", "-q"],
            capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert f"[{jobs} jobs, {'loky' if jobs == '2' else 'sequential'}" in proc.stdout
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 2 * 2 * 2 * (2 + 1)  # prompts x layers x heads x (raw, doubled, preview)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_warm_worker_renders_nothing_to_disk_and_tolerates_a_missing_module(tmp_path, monkeypatch):
    from pattern_lens._engine.prestart import prestart_workers, warm_worker

    monkeypatch.chdir(tmp_path)
    warm_worker(("exact", "fast"), ("no_such_module_for_pattern_lens",))
    assert list(tmp_path.iterdir()) == []
    assert not prestart_workers(None, None) and not prestart_workers(1, None) and not prestart_workers(2, "threading")
