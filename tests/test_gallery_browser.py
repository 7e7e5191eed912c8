"""the gallery in a real headless Chromium: served by `pattern-lens serve` and opened from disk

Demo data: two synthetic models rendered with png, svg and svgz figure functions; one of them with
a <BOS> before its tokens (as transformer_lens saves real prompts), head statistics for one prompt
and previews for one figure. Every view renders, clicks and keys move where they should, hover shows
the right token pair and a value range that holds the true normalised attention value, the console
stays clean, and no request leaves the data folder. Screenshots: the pytest tmp folder `shots`, and
copies in /tmp/gallery_shots.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest
from PIL import Image

from gallery_figures import FIGURE_FUNCS
from gallery_support import CHROMIUM, CHROMIUM_ARGS, require_browser, running_server
from pattern_lens._view.gallery import write_gallery
from pattern_lens._view.summaries import SUMMARY_NAMES, preview_file_name
from pattern_lens.figures import figures_main
from pattern_lens.synthetic import write_synthetic_model

SHOTS_COPY = Path("/tmp/gallery_shots")
BIG = dict(n_layers=6, n_heads=4, n_ctx=20, n_prompts=3, seed=1)  # 6 rows of cells: some start off screen
BOS = dict(n_layers=2, n_heads=2, n_ctx=16, n_prompts=2, seed=2)


def _drop_first_token(model_dir: Path) -> None:
    """make the model look like a real one: the pattern has one more position (<BOS>) than `tokens`"""
    rows = []
    for line in (model_dir / "prompts.jsonl").read_text().splitlines():
        row = json.loads(line)
        row["tokens"] = row["tokens"][1:]
        row["n_tokens"] = len(row["tokens"])
        rows.append(row)
        (model_dir / "prompts" / row["hash"] / "prompt.json").write_text(json.dumps(row))
    (model_dir / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("gallery_data")
    big = write_synthetic_model(data, **BIG)
    bos = write_synthetic_model(data, **BOS)
    for model_dir in (big, bos):
        summary = figures_main(model_dir.name, data, None, False, figure_funcs_select=FIGURE_FUNCS, n_jobs=1, progress=False, verbose=False)
        assert summary.ok, summary.format()
    _drop_first_token(bos)
    # statistics for the first prompt of `big`: head index as "rank", so sorting reverses each layer
    first = json.loads((big / "prompts.jsonl").read_text().splitlines()[0])["hash"]
    stats = {"heads": [{"layer": L, "head": H, "rank": float(H), "entropy": 0.1 * L + 0.01 * H}
                       for L in range(BIG["n_layers"]) for H in range(BIG["n_heads"])]}
    (big / "prompts" / first / SUMMARY_NAMES["stats"]).write_text(json.dumps(stats))
    # previews of `raw` for every head of `bos`: 4x4 downscales
    for head_png in bos.glob("prompts/*/L*/H*/raw.png"):
        Image.open(head_png).resize((4, 4)).save(head_png.with_name(preview_file_name("raw")))
    write_gallery(data)
    return data


@pytest.fixture(scope="module")
def browser():
    sync_playwright = require_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shots")


class Page:
    """a page that records console errors and refuses (and records) any request outside the data folder"""

    def __init__(self, browser, base_url: str, data: Path, shots: Path, tag: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 560})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.requests: list[str] = []
        self.base_url, self.data, self.shots, self.tag = base_url, data.resolve(), shots, tag
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.context.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme == "file":
            inside = Path(unquote(parts.path)).resolve().is_relative_to(self.data)
        else:
            inside = url.startswith(self.base_url)
        if inside:
            self.requests.append(url)
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def goto(self, hash_: str = ""):
        self.page.goto(self.base_url + ("#" + hash_ if hash_ else ""))
        self.ready()

    def open(self, view: str, **params) -> None:
        """go to `view` with `params` in the URL's hash and wait until it is drawn"""
        self.goto("&".join([f"view={view}", *(f"{k}={v}" for k, v in params.items())]))
        self.wait_view(view)

    def ready(self):
        """the view of the current URL is drawn"""
        self.page.wait_for_function("document.getElementById('main').dataset.ready === location.hash")

    def wait_view(self, view: str):
        self.ready()
        assert self.page.get_attribute("#main", "data-view") == view
        assert self.page.locator("#error").count() == 0, self.page.locator("#error").inner_text()

    def route(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.page.url).fragment).items()}

    def shot(self, name: str):
        path = self.shots / f"{self.tag}_{name}.png"
        self.page.evaluate("window.scrollTo(0, 0)")  # else the sticky header lands mid-page in a full-page shot
        self.page.screenshot(path=str(path), full_page=True)
        try:
            SHOTS_COPY.mkdir(exist_ok=True)
            shutil.copy(path, SHOTS_COPY / path.name)
        except OSError:
            pass

    def close(self):
        # what the page loaded, by the browser's own account (file:// loads included)
        loaded = self.page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        for url in loaded:
            parts = urlsplit(url)
            if parts.scheme == "file":
                if not Path(unquote(parts.path)).resolve().is_relative_to(self.data):
                    self.outside.append(url)
            elif parts.scheme not in ("data", "blob") and not url.startswith(self.base_url.split("#")[0].rsplit("/", 1)[0]):
                self.outside.append(url)
        self.context.close()
        assert not self.outside, f"requests outside the data folder: {self.outside}"
        assert not self.errors, "\n".join(self.errors)


@pytest.fixture(scope="module")
def served_url(demo):
    with running_server(demo) as server:
        yield server.url


@pytest.fixture(params=["served", "file"])
def page(request, demo, browser, shots, served_url):
    base = served_url if request.param == "served" else (demo / "index.html").resolve().as_uri()
    p = Page(browser, base, demo, shots, request.param)
    yield p
    p.close()


def _prompts(data: Path, model: str) -> list[dict]:
    return [json.loads(line) for line in (data / model / "prompts.jsonl").read_text().splitlines()]


def _hover(page: Page, q: int, k: int) -> dict[str, str]:
    box = page.page.locator("#pattern-canvas").bounding_box()
    margin, cell = (float(page.page.get_attribute("#pattern-canvas", a)) for a in ("data-margin", "data-cell"))
    page.page.mouse.move(box["x"] + margin + (k + 0.5) * cell, box["y"] + margin + (q + 0.5) * cell)
    page.page.wait_for_function(f"document.getElementById('readout').dataset.q === '{q}' && document.getElementById('readout').dataset.k === '{k}'")
    return page.page.eval_on_selector("#readout", "e => ({...e.dataset, text: e.innerText})")


def test_models_and_figures(page, demo):
    page.goto()
    assert page.page.locator("#models tr.row").count() == 2
    assert page.page.locator("#figures tr").count() == 1 + 3
    assert page.page.locator("#figures").inner_text().count("svgz") >= 1
    # nothing but the index is loaded up front: prompts come when a model is opened
    assert page.page.evaluate("Object.keys(window.PL_DATA)") == ["index"]
    assert not [u for u in page.requests if "prompts.js" in u or "/stats/" in u]
    page.shot("models")


def test_prompts_search_and_filters(page, demo):
    model = "synthetic-6x4-ctx20"
    rows = _prompts(demo, model)
    page.goto()
    page.page.click(f"#models tr.row[data-model='{model}']")
    page.wait_view("prompts")
    assert page.page.locator("#prompts tr.row").count() == len(rows)
    word = rows[1]["text"].split()[3]
    expected = sum(word in r["text"].lower() for r in rows)
    page.page.fill("#f-q", word)
    page.page.wait_for_function(f"document.querySelectorAll('#prompts tr.row').length === {expected}")
    assert "q=" in page.page.url  # the filter is in the URL, to share
    page.page.fill("#f-q", "")
    page.page.fill("#f-meta", "prompt_index=2")
    page.page.wait_for_function("document.querySelectorAll('#prompts tr.row').length === 1")
    assert page.page.get_attribute("#prompts tr.row", "data-hash") == rows[2]["hash"]
    page.page.fill("#f-meta", "")
    page.page.fill("#f-min", "21")
    page.page.wait_for_function("document.querySelectorAll('#prompts tr.row').length === 0")
    page.page.fill("#f-min", "20")
    page.page.fill("#f-max", "20")
    page.page.wait_for_function(f"document.querySelectorAll('#prompts tr.row').length === {len(rows)}")
    page.shot("prompts")


def test_grid_lazy_click_and_keys(page, demo):
    model = "synthetic-6x4-ctx20"
    rows = _prompts(demo, model)
    page.open("grid", model=model, prompt=rows[0]['hash'], fig="raw")
    cells = page.page.locator("#grid .cell")
    assert cells.count() == BIG["n_layers"] * BIG["n_heads"]
    # only what is near the screen is loaded: the last layer's images have no src yet
    last = page.page.locator(f"#grid .cell[data-layer='{BIG['n_layers'] - 1}'] img")
    assert last.first.get_attribute("src") is None
    page.page.wait_for_function("[...document.querySelectorAll('#grid .cell[data-layer=\"0\"] img')].every(i => i.complete && i.naturalWidth === 20)")
    page.shot("grid")
    last.first.scroll_into_view_if_needed()
    page.page.wait_for_function(f"[...document.querySelectorAll('#grid .cell[data-layer=\"{BIG['n_layers'] - 1}\"] img')].every(i => i.complete && i.naturalWidth === 20)")
    # the svg and svgz figures: shown when served; svgz from disk says why not
    page.page.select_option("#figure", "sqrt_svg")
    page.wait_view("grid")
    assert page.route()["fig"] == "sqrt_svg"
    page.page.wait_for_function("[...document.querySelectorAll('#grid .cell[data-layer=\"0\"] img')].every(i => i.complete && i.naturalWidth === 20)")
    page.page.select_option("#figure", "log_svgz")
    page.wait_view("grid")
    if page.tag == "served":
        page.page.wait_for_function("[...document.querySelectorAll('#grid .cell[data-layer=\"0\"] img')].every(i => i.complete && i.naturalWidth === 20)")
    else:
        assert "pattern-lens serve" in page.page.locator("#grid .cell .ph").first.inner_text()
    page.shot("grid_svgz")
    # ] moves to the next prompt
    page.page.keyboard.press("]")
    page.page.wait_for_function(f"location.hash.includes('prompt={rows[1]['hash']}')")
    page.wait_view("grid")
    # a click on a cell opens that head
    page.page.click("#grid .cell[data-layer='2'][data-head='3']")
    page.wait_view("head")
    r = page.route()
    assert (r["layer"], r["head"], r["prompt"], r["fig"]) == ("2", "3", rows[1]["hash"], "log_svgz")


def test_statistics_sort_and_colour(page, demo):
    model = "synthetic-6x4-ctx20"
    rows = _prompts(demo, model)
    page.open("grid", model=model, prompt=rows[0]['hash'], fig="raw")
    page.page.select_option("#sort", "rank")
    page.wait_view("grid")
    order = page.page.eval_on_selector_all("#grid .cell[data-layer='0']", "cs => cs.map(c => c.dataset.head)")
    assert order == ["3", "2", "1", "0"]
    page.page.select_option("#colour", "entropy")
    page.wait_view("grid")
    assert page.page.locator("#grid .cell .stat").count() == BIG["n_layers"] * BIG["n_heads"]
    assert page.page.locator("#grid .cell[data-layer='1'][data-head='2'] .stat").inner_text() == "0.120"
    assert page.route()["sort"] == "rank" and page.route()["colour"] == "entropy"
    page.shot("grid_stats")
    # a prompt without statistics says so
    page.page.keyboard.press("]")
    page.page.wait_for_function("document.body.innerText.includes('no head statistics for this prompt')")


def test_previews_in_grids_where_present(page, demo):
    model = "synthetic-2x2-ctx16"
    rows = _prompts(demo, model)
    page.open("grid", model=model, prompt=rows[0]['hash'], fig="raw")
    page.page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth === 4)")
    assert page.page.get_attribute("#grid img", "src").endswith(preview_file_name("raw"))


def test_head_hover_keys_and_across(page, demo):
    model = "synthetic-6x4-ctx20"
    rows = _prompts(demo, model)
    layer, head = 3, 1
    page.open("head", model=model, prompt=rows[0]['hash'], fig="raw", layer=layer, head=head)
    page.page.wait_for_selector("#pattern-canvas")
    attn = np.load(demo / model / "prompts" / rows[0]["hash"] / "activations.npz")[f"blocks.{layer}.attn.hook_pattern"][0, head]
    norm = (attn - attn.min()) / (attn.max() - attn.min())
    tokens = rows[0]["tokens"]
    for q, k in [(5, 4), (19, 0), (12, 12), (3, 17)]:
        shown = _hover(page, q, k)
        assert (shown["query"], shown["key"]) == (tokens[q], tokens[k])
        if page.tag == "served":
            lo, hi = float(shown["lo"]), float(shown["hi"])
            assert lo <= norm[q, k] < hi or (hi == 1.0 and norm[q, k] == 1.0), (q, k, lo, hi, norm[q, k])
            assert hi - lo <= 2 / 256 and "normalised" in shown["text"]
        else:
            assert "lo" not in shown and "pattern-lens serve" in shown["text"]
    page.shot("head")
    for key, (dl, dh) in [("ArrowRight", (0, 1)), ("ArrowDown", (1, 1)), ("ArrowLeft", (1, 0)), ("ArrowUp", (0, 0))]:
        page.page.keyboard.press(key)
        page.page.wait_for_function(f"location.hash.includes('layer={layer + dl}&head={head + dh}')")
        page.wait_view("head")
    page.page.keyboard.press("]")
    page.page.wait_for_function(f"location.hash.includes('prompt={rows[1]['hash']}')")
    page.wait_view("head")
    page.page.keyboard.press("a")
    page.wait_view("across")
    assert page.page.locator("#across .cell").count() == len(rows)
    page.page.wait_for_function("[...document.querySelectorAll('#across img')].every(i => i.complete && i.naturalWidth === 20)")
    page.shot("across")
    page.page.keyboard.press("ArrowRight")
    page.page.wait_for_function(f"location.hash.includes('head={head + 1}')")
    page.wait_view("across")
    page.page.click(f"#across .cell[data-hash='{rows[2]['hash']}']")
    page.wait_view("head")
    assert page.route()["prompt"] == rows[2]["hash"] and page.route()["head"] == str(head + 1)


def test_head_of_other_formats_and_bos(page, demo):
    model = "synthetic-2x2-ctx16"
    rows = _prompts(demo, model)
    page.open("head", model=model, prompt=rows[0]['hash'], fig="sqrt_svg", layer=1, head=0)
    page.page.wait_for_selector("#pattern-canvas")
    shown = _hover(page, 0, 0)
    assert shown["query"] == "<BOS>" and shown["key"] == "<BOS>"
    shown = _hover(page, 7, 3)
    assert (shown["query"], shown["key"]) == (rows[0]["tokens"][6], rows[0]["tokens"][2])
    if page.tag == "served":  # an svg's pixels are read, but viridis is not a colormap the gallery decodes
        assert "does not know this figure's colormap" in shown["text"] and "rgb(" in shown["text"]
    page.shot("head_svg")
    page.page.select_option("#zoom", "32")  # one token = 32 screen pixels, the box scrolls
    page.wait_view("head")
    assert page.route()["zoom"] == "32"
    page.page.wait_for_selector("#pattern-canvas")
    assert page.page.get_attribute("#pattern-canvas", "width") == str(96 + 32 * BOS["n_ctx"])
    page.page.locator("#pattern").evaluate("b => { b.scrollLeft = 9999; b.scrollTop = 9999; }")
    shown = _hover(page, 15, 15)
    assert (shown["query"], shown["key"]) == (rows[0]["tokens"][14], rows[0]["tokens"][14])
    page.shot("head_zoom")
    page.page.select_option("#figure", "log_svgz")
    page.wait_view("head")
    if page.tag == "served":
        page.page.wait_for_selector("#pattern-canvas")
        shown = _hover(page, 9, 9)
        assert shown["query"] == rows[0]["tokens"][8]
    else:
        assert "pattern-lens serve" in page.page.locator("#pattern").inner_text()
    page.shot("head_svgz")


def test_shared_url_opens_the_same_view(page, demo):
    model = "synthetic-6x4-ctx20"
    rows = _prompts(demo, model)
    page.open("head", model=model, prompt=rows[2]['hash'], fig="sqrt_svg", layer=5, head=2)
    heading = page.page.locator("main h2").first.inner_text()
    assert "layer 5, head 2" in heading and "prompt #2" in heading
    assert page.page.locator("#figure").input_value() == "sqrt_svg"
    page.goto("view=head&model=nope&prompt=x&fig=raw&layer=0&head=0")
    page.page.wait_for_selector("#error")
    assert "no model named" in page.page.locator("#error").inner_text()
