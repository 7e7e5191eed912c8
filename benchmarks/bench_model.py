"""benchmark of stage 1 + 2: from a model to every head's figure, the reference's way vs `pattern-lens run`

    flock /tmp/pattern_lens_bench.lock python benchmarks/bench_model.py             # 12 x 12, n_ctx 1024, 3 prompts
    flock /tmp/pattern_lens_bench.lock python benchmarks/bench_model.py --n-prompts 2 --n-ctx 512 --json out.json

A random-weight GPT-2-sized model (12 layers x 12 heads, d_model 768, n_ctx 1024; a small locally
trained word-level vocabulary instead of GPT-2's 50k, which only changes the embedding size) is
saved with `save_pretrained` and loaded by the real loading code. Every prompt fills the context.

 - (a) the reference's way: `activations_main` with deflate level 6 (the reference's
   `savez_compressed`), then `figures_main` rendering the `raw` figure of every head
 - (b) `pattern-lens run` (`run_main`): layers go from the forward pass straight to the render
   workers, no `.npz`

each with the exact and the fast export profile, on all cores (joblib loky). Each configuration runs
in a fresh child process (model loading excluded from the times, worker start-up included). Stage
breakdown: forward (hooks excluded), copy out (trim + copy each layer to numpy), `.npz` write
(deflate), render (workers' busy seconds, encoding + file writes), and for (b) how long rendering
went on after the last forward pass (the rest of the render overlapped it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve()
sys.path[:0] = [str(_HERE.parents[1]), str(_HERE.parents[1] / "tests")]  # this checkout; tiny_models (the tests' model builder)


def _child(cfg: dict) -> dict:
    os.environ["HF_HUB_OFFLINE"] = "1"
    if cfg["way"] == "b":  # as `pattern-lens run` does: its module is imported before torch (its OpenMP setting)
        import pattern_lens._engine.stream  # noqa: F401
    from pattern_lens._model.load import load_model

    pm = load_model(cfg["model"], device="cpu")
    out = Path(cfg["out"])
    if cfg["way"] == "a":
        from pattern_lens.activations import activations_main
        from pattern_lens.figures import figures_main

        t0 = time.perf_counter()
        rep = activations_main(cfg["model"], out, cfg["prompts"], False, None, None, True, None, True,
                               batch_size=cfg["batch"], compress_level=cfg["level"], model=pm, verbose=False)
        t1 = time.perf_counter()
        summ = figures_main(pm.model_name, out, None, True, "raw", profile=cfg["profile"], progress=False, verbose=False)
        t2 = time.perf_counter()
        assert rep.ok and summ.ok, (rep.format(), summ.format())
        npz_bytes = sum(p.stat().st_size for p in out.rglob("activations.npz"))
        return {
            "total": t2 - t0, "activations": t1 - t0, "render_wall": t2 - t1, "forward": rep.times.forward,
            "copy_out": rep.times.copy_out, "npz_write": rep.times.sink, "render_busy": summ.busy_seconds,
            "npz_MB": npz_bytes / 1e6, "heads": summ.n_heads, "jobs": summ.n_jobs,
            "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    from pattern_lens._engine.stream import run_main

    t0 = time.perf_counter()
    summ = run_main(pm, cfg["prompts"], out, batch_size=cfg["batch"], figure_funcs_select="raw", profile=cfg["profile"],
                    force=True, progress=False, verbose=False)
    t1 = time.perf_counter()
    assert summ.ok, summ.format()
    return {
        "total": t1 - t0, "forward": summ.forward_seconds, "copy_out": summ.copy_out_seconds, "npz_write": 0.0,
        "render_busy": summ.busy_seconds, "forward_wall": summ.forward_wall_seconds, "tail": summ.tail_seconds,
        "wait": summ.wait_seconds, "heads": summ.n_heads, "jobs": summ.n_jobs,
        "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _npz_levels(model: str, prompts: str, levels: list[int]) -> list[dict]:
    """one prompt's patterns written with `NpzWriter` at each deflate level, and `numpy.savez_compressed`"""
    import numpy as np

    from pattern_lens._layout import layer_key
    from pattern_lens._model.compute import make_batches, prepare_prompts, run_batch
    from pattern_lens._model.load import load_model
    from pattern_lens._model.npz_writer import NpzWriter

    pm = load_model(model, device="cpu")
    prepared, _ = prepare_prompts(pm, [("p", json.loads(Path(prompts).read_text().splitlines()[0]))])
    cache: dict = {}
    run_batch(pm, make_batches(prepared, 1)[0], range(pm.n_layers), lambda p, l, a: cache.__setitem__(layer_key(l), a[None].copy()))
    raw = sum(a.nbytes for a in cache.values())
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        np.savez_compressed(Path(tmp) / "np.npz", **cache)
        dt = time.perf_counter() - t0
        out.append({"writer": "numpy.savez_compressed", "level": 6, "seconds": dt, "MB": (Path(tmp) / "np.npz").stat().st_size / 1e6, "raw_MB": raw / 1e6})
        for level in levels:
            path = Path(tmp) / f"l{level}.npz"
            t0 = time.perf_counter()
            with NpzWriter(path, level) as w:
                for k, a in cache.items():
                    w.add(k, a)
            dt = time.perf_counter() - t0
            t1 = time.perf_counter()
            with np.load(path) as z:
                for k in z.files:
                    assert z[k].tobytes() == cache[k].tobytes()
            out.append({"writer": "NpzWriter", "level": level, "seconds": dt, "read_s": time.perf_counter() - t1,
                        "MB": path.stat().st_size / 1e6, "raw_MB": raw / 1e6})
    return out


def _run_child(cfg: dict) -> dict:
    # a fresh interpreter, not a multiprocessing child: joblib runs daemonic children sequentially
    r = subprocess.run([sys.executable, str(_HERE), "--child", json.dumps(cfg)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"child failed: {r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-prompts", type=int, default=3)
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument("--n-layers", type=int, default=12)
    ap.add_argument("--n-heads", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--prompt-tokens", type=int, default=None,
                    help="tokens per prompt (default: n_ctx, every prompt fills the context; the reference's "
                         "default cut of ~1,000 characters is ~200)")
    ap.add_argument("--batch-a", type=int, default=1, help="prompts per forward pass of (a) (default: 1; the CLI's: 32)")
    ap.add_argument("--batch-b", type=int, default=1, help="prompts per forward pass of (b) (default: 1; the CLI's: 8)")
    ap.add_argument("--profiles", type=str, default="exact,fast", help="export profiles to run (default: exact,fast)")
    ap.add_argument("--level", type=int, default=6, help="deflate level of (a)'s .npz (default: 6, the reference's)")
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--npz-levels", action="store_true", help="only time writing one prompt's .npz at levels 0, 1, 6")
    ap.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        cfg = json.loads(args.child)
        print(json.dumps(_npz_levels(cfg["model"], cfg["prompts"], cfg["levels"]) if "levels" in cfg else _child(cfg)))
        return 0

    from tiny_models import SENTENCES, save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        model = save_tiny_model("gpt2", tmp_p / "gpt2-random", n_layers=args.n_layers, n_heads=args.n_heads,
                                d_model=args.d_model, n_ctx=args.n_ctx)
        words = " ".join(SENTENCES).split()
        with open(tmp_p / "prompts.jsonl", "w") as f:
            n_words = (args.prompt_tokens or args.n_ctx) - 1  # + BOS: by default every prompt fills the context
            for k in range(args.n_prompts):
                text = " ".join(words[(i + 7 * k) % len(words)] for i in range(n_words))
                f.write(json.dumps({"text": text}) + "\n")
        if args.npz_levels:
            res = _run_child({"model": str(model), "prompts": str(tmp_p / "prompts.jsonl"), "levels": [0, 1, 6]})
            print("| writer | level | write s | MB/s of patterns | file MB (of raw) |")
            print("|---|---|---|---|---|")
            for r in res:
                print(f"| {r['writer']} | {r['level']} | {r['seconds']:.2f} | {r['raw_MB'] / r['seconds']:.0f} | "
                      f"{r['MB']:.0f} ({r['MB'] / r['raw_MB']:.0%} of {r['raw_MB']:.0f}) |")
            if args.json:
                Path(args.json).write_text(json.dumps({"args": vars(args), "npz_levels": res}, indent=1))
            return 0
        rows = []
        profiles = args.profiles.split(",")
        for profile in profiles:
            for way in ("a", "b"):
                cfg = {"way": way, "profile": profile, "model": str(model), "prompts": str(tmp_p / "prompts.jsonl"),
                       "out": str(tmp_p / f"out-{way}-{profile}"), "level": args.level,
                       "batch": args.batch_a if way == "a" else args.batch_b}
                res = _run_child(cfg)
                res.update(way=way, profile=profile)
                rows.append(res)
                print(json.dumps(res), flush=True)
    by = {(r["way"], r["profile"]): r for r in rows}
    print(f"\n{args.n_layers} x {args.n_heads} heads, n_ctx {args.n_ctx}, {args.n_prompts} prompts of "
          f"{args.prompt_tokens or args.n_ctx} tokens, batch sizes {args.batch_a} / {args.batch_b}, "
          f"{rows[0]['jobs']} jobs, {os.cpu_count()} CPUs")
    print("| way | profile | total s | forward s | copy out s | .npz write s | render busy s | render after forward s | peak RSS parent MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tail = f"{r['tail']:.1f}" if "tail" in r else f"{r['render_wall']:.1f} (all)"
        name = "(a) activations level %d + render" % args.level if r["way"] == "a" else "(b) run"
        print(f"| {name} | {r['profile']} | {r['total']:.1f} | {r['forward']:.1f} | {r['copy_out']:.1f} | "
              f"{r['npz_write']:.1f} | {r['render_busy']:.1f} | {tail} | {r['peak_rss_MB']:.0f} |")
    for p in profiles:
        print(f"(b)/(a) {p}: {by[('b', p)]['total'] / by[('a', p)]['total']:.3f}")
    if {"exact", "fast"} <= set(profiles):
        print(f"(b) fast / (a) exact: {by[('b', 'fast')]['total'] / by[('a', 'exact')]['total']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
