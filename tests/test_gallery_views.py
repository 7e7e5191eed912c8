"""the gallery as a researcher reads it, in a real headless Chromium (issue 19)

Data, built once: a real encoder (BERT, random weights, its own tokenizer) and a real causal model
(GPT-2) saved with `save_pretrained` and run through `run` on the same prompts (GPT-2 with
`--save-activations`, BERT without: the hover's two sources), a copy of the encoder as the reference
writes it (`tokens` without [CLS]/[SEP], no `pattern_tokens`), a 300-token synthetic prompt, and
32 x 32 and 80 x 64 head models (one tiny raw.png copied into every head: the layout is under test).

Checked: token axes with [CLS] on encoders (recorded, and rebuilt for reference data); the hovered
weight equals the `.npz` within 1e-3 (served); the colour bin as an interval of weights without
one; labels on a 300-token prompt at the largest zoom and thinned at "fit"; a 32 x 32 grid fits a
1,400 px window (and 80 x 64 has no sideways overflow); the comparison view shows two models' heads
for one prompt; Esc leaves the across-prompts view. Every page: no console error, no request
outside the data folder (the harness of test_gallery_browser). Screenshots: /tmp/gallery_shots.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gallery_support import running_server
from pattern_lens._view.gallery import write_gallery
from test_gallery_browser import Page, _hover, browser, shots  # noqa: F401 (fixtures)

pytest.importorskip("torch", reason="needs the `model` extra")
pytest.importorskip("transformers", reason="needs the `model` extra")
from tiny_models import SENTENCES, save_tiny_model  # noqa: E402

TEXTS = [SENTENCES[0], SENTENCES[1] + " and salt", SENTENCES[3]]
LONG = 300


def _dirs(data: Path) -> dict[str, Path]:
    return {json.loads(line)["model_name"]: data / json.loads(line)["sanitized_name"] for line in (data / "models.jsonl").read_text().splitlines()}


def _rows(model_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (model_dir / "prompts.jsonl").read_text().splitlines()]


def _as_the_reference_wrote_it(src: Path, dst: Path) -> None:
    """a copy of a model folder whose prompts have only the reference's fields"""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "model_cfg.json").read_text())
    cfg["model_name"] = dst.name
    (dst / "model_cfg.json").write_text(json.dumps(cfg))
    rows = []
    for row in _rows(dst):
        row = {k: row[k] for k in ("text", "hash", "n_tokens", "tokens", "meta") if k in row}
        (dst / "prompts" / row["hash"] / "prompt.json").write_text(json.dumps(row))
        rows.append(row)
    (dst / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _many_heads(data: Path, n_layers: int, n_heads: int) -> None:
    from PIL import Image

    from pattern_lens.synthetic import write_synthetic_model

    model_dir = write_synthetic_model(data, n_layers=n_layers, n_heads=n_heads, n_ctx=4, n_prompts=1, seed=5)
    png = data / "tiny.png"
    Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16).convert("RGB").save(png)
    (row,) = _rows(model_dir)
    for layer in range(n_layers):
        for head in range(n_heads):
            d = model_dir / "prompts" / row["hash"] / f"L{layer}" / f"H{head}"
            d.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, d / "raw.png")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from pattern_lens._output.indexes import write_models_jsonl
    from pattern_lens._engine.stream import run_main
    from pattern_lens.figures import figures_main
    from pattern_lens.synthetic import write_synthetic_model

    root = tmp_path_factory.mktemp("views")
    data = root / "data"
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    for kind in ("bert", "gpt2"):
        model = save_tiny_model(kind, root / f"tiny-{kind}", n_layers=2, n_heads=4)
        summary = run_main(str(model), prompts, data, n_jobs=1, progress=False, verbose=False, figure_funcs_select="raw",
                           save_activations=kind == "gpt2")
        assert summary.ok, summary.format()
    _as_the_reference_wrote_it(_dirs(data)["tiny-bert"], data / "tiny-bert-reference")
    long_dir = write_synthetic_model(data, n_layers=1, n_heads=1, n_ctx=LONG, n_prompts=1, seed=6)
    assert figures_main(long_dir.name, data, None, False, figure_funcs_select="raw", n_jobs=1, progress=False, verbose=False).ok
    _many_heads(data, 32, 32)
    _many_heads(data, 80, 64)
    write_models_jsonl(data)
    write_gallery(data)
    return data


@pytest.fixture(scope="module")
def served(data):
    with running_server(data) as server:
        yield server.url


@pytest.fixture
def page(browser, shots, data, served):  # noqa: F811
    p = Page(browser, served, data, shots, "views")
    yield p
    p.close()


@pytest.fixture
def file_page(browser, shots, data):  # noqa: F811
    p = Page(browser, (data / "index.html").resolve().as_uri(), data, shots, "views_file")
    yield p
    p.close()


def _label(token) -> str:
    """an axis label as the page writes it: whitespace made visible, cut to 12 characters"""
    t = str(token).replace("Ġ", "␣").replace("Ċ", "⏎").replace("\n", "⏎").replace("\t", "⇥")
    t = "␣" + t[1:] if t.startswith(" ") else t
    return t[:11] + "…" if len(t) > 12 else t


def _synthetic(data: Path, n_layers: int, n_heads: int) -> tuple[str, dict]:
    (d,) = [d for name, d in _dirs(data).items() if name.startswith(f"synthetic-{n_layers}x{n_heads}-")]
    return d.name, _rows(d)[0]


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-bert-reference"])
def test_encoder_axes_name_cls_and_sep(page, data, model):
    model_dir = _dirs(data)[model]
    row = _rows(model_dir)[1]
    n = len(row["tokens"]) + 2
    page.open("grid", model=model_dir.name, prompt=row["hash"], fig="raw")
    assert f"{n} positions: {n - 2} tokens + 2 special" in page.page.locator("main h2").first.inner_text()
    page.open("head", model=model_dir.name, prompt=row["hash"], fig="raw", layer=1, head=2)
    page.page.wait_for_selector("#pattern-canvas")
    assert page.page.get_attribute("#pattern-canvas", "data-n") == str(n)
    first, last = _hover(page, 0, 0), _hover(page, n - 1, n - 1)
    assert (first["query"], first["key"], last["query"]) == ("[CLS]", "[CLS]", "[SEP]")
    mid = _hover(page, 3, 1)
    assert (mid["query"], mid["key"]) == (row["tokens"][2], row["tokens"][0])
    note = page.page.locator("#axis-note").inner_text()
    assert ("recorded by the run" in note) == (model == "tiny-bert")
    if model != "tiny-bert":
        assert "[CLS] and [SEP] added" in note
    # no activations.npz (run without --save-activations): the colour bin as an interval of weights
    assert mid["source"] == "bin" and float(mid["wlo"]) <= float(mid["whi"]) <= 1.0
    assert "attention weight in [" in mid["text"] and "from the colour" in mid["text"]
    labels = page.page.eval_on_selector_all("#ylabels .tl:not(.mark)", "ls => ls.map(l => l.textContent)")
    assert labels[0] == "[CLS]" and labels[-1] == "[SEP]" and len(labels) == n
    page.shot(f"encoder_head_{model}")


def test_hover_shows_the_exact_weight_served(page, data):
    model_dir = _dirs(data)["tiny-gpt2"]
    row = _rows(model_dir)[0]
    layer, head = 1, 3
    with np.load(model_dir / "prompts" / row["hash"] / "activations.npz") as npz:
        attn = npz[f"blocks.{layer}.attn.hook_pattern"][0, head]
    page.open("head", model=model_dir.name, prompt=row["hash"], fig="raw", layer=layer, head=head)
    page.page.wait_for_selector("#pattern-canvas")
    n = attn.shape[0]
    assert n == len(row["pattern_tokens"]) and row["pattern_tokens"][0] == "<bos>"
    for q, k in [(0, 0), (3, 1), (n - 1, n - 2), (n - 1, 0), (2, 5)]:
        shown = _hover(page, q, k)
        assert shown["source"] == "npz", shown
        assert abs(float(shown["value"]) - float(attn[q, k])) < 1e-3, (q, k, shown["value"], attn[q, k])
        assert (shown["query"], shown["key"]) == (row["pattern_tokens"][q], row["pattern_tokens"][k])
        assert "exact, read from activations.npz" in shown["text"]
    assert page.page.locator("#scale").count() == 1
    page.shot("head_exact_value")


def test_from_disk_the_page_says_what_it_can_show(file_page, data):
    model_dir = _dirs(data)["tiny-gpt2"]
    row = _rows(model_dir)[0]
    file_page.open("head", model=model_dir.name, prompt=row["hash"], fig="raw", layer=0, head=0)
    file_page.page.wait_for_selector("#pattern-canvas")
    shown = _hover(file_page, 2, 1)
    assert shown["source"] == "none" and "file://" in shown["text"] and "weights run from" in shown["text"]
    stats = json.loads((model_dir / "prompts" / row["hash"] / "head_stats.json").read_text())
    lo, hi = (file_page.page.eval_on_selector_all("#scale .mono", "ss => ss.map(s => Number(s.textContent))"))
    head = next(h for h in stats["heads"] if (h["layer"], h["head"]) == (0, 0))
    assert abs(lo - head["min"]) < 1e-6 and abs(hi - head["max"]) < 1e-6
    file_page.shot("head_file_scale")


def test_long_prompt_has_labels_at_every_zoom(page, data):
    name, row = _synthetic(data, 1, 1)
    page.open("head", model=name, prompt=row["hash"], fig="raw", layer=0, head=0, zoom=32)
    page.page.wait_for_selector("#pattern-canvas")
    labels = page.page.eval_on_selector_all("#ylabels .tl:not(.mark)", "ls => ls.map(l => l.textContent)")
    assert len(labels) == LONG and page.page.locator("#xlabels .tl:not(.mark)").count() == LONG
    assert labels == [_label(t) for t in row["tokens"]]
    box = page.page.locator("#pattern-canvas").bounding_box()
    assert round(box["width"]) == 32 * LONG
    page.page.locator("#pattern").evaluate("b => { b.scrollLeft = 96 + 130 * 32 - 100; b.scrollTop = 96 + 140 * 32 - 100; }")
    shown = _hover(page, 140, 130)
    assert (shown["query"], shown["key"]) == (str(row["tokens"][140]), str(row["tokens"][130]))
    page.shot("long_zoom32")
    page.open("head", model=name, prompt=row["hash"], fig="raw", layer=0, head=0)  # fit: thinned out, never none
    page.page.wait_for_selector("#pattern-canvas")
    step = int(page.page.get_attribute("#pattern-canvas", "data-step"))
    count = page.page.locator("#ylabels .tl:not(.mark)").count()
    assert step > 1 and count == -(-LONG // step) and count >= 10
    shown = _hover(page, 201, 7)  # the hovered pair is named on the axes whether or not its label is shown
    assert (shown["query"], shown["key"]) == (str(row["tokens"][201]), str(row["tokens"][7]))
    marks = page.page.eval_on_selector_all(".tl.mark", "ms => ms.map(m => [m.className, m.textContent, m.hidden])")
    assert sorted(marks) == [["tl mark k", _label(row["tokens"][7]), False], ["tl mark q", _label(row["tokens"][201]), False]]
    page.shot("long_fit")


@pytest.mark.parametrize("shape", [(32, 32), (80, 64)])
def test_grid_fits_the_window(page, data, shape):
    name, row = _synthetic(data, *shape)
    page.page.set_viewport_size({"width": 1400, "height": 900})
    page.open("grid", model=name, prompt=row["hash"], fig="raw")
    page.page.wait_for_function("[...document.querySelectorAll('#grid .cell img')].slice(0, 8).every(i => i.complete && i.naturalWidth > 0)")
    fit = page.page.evaluate("""() => {
        const cells = [...document.querySelectorAll('#grid .cell')];
        const right = Math.max(...cells.map(c => c.getBoundingClientRect().right));
        return {right, scroll: document.documentElement.scrollWidth, inner: window.innerWidth, n: cells.length,
                cell: Number(document.getElementById('grid').dataset.cell)};
    }""")
    assert fit["n"] == shape[0] * shape[1]
    assert fit["right"] <= 1400 and fit["scroll"] <= 1400, fit
    assert fit["cell"] >= 12, fit
    heads = page.page.eval_on_selector_all("#grid .colhead", "hs => hs.map(h => h.textContent)")
    assert heads[0] == "head" and heads[1] == "0" and len(heads) == shape[1] + 1
    page.shot(f"grid_{shape[0]}x{shape[1]}")
    # sticky labels: scrolled down, the head labels stay under the page's header
    page.page.evaluate("window.scrollTo(0, 600)")
    top = page.page.eval_on_selector("#grid .colhead:nth-child(2)", "h => h.getBoundingClientRect().top")
    header = page.page.eval_on_selector("header", "h => h.getBoundingClientRect().bottom")
    assert abs(top - header) <= 1
    if shape == (32, 32):
        page.page.set_viewport_size({"width": 1400, "height": 560})
        page.page.screenshot(path=str(page.shots / "views_grid_32x32_scrolled.png"))
        shutil.copy(page.shots / "views_grid_32x32_scrolled.png", "/tmp/gallery_shots/views_grid_32x32_scrolled.png")


def test_colour_by_statistic_does_not_cover_the_image(page, data):
    model_dir = _dirs(data)["tiny-gpt2"]
    row = _rows(model_dir)[0]
    page.open("grid", model=model_dir.name, prompt=row["hash"], fig="raw", colour="entropy", size=24)
    page.page.wait_for_function("[...document.querySelectorAll('#grid .cell img')].every(i => i.complete && i.naturalWidth > 0)")
    boxes = page.page.eval_on_selector_all("#grid .cell", """cs => cs.map(c => {
        const i = c.querySelector('img').getBoundingClientRect(), s = c.querySelector('.stat').getBoundingClientRect();
        return [i.bottom, s.top, s.height, getComputedStyle(c.querySelector('.stat')).backgroundColor];
    })""")
    assert boxes and all(stat_top >= img_bottom - 0.5 and h > 0 and colour != "rgba(0, 0, 0, 0)" for img_bottom, stat_top, h, colour in boxes)
    page.shot("grid_colour_compact")


def test_compare_one_prompt_across_models(page, data):
    dirs = _dirs(data)
    bert, gpt2 = dirs["tiny-bert"], dirs["tiny-gpt2"]
    row = _rows(bert)[2]
    page.open("grid", model=bert.name, prompt=row["hash"], fig="raw")
    page.page.click("#compare-link")
    page.wait_view("compare")
    route = page.route()
    assert route["view"] == "compare" and route["heads"] == "0.*"
    cells = page.page.eval_on_selector_all("#compare a.cell", "cs => cs.map(c => [c.dataset.model, c.dataset.layer, c.dataset.head])")
    models = {c[0] for c in cells}
    assert {bert.name, gpt2.name} <= models and "tiny-bert-reference" in models
    assert sorted(c[2] for c in cells if c[0] == gpt2.name) == ["0", "1", "2", "3"]
    page.page.fill("#heads", "1.2, 0.0")
    page.page.press("#heads", "Enter")
    page.page.wait_for_function("location.hash.includes('heads=1.2')")
    page.wait_view("compare")
    page.page.uncheck(".mcheck input[value='tiny-bert-reference']")
    page.page.wait_for_function("location.hash.includes('models=')")
    page.wait_view("compare")
    cells = page.page.eval_on_selector_all("#compare a.cell", "cs => cs.map(c => [c.dataset.model, c.dataset.layer, c.dataset.head])")
    assert cells == [[bert.name, "1", "2"], [bert.name, "0", "0"], [gpt2.name, "1", "2"], [gpt2.name, "0", "0"]]
    page.page.wait_for_function("[...document.querySelectorAll('#compare img')].every(i => i.complete && i.naturalWidth > 0)")
    page.shot("compare")
    # the URL is the view: opened anew it shows the same
    url = page.page.url
    page.page.goto("about:blank")
    page.page.goto(url)
    page.wait_view("compare")
    assert page.page.locator("#compare a.cell").count() == 4
    page.page.click(f"#compare a.cell[data-model='{gpt2.name}'][data-layer='1']")
    page.wait_view("head")
    assert page.route()["model"] == gpt2.name and page.route()["prompt"] == _rows(gpt2)[2]["hash"]


def test_escape_leaves_the_across_prompts_view(page, data):
    model_dir = _dirs(data)["tiny-gpt2"]
    row = _rows(model_dir)[1]
    page.open("head", model=model_dir.name, prompt=row["hash"], fig="raw", layer=1, head=1)
    page.page.keyboard.press("a")
    page.wait_view("across")
    page.page.keyboard.press("Escape")
    page.wait_view("head")
    assert page.route()["prompt"] == row["hash"] and page.route()["layer"] == "1"
