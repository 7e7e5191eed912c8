"""the gallery in a real headless Chromium: served by `pattern-lens serve` and opened from disk

Demo data: two synthetic models rendered with png, svg and svgz figure functions and the head
summaries the render pass writes with them (previews smaller than the figures, so a test can tell
them apart: 4 x 4 against 20 x 20; 15 x 15 against 16 x 16), one of them with a <BOS> before its
tokens (as transformer_lens saves real prompts); a third model rendered with `summaries_only` (only
previews and statistics). One prompt's statistics file and one head's preview are deleted, to see
the page without them. Every view renders, clicks and keys move where they should, hover shows the
right token pair and a value range that holds the true normalised attention value, sorting and
colouring follow the statistics the render pass wrote, the console stays clean, and no request
leaves the data folder. Screenshots: the pytest tmp folder `shots`, and copies in /tmp/gallery_shots.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest

from gallery_figures import FIGURE_FUNCS
from gallery_support import CHROMIUM, CHROMIUM_ARGS, require_browser, running_server
from pattern_lens._view.gallery import write_gallery
from pattern_lens.figures import figures_main
from pattern_lens.synthetic import write_synthetic_model

SHOTS_COPY = Path("/tmp/gallery_shots")
BIG = dict(n_layers=6, n_heads=4, n_ctx=20, n_prompts=3, seed=1)  # 6 rows of cells: some start off screen
BOS = dict(n_layers=2, n_heads=2, n_ctx=16, n_prompts=2, seed=2)
ONLY = dict(n_layers=3, n_heads=3, n_ctx=12, n_prompts=2, seed=3)  # rendered with summaries_only
BIG_NAME, BOS_NAME, ONLY_NAME = "synthetic-6x4-ctx20", "synthetic-2x2-ctx16", "synthetic-3x3-ctx12"
PREVIEW_SIZE = {BIG_NAME: 4, BOS_NAME: 15, ONLY_NAME: 4}
"""BOS: 15 blocks of a 16-position pattern, as many as its 15 tokens: the page must not take the
preview for one pixel per token (the statistics say n_ctx 16)"""
STATS_FILE, PREVIEW_FILE = "head_stats.json", "preview.png"  # the README's names, written out
NO_PREVIEW = (BIG_NAME, 2, 0, 1)  # (model, prompt index, layer, head) whose preview.png is deleted


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
    only = write_synthetic_model(data, **ONLY)
    assert (big.name, bos.name, only.name) == (BIG_NAME, BOS_NAME, ONLY_NAME)
    for model_dir in (big, bos, only):
        summary = figures_main(
            model_dir.name, data, None, False, figure_funcs_select=FIGURE_FUNCS, n_jobs=1, progress=False, verbose=False,
            preview_size=PREVIEW_SIZE[model_dir.name], summaries_only=model_dir is only,
        )
        assert summary.ok, summary.format()
    _drop_first_token(bos)
    # the second prompt of `big` without statistics (its previews stay), one head of the third without its preview
    rows = _prompts(data, BIG_NAME)
    (big / "prompts" / rows[1]["hash"] / STATS_FILE).unlink()
    _, p, layer, head = NO_PREVIEW
    (big / "prompts" / rows[p]["hash"] / f"L{layer}" / f"H{head}" / PREVIEW_FILE).unlink()
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
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text} ({m.location.get('url')})") if m.type == "error" else None)
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


def _stats(data: Path, model: str, prompt_hash: str) -> dict:
    """the head_stats.json the render pass wrote for one prompt"""
    return json.loads((data / model / "prompts" / prompt_hash / STATS_FILE).read_text())


def _by_head(stats: dict) -> dict[tuple[int, int], dict]:
    return {(r["layer"], r["head"]): r for r in stats["heads"]}


def _close(text: str, value: float) -> bool:
    """whether a number the page shows (3 decimals, or 3 significant digits) is `value`"""
    return math.isclose(float(text), value, rel_tol=5e-3, abs_tol=5e-4)


def _wait_images(page: Page, selector: str, width: int) -> None:
    """every image under `selector` (at least one) has loaded and is `width` pixels wide"""
    page.page.wait_for_function(
        f"(() => {{ const is = [...document.querySelectorAll({json.dumps(selector)})];"
        f" return is.length > 0 && is.every(i => i.complete && i.naturalWidth === {width}); }})()")


def _forget_errors_about(page: Page, fragment: str) -> None:
    """drop the console errors of a request the test made fail on purpose"""
    page.errors[:] = [e for e in page.errors if fragment not in e]


def _hover(page: Page, q: int, k: int) -> dict[str, str]:
    box = page.page.locator("#pattern-canvas").bounding_box()
    margin, cell = (float(page.page.get_attribute("#pattern-canvas", a)) for a in ("data-margin", "data-cell"))
    page.page.mouse.move(box["x"] + margin + (k + 0.5) * cell, box["y"] + margin + (q + 0.5) * cell)
    page.page.wait_for_function(f"document.getElementById('readout').dataset.q === '{q}' && document.getElementById('readout').dataset.k === '{k}'")
    return page.page.eval_on_selector("#readout", "e => ({...e.dataset, text: e.innerText})")


def _shown_image(page: Page) -> dict:
    """the head view's image when it is not drawn with token axes"""
    page.page.wait_for_function("(() => { const i = document.querySelector('#pattern img'); return i && i.complete && i.naturalWidth > 0; })()")
    assert page.page.locator("#pattern-canvas").count() == 0
    return page.page.eval_on_selector("#pattern img", "i => ({w: i.naturalWidth, h: i.naturalHeight, shownW: i.getBoundingClientRect().width, src: i.src, readout: document.getElementById('readout').innerText})")


def test_models_and_figures(page, demo):
    page.goto()
    assert page.page.locator("#models tr.row").count() == 3
    figures = page.page.eval_on_selector_all("#figures tr[data-figure]", "rs => rs.map(r => r.dataset.figure)")
    assert sorted(figures) == ["log_svgz", "preview", "raw", "sqrt_svg"]  # figures.jsonl lists the preview
    assert "the head summaries' preview" in page.page.locator("#figures tr[data-figure='preview']").inner_text()
    assert "head summaries" not in page.page.locator("#figures tr[data-figure='raw']").inner_text()
    assert page.page.locator("#figures").inner_text().count("svgz") >= 1
    only = page.page.locator(f"#models tr.row[data-model='{ONLY_NAME}']").inner_text()
    assert PREVIEW_FILE in only and "raw.png" not in only  # a summaries-only run has no figure but the preview
    # nothing but the index is loaded up front: prompts come when a model is opened
    assert page.page.evaluate("Object.keys(window.PL_DATA)") == ["index"]
    assert not [u for u in page.requests if "prompts.js" in u or "/stats/" in u]
    page.shot("models")


def test_prompts_search_and_filters(page, demo):
    model = BIG_NAME
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
    model = BIG_NAME
    rows = _prompts(demo, model)
    page.open("grid", model=model, prompt=rows[0]['hash'], fig="raw")
    cells = page.page.locator("#grid .cell")
    assert cells.count() == BIG["n_layers"] * BIG["n_heads"]
    # only what is near the screen is loaded: the last layer's images have no src yet
    last = page.page.locator(f"#grid .cell[data-layer='{BIG['n_layers'] - 1}'] img")
    assert last.first.get_attribute("src") is None
    # raw's cells are the heads' previews (4 x 4), not raw.png (20 x 20)
    _wait_images(page, "#grid .cell[data-layer='0'] img", PREVIEW_SIZE[model])
    assert page.page.get_attribute("#grid .cell[data-layer='0'][data-head='2'] img", "src").endswith(f"/L0/H2/{PREVIEW_FILE}")
    page.shot("grid")
    last.first.scroll_into_view_if_needed()
    _wait_images(page, f"#grid .cell[data-layer='{BIG['n_layers'] - 1}'] img", PREVIEW_SIZE[model])
    # the other figures show themselves: a Blues preview would misrepresent them. svg and svgz:
    # shown when served; svgz from disk says why not
    page.page.select_option("#figure", "sqrt_svg")
    page.wait_view("grid")
    assert page.route()["fig"] == "sqrt_svg"
    _wait_images(page, "#grid .cell[data-layer='0'] img", BIG["n_ctx"])
    assert page.page.get_attribute("#grid .cell[data-layer='0'] img", "src").endswith("sqrt_svg.svg")
    page.page.select_option("#figure", "log_svgz")
    page.wait_view("grid")
    if page.tag == "served":
        _wait_images(page, "#grid .cell[data-layer='0'] img", BIG["n_ctx"])
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


def _sort_order(by_head: dict, stat: str, layer: int, n_heads: int) -> list[int]:
    """the heads of `layer`, highest `stat` first, heads without a value last, ties in head order"""
    def key(h):
        v = by_head[(layer, h)][stat]
        return -v if v is not None else math.inf
    return sorted(range(n_heads), key=key)


def test_statistics_sort_and_colour(page, demo):
    model = BIG_NAME
    rows = _prompts(demo, model)
    written = _stats(demo, model, rows[0]["hash"])
    by_head = _by_head(written)
    n_layers, n_heads = BIG["n_layers"], BIG["n_heads"]
    # a statistic whose order is not the heads' own, so that sorting shows; one with a spread to colour by
    sort = next(s for s in written["statistics"] if any(_sort_order(by_head, s, L, n_heads) != list(range(n_heads)) for L in range(n_layers)))
    values = {s: [r[s] for r in written["heads"] if r[s] is not None] for s in written["statistics"]}
    colour = next(s for s in written["statistics"] if s != sort and len(set(values[s])) > 2)
    page.open("grid", model=model, prompt=rows[0]['hash'], fig="raw")
    options = page.page.eval_on_selector_all("#sort option", "os => os.map(o => o.value)")
    assert options == ["", *written["statistics"]]  # the file's statistics only: no n_ctx, causal, layer, head
    assert page.page.eval_on_selector_all("#colour option", "os => os.map(o => o.value)") == options
    page.page.select_option("#sort", sort)
    page.wait_view("grid")
    for layer in range(n_layers):
        shown = page.page.eval_on_selector_all(f"#grid .cell[data-layer='{layer}']", "cs => cs.map(c => Number(c.dataset.head))")
        assert shown == _sort_order(by_head, sort, layer, n_heads), (sort, layer)
    page.page.select_option("#colour", colour)
    page.wait_view("grid")
    assert page.route()["sort"] == sort and page.route()["colour"] == colour
    cells = page.page.eval_on_selector_all(
        "#grid .cell", "cs => cs.map(c => [Number(c.dataset.layer), Number(c.dataset.head), c.querySelector('.stat').textContent, c.style.borderColor])")
    assert len(cells) == n_layers * n_heads
    lo, hi = min(values[colour]), max(values[colour])
    for layer, head, text, border in cells:
        v = by_head[(layer, head)][colour]
        if v is None:
            assert text == "–" and border == "", (layer, head)
            continue
        assert _close(text, v), (layer, head, text, v)
        if v == hi:  # the ends of the colour scale (viridis): the highest value yellow, the lowest purple
            assert border == "rgb(253, 231, 37)", (layer, head, border)
        elif v == lo:
            assert border == "rgb(68, 1, 84)", (layer, head, border)
        else:
            assert border not in ("", "rgb(253, 231, 37)", "rgb(68, 1, 84)"), (layer, head, border)
    legend_lo, legend_hi = page.page.locator(".legend").inner_text().split()
    assert _close(legend_lo, lo) and _close(legend_hi, hi)
    _wait_images(page, "#grid .cell[data-layer='0'] img", PREVIEW_SIZE[model])
    page.shot("grid_stats")
    # a prompt without statistics says so; its previews stay
    page.page.keyboard.press("]")
    page.page.wait_for_function("document.body.innerText.includes('no head statistics for this prompt')")
    page.wait_view("grid")
    assert page.page.locator("#sort").count() == 0
    _wait_images(page, "#grid .cell[data-layer='0'] img", PREVIEW_SIZE[model])


def test_previews_stand_for_raw_where_present(page, demo):
    model, p, no_layer, no_head = NO_PREVIEW
    rows = _prompts(demo, model)
    page.open("grid", model=model, prompt=rows[p]['hash'], fig="raw")
    page.page.wait_for_function("[...document.querySelectorAll('#grid .cell[data-layer=\"0\"] img')].every(i => i.complete && i.naturalWidth > 0)")
    shown = page.page.eval_on_selector_all("#grid .cell[data-layer='0']", "cs => cs.map(c => [Number(c.dataset.head), c.querySelector('img').naturalWidth, c.querySelector('img').src])")
    for head, width, src in shown:
        if head == no_head:  # its preview was deleted: the figure itself
            assert (width, src.rsplit("/", 3)[1:]) == (BIG["n_ctx"], [f"L{no_layer}", f"H{no_head}", "raw.png"])
        else:
            assert (width, src.rsplit("/", 3)[1:]) == (PREVIEW_SIZE[model], [f"L{no_layer}", f"H{head}", PREVIEW_FILE])
    _forget_errors_about(page, f"L{no_layer}/H{no_head}/{PREVIEW_FILE}")
    page.shot("grid_previews")
    # a click on a preview opens the full raw figure, with token axes
    page.page.click("#grid .cell[data-layer='1'][data-head='2']")
    page.wait_view("head")
    assert page.route()["fig"] == "raw"
    page.page.wait_for_selector("#pattern-canvas")
    assert page.page.get_attribute("#pattern-canvas", "data-n") == str(BIG["n_ctx"])
    # the preview as a figure: 4 x 4 block averages of a 20-token head, shown magnified, without token axes
    page.page.select_option("#figure", "preview")
    page.wait_view("head")
    img = _shown_image(page)
    assert (img["w"], img["h"]) == (4, 4) and img["shownW"] >= 200 and img["src"].endswith(f"/L1/H2/{PREVIEW_FILE}")
    assert "no token axes" in img["readout"] and "4 × 4 block averages of the 20 × 20 pattern" in img["readout"]
    page.shot("head_preview")


def test_preview_as_wide_as_the_tokens_is_no_pattern(page, demo):
    """BOS: a 16-position pattern (<BOS> + 15 tokens) previewed as 15 x 15 blocks: as many pixels as
    tokens, but no pixel is one token pair; the statistics' n_ctx tells"""
    rows = _prompts(demo, BOS_NAME)
    assert len(rows[0]["tokens"]) == PREVIEW_SIZE[BOS_NAME] == BOS["n_ctx"] - 1
    assert _by_head(_stats(demo, BOS_NAME, rows[0]["hash"]))[(1, 0)]["n_ctx"] == BOS["n_ctx"]
    page.open("grid", model=BOS_NAME, prompt=rows[0]["hash"], fig="raw")
    _wait_images(page, "#grid img", PREVIEW_SIZE[BOS_NAME])
    page.open("head", model=BOS_NAME, prompt=rows[0]["hash"], fig="preview", layer=1, head=0)
    img = _shown_image(page)
    assert (img["w"], img["h"]) == (15, 15) and "15 × 15 block averages of the 16 × 16 pattern" in img["readout"]
    page.shot("head_preview_bos")
    page.page.select_option("#figure", "raw")  # the figure itself: one pixel per token pair, <BOS> first
    page.wait_view("head")
    page.page.wait_for_selector("#pattern-canvas")
    assert _hover(page, 0, 0)["query"] == "<BOS>"


def test_summaries_only_run(page, demo):
    """a run with only previews and statistics: its grid is the previews, a head its preview"""
    rows = _prompts(demo, ONLY_NAME)
    written = _stats(demo, ONLY_NAME, rows[0]["hash"])
    page.goto()
    page.page.click(f"#models tr.row[data-model='{ONLY_NAME}']")
    page.wait_view("prompts")
    page.page.click(f"#prompts tr.row[data-hash='{rows[0]['hash']}'] a")
    page.wait_view("grid")
    assert page.route()["fig"] == "preview"
    assert page.page.eval_on_selector_all("#figure option", "os => os.map(o => o.value)") == ["preview"]
    assert page.page.locator("#grid .cell").count() == ONLY["n_layers"] * ONLY["n_heads"]
    _wait_images(page, "#grid img", PREVIEW_SIZE[ONLY_NAME])
    assert page.page.eval_on_selector_all("#sort option", "os => os.map(o => o.value)") == ["", *written["statistics"]]
    page.page.select_option("#colour", "entropy")
    page.wait_view("grid")
    _wait_images(page, "#grid img", PREVIEW_SIZE[ONLY_NAME])
    page.shot("summaries_only_grid")
    page.page.click("#grid .cell[data-layer='1'][data-head='2']")
    page.wait_view("head")
    img = _shown_image(page)
    assert (img["w"], img["h"]) == (4, 4) and "block averages of the 12 × 12 pattern" in img["readout"]
    row = _by_head(written)[(1, 2)]
    stats = dict(page.page.eval_on_selector_all("#head-stats tr", "rs => rs.map(r => [r.cells[0].textContent, r.cells[1].textContent])"))
    assert list(stats) == ["n_ctx", *written["statistics"]] and stats["n_ctx"] == str(ONLY["n_ctx"])
    for name in written["statistics"]:
        assert stats[name] == "–" if row[name] is None else _close(stats[name], row[name]), (name, stats[name], row[name])
    page.shot("summaries_only_head")
    page.page.keyboard.press("ArrowRight")  # keys move as for any figure (clamped at the last head)
    page.page.keyboard.press("ArrowLeft")
    page.page.wait_for_function("location.hash.includes('layer=1&head=1')")
    page.wait_view("head")


def test_head_hover_keys_and_across(page, demo):
    model = BIG_NAME
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
        if page.tag == "served":  # the weight itself, read from activations.npz by the server
            assert shown["source"] == "npz" and abs(float(shown["value"]) - attn[q, k]) < 1e-6, (q, k, shown)
        else:
            assert "lo" not in shown and "value" not in shown and "pattern-lens serve" in shown["text"]
    page.shot("head")
    if page.tag == "served":
        # a server without the row route (a plain static server): the colour bin, in weights by the
        # head's min and max (head_stats.json), holds the true weight
        no_route = re.compile(r"/_pl/row\?")
        page.page.route(no_route, lambda r: r.fulfill(status=200, content_type="text/html", body="<p>no such route</p>"))
        page.page.reload()  # a fresh page: the rows it read are forgotten
        page.wait_view("head")
        page.page.wait_for_selector("#pattern-canvas")
        for q, k in [(5, 4), (19, 0), (12, 12), (3, 17)]:
            shown = _hover(page, q, k)
            assert shown["source"] == "bin", shown
            lo, hi, wlo, whi = (float(shown[key]) for key in ("lo", "hi", "wlo", "whi"))
            assert lo <= norm[q, k] < hi or (hi == 1.0 and norm[q, k] == 1.0), (q, k, lo, hi, norm[q, k])
            assert hi - lo <= 2 / 256 and shown["source"] == "bin" and "from the colour" in shown["text"]
            assert wlo - 1e-6 <= attn[q, k] <= whi + 1e-6, (q, k, wlo, whi, attn[q, k])
        page.shot("head_bin")
        page.page.unroute(no_route)
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
    _wait_images(page, "#across img", PREVIEW_SIZE[model])  # raw: the heads' previews
    page.shot("across")
    page.page.keyboard.press("ArrowRight")
    page.page.wait_for_function(f"location.hash.includes('head={head + 1}')")
    page.wait_view("across")
    page.page.click(f"#across .cell[data-hash='{rows[2]['hash']}']")
    page.wait_view("head")
    assert page.route()["prompt"] == rows[2]["hash"] and page.route()["head"] == str(head + 1)


def test_head_of_other_formats_and_bos(page, demo):
    model = BOS_NAME
    rows = _prompts(demo, model)
    page.open("head", model=model, prompt=rows[0]['hash'], fig="sqrt_svg", layer=1, head=0)
    page.page.wait_for_selector("#pattern-canvas")
    shown = _hover(page, 0, 0)
    assert shown["query"] == "<BOS>" and shown["key"] == "<BOS>"
    shown = _hover(page, 7, 3)
    assert (shown["query"], shown["key"]) == (rows[0]["tokens"][6], rows[0]["tokens"][2])
    if page.tag == "served":  # any figure: the weight itself comes from activations.npz, not from the colours
        assert shown["source"] == "npz" and "exact" in shown["text"]
    page.shot("head_svg")
    page.page.select_option("#zoom", "32")  # one token = 32 screen pixels, the box scrolls
    page.wait_view("head")
    assert page.route()["zoom"] == "32"
    page.page.wait_for_selector("#pattern-canvas")
    assert round(page.page.locator("#pattern-canvas").bounding_box()["width"]) == 32 * BOS["n_ctx"]
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
    model = BIG_NAME
    rows = _prompts(demo, model)
    page.open("head", model=model, prompt=rows[2]['hash'], fig="sqrt_svg", layer=5, head=2)
    heading = page.page.locator("main h2").first.inner_text()
    assert "layer 5, head 2" in heading and "prompt #2" in heading
    assert page.page.locator("#figure").input_value() == "sqrt_svg"
    page.goto("view=head&model=nope&prompt=x&fig=raw&layer=0&head=0")
    page.page.wait_for_selector("#error")
    assert "no model named" in page.page.locator("#error").inner_text()
