"""`pattern-lens bench --quick` once, as a user would run it: the report's structure, JSON and chart"""

import json

import pytest
from PIL import Image

from pattern_lens import bench
from pattern_lens.cli import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--quick", "--jobs", "1,2", "--json", str(out / "b.json"), "--plot", str(out / "b.png")])
    return code, out


def test_quick_bench_report(quick_run):
    code, out = quick_run
    assert code == 0
    payload = json.loads((out / "b.json").read_text())
    results = payload["results"]
    # n_ctx 128 and 512, png: the serial reference, then exact and fast with 1 and 2 jobs
    assert [(r["n_ctx"], r["method"], r["jobs"]) for r in results] == [
        (n, m, j) for n in (128, 512) for m, j in [("reference", 1), ("exact", 1), ("exact", 2), ("fast", 1), ("fast", 2)]
    ]
    for r in results:
        assert r["fmt"] == "png"
        assert r["ms_per_head"] > 0 and r["bytes_per_head"] > 0
        assert 50 < r["peak_rss_mb"] < 4096, "a Python process with numpy and numba: tens to hundreds of MiB"
        assert r["heads_per_s"] == pytest.approx(1e3 / r["ms_per_head"])
        assert r["mpix_per_s"] == pytest.approx(r["n_ctx"] ** 2 / (r["ms_per_head"] * 1e3))
        if r["method"] == "reference":
            assert r["speedup"] == pytest.approx(1.0)
        else:
            ref = next(x for x in results if x["method"] == "reference" and x["n_ctx"] == r["n_ctx"])
            assert r["speedup"] == pytest.approx(ref["ms_per_head"] / r["ms_per_head"])
    with Image.open(out / "b.png") as img:
        img.verify()


def test_table_estimate_and_recommendation():
    rows = [
        bench.BenchResult("reference", "png", 512, 1, 20.0, 13.1, 50.0, None, 60000, 200),
        bench.BenchResult("exact", "png", 512, 2, 8.0, 32.8, 125.0, 2.5, 60000, 190),
        bench.BenchResult("fast", "png", 512, 2, 0.5, 524.3, 2000.0, 40.0, 30000, 190),
    ]
    table = bench.format_table(rows).splitlines()
    assert table[0].split() == ["format", "n_ctx", "method", "jobs", "ms/head", "MPix/s", "heads/s", "vs", "reference", "KiB/head", "peak", "RSS", "MiB"]
    assert table[2].split()[:5] == ["png", "512", "reference", "1", "20.00"] and table[4].split()[-3] == "40.0x"
    estimate = bench.model_estimate(rows)
    # 1,024 heads at (2048/512)^2 = 16x the per-head time of the best job count
    assert estimate[2] == (
        "all 1,024 heads of a 32 x 32 model at n_ctx 2048, png, fast: about 8 s with 2 job(s) "
        "(scaled from n_ctx 512 by pixel count: an upper bound)"
    )
    assert bench.recommendation(rows).startswith("fastest at n_ctx 512: --profile fast --jobs 2")
    assert "--profile exact --jobs 2" in bench.recommendation(rows)


def test_config_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown formats"):
        bench.BenchConfig(formats=("jpg",))
    with pytest.raises(ValueError, match="unknown methods"):
        bench.BenchConfig(methods=("turbo",))


def test_verification_catches_a_wrong_output(monkeypatch, tmp_path):
    """the verification step must be able to fail: corrupt the exact output and expect an error"""
    from pattern_lens._export import reference as _baseline

    real = _baseline.reference_file_bytes
    monkeypatch.setattr(_baseline, "reference_file_bytes", lambda m, fmt: real(m[::-1].copy(), fmt))
    with pytest.raises(AssertionError, match="differs from the reference"):
        bench._verify("exact", "png", bench._patterns(64, 1, 0)[0], tmp_path)


@pytest.mark.parametrize(
    "argv",
    [["--formats", "jpg"], ["--jobs", "0"], ["--repeat", "0"], ["--n-ctx", "abc"], ["--methods", "turbo"]],
)
def test_bad_options_are_command_line_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", *argv])
    assert info.value.code == 2
    assert "expected" in capsys.readouterr().err


def test_quick_keeps_explicit_options():
    import argparse

    from pattern_lens.bench import add_arguments as add_bench_arguments, bench_config_from_args

    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    config = bench_config_from_args(parser.parse_args(["--quick", "--n-ctx", "64", "--formats", "svgz"]))
    assert (config.n_ctx, config.formats, config.repeat, config.heads) == ((64,), ("svgz",), 2, 4)
    assert bench_config_from_args(parser.parse_args([])) == bench.BenchConfig()


def test_grid_is_the_nested_order_with_a_serial_reference():
    config = bench.BenchConfig(n_ctx=(64, 128), jobs=(1, 2), formats=("png", "svgz"))
    expected = [
        (n, f, m, j)
        for n in (64, 128)
        for f in ("png", "svgz")
        for m in ("reference", "exact", "fast")
        for j in ((1,) if m == "reference" else (1, 2))
    ]
    assert bench._grid(config) == expected
    assert bench._grid(bench.BenchConfig(n_ctx=(64,), jobs=(2, 4), formats=("png",), methods=("reference", "fast"))) == [
        (64, "png", "reference", 1), (64, "png", "fast", 2), (64, "png", "fast", 4)
    ]


@pytest.mark.parametrize("method, fmt", [("exact", "png"), ("exact", "svgz"), ("fast", "png"), ("fast", "svg")])
def test_verification_does_not_share_production_normalisation(monkeypatch, tmp_path, method, fmt):
    """a bug in production's normalisation must fail the benchmark's own check: its oracle computes
    the normalisation itself"""
    from pattern_lens._export import colormap as _colormap

    real = _colormap.normalization

    def off_by_a_bit(matrix, normalize, *args):
        norm = real(matrix, normalize, *args)
        return _colormap.Normalization(identity=False, offset=norm.offset, denom=norm.denom * 1.25, add=None)

    monkeypatch.setattr(_colormap, "normalization", off_by_a_bit)
    with pytest.raises(AssertionError, match="differs from the reference"):
        bench._verify(method, fmt, bench._patterns(64, 1, 0)[0], tmp_path)



def test_pipeline_stage_bench_accounts_for_the_workers_time():
    from pattern_lens._summaries.stagebench import format_stages, run_stage_bench
    from pattern_lens.figures import figures_main

    results = run_stage_bench(figures_main, n_ctx=16, n_layers=2, n_heads=2, n_prompts=1, jobs=(1,), profiles=("fast",), stored=True, repeat=1)
    (r,) = results
    assert (r.profile, r.jobs, r.heads, r.stored) == ("fast", 1, 4, True)
    assert r.stages["read"] > 0 and r.stages["render"] > 0
    # one job: read + render + other + idle is the rendering's wall time, index the rest of figures_main
    assert sum(r.stages.values()) == pytest.approx(r.seconds, rel=1e-6)
    table = format_stages(results)
    assert "bound by" in table.splitlines()[0] and table.splitlines()[1].split()[:4] == ["fast", "1", "16", "stored"]
