"""how long the gallery's first views take on a big data folder, against a tiny one in the same run

```bash
python benchmarks/bench_gallery.py DATA [--model MODEL] [--repeat 3]
```

`DATA` is a rendered data folder (e.g. 32 x 32 heads x 100 prompts, see benchmarks/README.md). The
baseline is a tiny folder (2 x 2 heads, 2 prompts) written and rendered here. For each, it times
`write_gallery` (from nothing, then again with nothing changed), then in headless Chromium, each
view in a fresh browser context (cold cache), served by `python -m pattern_lens.server` and opened
from disk: from navigation until the view is drawn and every image it has asked for is decoded
(images load as they come near the screen: the count says how many of the view's images that was).
Medians of `--repeat` runs, and the ratio big / tiny.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout first, and the tests' server helper

from gallery_support import CHROMIUM, CHROMIUM_ARGS, running_server  # noqa: E402

from pattern_lens._layout import GALLERY_DIR  # noqa: E402
from pattern_lens._output.indexes import read_jsonl  # noqa: E402
from pattern_lens._view.gallery import write_gallery  # noqa: E402

WAIT_IMAGES = "[...document.querySelectorAll('main img[src]')].every(i => i.complete)"


def _views(data: Path, model: str) -> dict[str, str]:
    first = read_jsonl(data / model / "prompts.jsonl")[0]["hash"]
    return {
        "models": "",
        "prompts": f"view=prompts&model={model}",
        "grid (all heads of a prompt)": f"view=grid&model={model}&prompt={first}&fig=raw",
        "head": f"view=head&model={model}&prompt={first}&fig=raw&layer=0&head=0",
        "across (one head, all prompts)": f"view=across&model={model}&fig=raw&layer=0&head=0",
    }


def _time_view(browser, url: str) -> tuple[float, int, int]:
    """ms until drawn and the requested images decoded; images requested; images in the view"""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function("document.getElementById('main').dataset.ready === location.hash", timeout=120_000)
    page.wait_for_function(WAIT_IMAGES, timeout=120_000)
    ms = (time.perf_counter() - t0) * 1000
    counts = page.evaluate("[document.querySelectorAll('main img[src]').length, document.querySelectorAll('main img').length]")
    context.close()
    return ms, counts[0], counts[1]


def measure(data: Path, model: str, repeat: int, browser) -> dict[str, tuple[float, int, int]]:
    out: dict[str, tuple[float, int, int]] = {}
    shutil.rmtree(data / GALLERY_DIR, ignore_errors=True)
    t0 = time.perf_counter()
    write_gallery(data)
    out["write_gallery (new)"] = ((time.perf_counter() - t0) * 1000, 0, 0)
    t0 = time.perf_counter()
    write_gallery(data)
    out["write_gallery (unchanged)"] = ((time.perf_counter() - t0) * 1000, 0, 0)
    views = _views(data, model)
    with running_server(data) as server:
        for mode, base in (("served", server.url), ("file://", (data / "index.html").resolve().as_uri())):
            for name, route in views.items():
                runs = [_time_view(browser, base + ("#" + route if route else "")) for _ in range(repeat)]
                out[f"{mode} {name}"] = (statistics.median(r[0] for r in runs), runs[0][1], runs[0][2])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", default=None, help="model folder (default: the first in models.jsonl)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from pattern_lens.attn_figure_funcs import raw
    from pattern_lens.figures import figures_main
    from pattern_lens.synthetic import write_synthetic_model

    model = args.model or read_jsonl(args.data / "models.jsonl")[0]["sanitized_name"]
    with tempfile.TemporaryDirectory() as tmp:
        tiny = write_synthetic_model(tmp, n_layers=2, n_heads=2, n_ctx=64, n_prompts=2)
        figures_main(tiny.name, tmp, None, False, figure_funcs_select=[raw], n_jobs=1, progress=False, verbose=False)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            base = measure(Path(tmp), tiny.name, args.repeat, browser)
            big = measure(args.data, model, args.repeat, browser)
            browser.close()
    print(f"| step | tiny ({tiny.name}, 2 prompts) ms | {model} ms | ratio | images loaded / in the view |")
    print("|---|---:|---:|---:|---:|")
    for key, (ms, loaded, total) in big.items():
        print(f"| {key} | {base[key][0]:.0f} | {ms:.0f} | {ms / base[key][0]:.1f} | {f'{loaded} / {total}' if total else ''} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
