// pattern_lens gallery: plain JavaScript, no library, nothing from the network.
//
// Data comes from scripts that `pattern-lens gallery` generates under pattern_lens_gallery/data/
// (a page opened from disk may not fetch files, but it may load scripts): index.js at start, a
// model's prompts.js when the model is opened, a prompt's statistics when its grid is shown.
// Images load only when on screen (IntersectionObserver). The URL's hash names the view:
//   #view=models | prompts&model=M | grid&model=M&prompt=P&fig=F[&size=S] | head&...&layer=L&head=H[&zoom=Z]
//   | across&model=M&fig=F&layer=L&head=H[&prompt=P] | compare&model=M&prompt=P&fig=F&heads=0.*,3.5[&models=A,B]
"use strict";

const DATA_DIR = "pattern_lens_gallery/data/";
const FILE_MODE = location.protocol === "file:";
const PAGE_ROWS = 200; // prompt rows rendered at once

const state = { index: null, prompts: new Map(), stats: new Map(), renderId: 0, keyHandler: null };

// ------------------------------------------------------------------------------------------------
// small helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const enc = encodeURIComponent;
const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, x));

function shown(token) {
  // whitespace made visible; Ġ / Ċ are byte-level BPE's space and newline
  return String(token).replace(/Ġ/g, "␣").replace(/Ċ/g, "⏎").replace(/\n/g, "⏎").replace(/\t/g, "⇥").replace(/^ /, "␣");
}

function snippet(text, n = 110) {
  const t = String(text ?? "").replace(/\s+/g, " ").trim();
  return t.length > n ? t.slice(0, n - 1) + "…" : t;
}

function hashHref(params) {
  return "#" + new URLSearchParams(params).toString();
}

function go(params) {
  location.hash = hashHref(params);
}

// ------------------------------------------------------------------------------------------------
// data: generated scripts, loaded once each

function loadScriptData(key, src) {
  window.PL_DATA = window.PL_DATA || {};
  if (key in window.PL_DATA) return Promise.resolve(window.PL_DATA[key]);
  return new Promise((resolve, reject) => {
    const script = el("script", { src });
    script.addEventListener("load", () =>
      key in window.PL_DATA ? resolve(window.PL_DATA[key]) : reject(new Error(`${src} did not define ${key}`)));
    script.addEventListener("error", () =>
      reject(new Error(`cannot load ${src}: write the gallery again (pattern-lens gallery DATA)`)));
    document.head.append(script);
  });
}

function model(name) {
  const m = state.index.models.find((x) => x.name === name);
  if (!m) throw new Error(`no model named ${JSON.stringify(name)} in this gallery`);
  return m;
}

async function prompts(modelName) {
  if (!state.prompts.has(modelName)) {
    const rows = await loadScriptData(`prompts/${modelName}`, `${DATA_DIR}${enc(modelName)}/prompts.js`);
    rows.forEach((row, i) => { row._i = i; });
    state.prompts.set(modelName, rows);
  }
  return state.prompts.get(modelName);
}

// the head statistics adapter: see pattern_lens/_view/summaries.py (what is read from head_stats.json)
async function headStats(m, hash) {
  if (!m.stats_prompts || !m.stats_prompts.includes(hash)) return null;
  const key = `stats/${m.name}/${hash}`;
  if (!state.stats.has(key)) {
    state.stats.set(key, await loadScriptData(key, `${DATA_DIR}${enc(m.name)}/stats/${enc(hash)}.js`));
  }
  // {values: {stat: [[value per head] per layer]}, n_ctx: [[pattern side per head] per layer] | null}
  return state.stats.get(key);
}

function headSide(summary, layer, head) {
  // the head's pattern side where its statistics say, else null
  const side = summary && summary.n_ctx ? (summary.n_ctx[layer] || [])[head] : null;
  return typeof side === "number" ? side : null;
}

function figureOf(m, name) {
  return m.figures.find((f) => f.name === name) || m.figures[0];
}

function headDir(m, hash, layer, head) {
  return `${enc(m.name)}/prompts/${enc(hash)}/L${layer}/H${head}/`;
}

function figurePath(m, hash, layer, head, fig) {
  return headDir(m, hash, layer, head) + enc(`${fig.name}.${fig.fmt}`);
}

function isPreview(fig) {
  return fig.name === state.index.names.preview_figure;
}

function figureLabel(fig) {
  return isPreview(fig) ? `${fig.name} (${fig.fmt}, head summaries)` : `${fig.name} (${fig.fmt})`;
}

function canShow(fig) {
  // browsers decompress .svgz only when a server says Content-Encoding: gzip
  return !(FILE_MODE && fig.fmt === "svgz");
}

// ------------------------------------------------------------------------------------------------
// lazy images: a src is set when the image comes near the screen

const lazyObserver = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    const img = entry.target;
    img.src = img.dataset.src;
    lazyObserver.unobserve(img);
  }
}, { rootMargin: "200px" });

function lazyImage(src, alt) {
  const img = el("img", { alt, decoding: "async", dataset: { src } });
  lazyObserver.observe(img);
  return img;
}

function thumb(m, hash, layer, head, fig) {
  // a grid cell's image: the head's preview for the figures it stands for (fig.thumb, see
  // PREVIEW_THUMBNAILS in gallery.py), else the figure; the cell's title names the head
  const full = figurePath(m, hash, layer, head, fig);
  if (!fig.thumb) return canShow(fig) ? lazyImage(full, "") : el("div", { class: "ph", text: "svgz: open through pattern-lens serve" });
  const img = lazyImage(headDir(m, hash, layer, head) + enc(fig.thumb), "");
  // the model's first head had a preview; a head without one (summaries skipped there) shows the figure
  img.addEventListener("error", () => { if (img.dataset.src !== full && canShow(fig)) { img.dataset.src = full; img.src = full; } });
  return img;
}

// ------------------------------------------------------------------------------------------------
// colours for statistics: viridis at 5 stops, interpolated

const STAT_STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

function statColour(t) {
  const x = clamp(t, 0, 1) * (STAT_STOPS.length - 1);
  const i = Math.min(Math.floor(x), STAT_STOPS.length - 2);
  const f = x - i;
  const c = STAT_STOPS[i].map((v, j) => Math.round(v + f * (STAT_STOPS[i + 1][j] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function statRange(values) {
  const flat = values.flat().filter((v) => typeof v === "number");
  return flat.length ? [Math.min(...flat), Math.max(...flat)] : [0, 1];
}

function fmtNum(v) {
  if (typeof v !== "number") return "–";
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v); // a position, a count: no decimals
  return Math.abs(v) >= 1000 || (Math.abs(v) < 0.001 && v !== 0) ? v.toExponential(2) : v.toFixed(3);
}

// ------------------------------------------------------------------------------------------------
// pixels back to values, only where exact: a colour of a known colormap names a bin of 1/256

const decoders = new Map();

function decoder(figName) {
  const spec = state.index.decodable[figName];
  if (!spec) return null;
  if (!decoders.has(figName)) {
    const bins = new Map(); // rgb -> [first index, last index] (neighbouring entries may share a colour)
    spec.lut.forEach(([r, g, b], i) => {
      const key = (r << 16) | (g << 8) | b;
      const bin = bins.get(key);
      if (bin) bin[1] = i; else bins.set(key, [i, i]);
    });
    decoders.set(figName, { spec, bins, n: spec.lut.length });
  }
  return decoders.get(figName);
}

function describeValue(figName, rgb) {
  // -> {text, lo, hi}: lo/hi only when the colour is exactly one of the colormap's colours
  const colour = `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
  const dec = decoder(figName);
  if (!dec) return { text: `colour ${colour} (the gallery does not know this figure's colormap: no value)` };
  const bin = dec.bins.get((rgb[0] << 16) | (rgb[1] << 8) | rgb[2]);
  if (!bin) return { text: `colour ${colour} is not one of ${dec.spec.cmap}'s colours: no value` };
  const lo = bin[0] / dec.n;
  const hi = (bin[1] + 1) / dec.n;
  const what = dec.spec.normalized ? "normalised value (0 = this head's min, 1 = its max)" : "value";
  return { text: `${what} in [${lo.toFixed(4)}, ${hi.toFixed(4)}${bin[1] === dec.n - 1 ? "]" : ")"} — colour bin ${bin[0]} of ${dec.n} in ${dec.spec.cmap}`, lo, hi };
}

async function loadPixels(path, fmt) {
  // -> {bitmap, pixels} from the figure file: the PNG itself or the one an SVG embeds; null if none
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  let blob;
  if (fmt === "png") {
    blob = await response.blob();
  } else if (fmt === "svg" || fmt === "svgz") {
    const text = await response.text(); // the server sends .svgz with Content-Encoding: gzip
    const match = /href="data:image\/png;base64,([A-Za-z0-9+/=]+)"/.exec(text);
    if (!match) return null;
    const bytes = Uint8Array.from(atob(match[1]), (c) => c.charCodeAt(0));
    blob = new Blob([bytes], { type: "image/png" });
  } else {
    return null;
  }
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  return { bitmap, pixels: ctx.getImageData(0, 0, bitmap.width, bitmap.height) };
}

function loadImageElement(path) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot show ${path}`));
    img.src = path;
  });
}

function axisFor(prompt, n) {
  // -> {tokens, named, note}: the n positions of the pattern. The tokens the model saw, as the run
  // recorded them (special tokens included); else the axis the gallery rebuilt for older data (a
  // <BOS> before the prompt's tokens, [CLS] ... [SEP] around them: pattern_lens/_tokens.py); else
  // the prompt's tokens when they fill the side; else numbered positions, and the note says why
  const recorded = prompt.pattern_tokens;
  if (Array.isArray(recorded) && recorded.length === n) {
    return { tokens: recorded.map(String), named: true, note: "tokens as the model saw them, special tokens included (recorded by the run)" };
  }
  if (Array.isArray(prompt.axis) && prompt.axis.length === n) return { tokens: prompt.axis.map(String), named: true, note: prompt.axis_note };
  const tokens = (prompt.tokens || []).map(String);
  if (tokens.length === n) return { tokens, named: true, note: "the prompt's tokens, one per position" };
  const note = prompt.axis_side === n && prompt.axis_note ? prompt.axis_note
    : `cannot place the prompt's ${tokens.length} tokens on a ${n} × ${n} pattern: positions are numbered`;
  return { tokens: Array.from({ length: n }, (_, i) => `#${i}`), named: false, note };
}

function patternSide(prompt, summary, layer, head) {
  // the pattern's side where something says it: the head's statistics, the gallery's axis, the recorded tokens
  const side = headSide(summary, layer, head);
  if (side !== null) return side;
  if (typeof prompt.axis_side === "number") return prompt.axis_side;
  return Array.isArray(prompt.pattern_tokens) ? prompt.pattern_tokens.length : null;
}

function tokenCount(prompt) {
  // "18 positions: 16 tokens + 2 special" where the model's special tokens are known, else "16 tokens"
  const n = prompt.n_tokens ?? (prompt.tokens || []).length;
  const p = positionsOf(prompt);
  return p !== n ? `${p} positions: ${n} tokens + ${p - n} special` : `${n} tokens`;
}

function positionsOf(prompt) {
  // positions of the prompt's patterns (special tokens included) where known, else its token count
  if (Array.isArray(prompt.pattern_tokens)) return prompt.pattern_tokens.length;
  if (typeof prompt.axis_side === "number") return prompt.axis_side;
  return prompt.n_tokens ?? (prompt.tokens || []).length;
}

// ------------------------------------------------------------------------------------------------
// values under the cursor: the exact weight from the server (one row of one head of
// activations.npz, GET /_pl/row), else the colour bin turned into weights by the head's min and max

const ROW_API = "_pl/row";
const rowState = { api: !FILE_MODE, rows: new Map(), missing: new Set() };

function fetchRow(m, hash, layer, head, q) {
  // -> Promise of {values} | {reason} | null (no server route: a plain static server)
  const key = `${m.name}|${hash}|${layer}|${head}|${q}`;
  if (!rowState.rows.has(key)) {
    const url = `${ROW_API}?${new URLSearchParams({ model: m.name, prompt: hash, layer, head, row: q })}`;
    rowState.rows.set(key, fetch(url).then(async (r) => {
      if (!(r.headers.get("content-type") || "").includes("json")) { rowState.api = false; return null; }
      const body = await r.json();
      if (!r.ok || !Array.isArray(body.values)) { rowState.missing.add(`${m.name}|${hash}`); return { reason: body.reason || body.error || `HTTP ${r.status}` }; }
      return body;
    }).catch(() => { rowState.api = false; return null; }));
  }
  return rowState.rows.get(key);
}

function headRange(summary, layer, head) {
  // [min, max] of the head's weights where its statistics record them (head_stats.json's min, max)
  const lo = summary && summary.min ? (summary.min[layer] || [])[head] : null;
  const hi = summary && summary.max ? (summary.max[layer] || [])[head] : null;
  return typeof lo === "number" && typeof hi === "number" ? [lo, hi] : null;
}

function fmtWeight(v) {
  if (typeof v !== "number") return "–";
  return v !== 0 && Math.abs(v) < 1e-4 ? v.toExponential(4) : v.toFixed(6);
}

function binToWeights(value, range) {
  // a normalised bin [lo, hi) of a min-max normalised figure -> the weights it stands for
  if (value.lo === undefined || !range) return value;
  const [mn, mx] = range;
  const wlo = mn + value.lo * (mx - mn);
  const whi = mn + value.hi * (mx - mn);
  return {
    ...value, wlo, whi, source: "bin",
    text: `attention weight in [${fmtWeight(wlo)}, ${fmtWeight(whi)}] — from the colour (${value.text}; this head's weights run from ${fmtWeight(mn)} to ${fmtWeight(mx)})`,
  };
}

// ------------------------------------------------------------------------------------------------
// views

function crumbs(parts) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren();
  parts.forEach(([label, href], i) => {
    if (i) nav.append(el("span", { class: "sep", text: "›" }));
    nav.append(href ? el("a", { href, text: label }) : el("span", { text: label }));
  });
}

function keysHelp(text) {
  document.getElementById("keys").textContent = text;
}

function figureSelect(m, current, onchange) {
  const select = el("select", { id: "figure", onchange: (e) => onchange(e.target.value) });
  for (const f of m.figures) select.append(el("option", { value: f.name, selected: f.name === current, text: figureLabel(f) }));
  return el("label", {}, "figure ", select);
}

function viewModels(main) {
  crumbs([["models", null]]);
  keysHelp("");
  const idx = state.index;
  main.append(el("h2", { text: `Models (${idx.models.length})` }));
  if (!idx.models.length) main.append(el("p", { class: "note", text: "no model found in this folder (a model folder holds model_cfg.json)" }));
  const table = el("table", { id: "models" }, el("tr", {}, ["model", "layers × heads", "n_ctx", "prompts", "figures"].map((t) => el("th", { text: t }))));
  for (const m of idx.models) {
    const href = hashHref({ view: "prompts", model: m.name });
    table.append(el("tr", { class: "row", dataset: { model: m.name }, onclick: () => { location.hash = href; } },
      el("td", {}, el("a", { href, text: m.model_name })),
      el("td", { text: `${m.n_layers} × ${m.n_heads}` }),
      el("td", { text: m.n_ctx ?? "" }),
      el("td", { text: m.n_prompts }),
      el("td", { class: "mono", text: m.figures.map((f) => `${f.name}.${f.fmt}`).join(", ") || "none rendered yet" })));
  }
  main.append(table);
  main.append(el("h2", { text: `Figure functions (${idx.figures.length})` }));
  const ftable = el("table", { id: "figures" }, el("tr", {}, ["figure", "format", "description", "source"].map((t) => el("th", { text: t }))));
  for (const f of idx.figures) {
    ftable.append(el("tr", { dataset: { figure: f.name } },
      el("td", { class: "mono" }, f.name, isPreview(f) ? el("div", { class: "note tag", text: "the head summaries' preview" }) : null),
      el("td", { text: f.figure_save_fmt ?? "" }),
      el("td", {}, snippet(f.doc ?? "", 160), f.code ? el("details", {}, el("summary", { text: "code" }), el("pre", { class: "mono", text: f.code })) : null),
      el("td", { class: "mono", text: f.source ? f.source.split("/").slice(-2).join("/") : "" })));
  }
  main.append(ftable);
}

function promptFilter(route) {
  const q = (route.q || "").toLowerCase();
  const lo = route.min ? Number(route.min) : -Infinity;
  const hi = route.max ? Number(route.max) : Infinity;
  const meta = (route.meta || "").trim();
  const [metaKey, metaValue] = meta.includes("=") ? meta.split(/=(.*)/s, 2).map((s) => s.trim()) : [null, meta.toLowerCase()];
  return (p) => {
    const n = p.n_tokens ?? (p.tokens ? p.tokens.length : 0);
    if (n < lo || n > hi) return false;
    if (q && !String(p.text ?? "").toLowerCase().includes(q)) return false;
    if (meta) {
      const m = p.meta || {};
      if (metaKey !== null) return String(m[metaKey] ?? "") === metaValue;
      return JSON.stringify(m).toLowerCase().includes(metaValue);
    }
    return true;
  };
}

async function viewPrompts(main, route, rid) {
  const m = model(route.model);
  crumbs([["models", "#"], [m.model_name, null]]);
  keysHelp("");
  const rows = await prompts(m.name);
  if (rid !== state.renderId) return;
  const fig = figureOf(m, route.fig);
  main.append(el("h2", { text: `${m.model_name}: prompts` }));
  const params = { ...route };
  const count = el("span", { id: "count", class: "note" });
  const table = el("table", { id: "prompts" });
  const more = el("button", { id: "more", text: "show more" });
  let limit = PAGE_ROWS;
  const update = () => {
    history.replaceState(null, "", hashHref(Object.fromEntries(Object.entries(params).filter(([, v]) => v !== ""))));
    const keep = rows.filter(promptFilter(params));
    count.textContent = `${keep.length} of ${rows.length} prompts`;
    table.replaceChildren(el("tr", {}, ["#", "tokens", "text", "meta", "hash"].map((t) => el("th", { text: t }))));
    for (const p of keep.slice(0, limit)) {
      const href = hashHref({ view: "grid", model: m.name, prompt: p.hash, fig: params.fig || (fig ? fig.name : "") });
      table.append(el("tr", { class: "row", dataset: { hash: p.hash }, onclick: () => { location.hash = href; } },
        el("td", { text: p._i }),
        el("td", { text: p.n_tokens ?? (p.tokens || []).length }),
        el("td", { class: "text" }, el("a", { href, text: snippet(p.text) || "(no text)" })),
        el("td", { class: "mono", text: p.meta ? snippet(JSON.stringify(p.meta), 60) : "" }),
        el("td", { class: "mono", text: p.hash })));
    }
    more.hidden = keep.length <= limit;
  };
  const input = (key, attrs) => el("input", { ...attrs, id: `f-${key}`, value: params[key] || "", oninput: (e) => { params[key] = e.target.value; limit = PAGE_ROWS; update(); } });
  main.append(el("div", { class: "controls" },
    el("label", {}, "text ", input("q", { type: "search", placeholder: "search in the prompts' text" })),
    el("label", {}, "tokens ", input("min", { type: "number", min: 0, placeholder: "min" }), " – ", input("max", { type: "number", min: 0, placeholder: "max" })),
    el("label", {}, "meta ", input("meta", { type: "search", placeholder: "key=value or any text" })),
    m.figures.length ? figureSelect(m, fig && fig.name, (v) => { params.fig = v; update(); }) : el("span", { class: "note", text: "no figures rendered yet" }),
    count));
  more.addEventListener("click", () => { limit += PAGE_ROWS; update(); });
  main.append(table, more);
  update();
}

function promptNeighbour(rows, hash, step) {
  const i = rows.findIndex((p) => p.hash === hash);
  if (i < 0) return null;
  return rows[clamp(i + step, 0, rows.length - 1)];
}

async function target(route, withPrompt = true) {
  // what a route names: model, its prompts, the prompt, the figure, layer and head (clamped)
  const m = model(route.model);
  const rows = await prompts(m.name);
  const prompt = withPrompt ? rows.find((p) => p.hash === route.prompt) : null;
  if (withPrompt && !prompt) throw new Error(`prompt ${route.prompt} not found in ${m.name}`);
  const fig = figureOf(m, route.fig);
  if (!fig) throw new Error(`no figures rendered for ${m.name} yet`);
  const layer = clamp(Number(route.layer) || 0, 0, m.n_layers - 1);
  const head = clamp(Number(route.head) || 0, 0, m.n_heads - 1);
  return { m, rows, prompt, fig, layer, head };
}

async function viewGrid(main, route, rid) {
  const { m, rows, prompt, fig } = await target(route);
  const summary = await headStats(m, prompt.hash);
  const stats = summary ? summary.values : null;
  if (rid !== state.renderId) return;
  crumbs([["models", "#"], [m.model_name, hashHref({ view: "prompts", model: m.name })], [`prompt #${prompt._i}`, null]]);
  keysHelp("keys: [ and ] previous / next prompt");
  const base = { view: "grid", model: m.name, fig: fig.name };
  const nav = (step) => { const p = promptNeighbour(rows, prompt.hash, step); if (p && p.hash !== prompt.hash) go({ ...route, prompt: p.hash }); };
  state.keyHandler = (e) => {
    if (e.key === "]" || e.key === "PageDown") nav(1);
    else if (e.key === "[" || e.key === "PageUp") nav(-1);
    else return false;
    return true;
  };
  main.append(el("h2", {}, `prompt #${prompt._i} `, el("span", { class: "note", text: `(${tokenCount(prompt)}) ${snippet(prompt.text, 160)}` })));
  const controls = el("div", { class: "controls" },
    el("button", { id: "prev-prompt", onclick: () => nav(-1), text: "◀ prompt" }),
    el("button", { id: "next-prompt", onclick: () => nav(1), text: "prompt ▶" }),
    figureSelect(m, fig.name, (v) => go({ ...route, fig: v })),
    el("a", { id: "compare-link", href: hashHref({ view: "compare", model: m.name, prompt: prompt.hash, fig: fig.name, heads: "0.*" }), text: "this prompt across models" }));
  // own keys only: a URL naming "toString" or "constructor" is no statistic
  let sortBy = stats && Object.hasOwn(stats, route.sort || "") ? route.sort : "";
  let colourBy = stats && Object.hasOwn(stats, route.colour || "") ? route.colour : "";
  if (stats) {
    const names = Object.keys(stats);
    const pick = (id, label, current, key) => {
      const select = el("select", { id, onchange: (e) => go({ ...route, [key]: e.target.value }) }, el("option", { value: "", text: "—" }));
      for (const n of names) select.append(el("option", { value: n, selected: n === current, text: n }));
      return el("label", {}, label, select);
    };
    controls.append(pick("sort", "sort heads by ", sortBy, "sort"), pick("colour", "colour by ", colourBy, "colour"));
  } else {
    controls.append(el("span", { class: "note", text: "no head statistics for this prompt" }));
  }
  main.append(controls);
  controls.append(sizeSelect(route));
  const { cell: cellSize, compact, gap, border } = gridCell(m.n_heads, route.size);
  const grid = el("div", {
    class: `grid heads${compact ? " compact" : ""}`, id: "grid",
    dataset: { cell: cellSize },
    style: `grid-template-columns: ${ROW_LABEL_PX}px repeat(${m.n_heads}, ${cellSize + 2 * border}px); gap: ${gap}px; --cell: ${cellSize}px; --border: ${border}px; --sticky-top: ${stickyTop()}px`,
  });
  const [cLo, cHi] = colourBy ? statRange(stats[colourBy]) : [0, 1];
  // sticky head labels along the top (the rank when a row is sorted), layer labels along the left
  const every = Math.max(1, Math.ceil(18 / (cellSize + 2 * border + gap)));
  grid.append(el("div", { class: "colhead corner", text: sortBy ? "rank" : "head" }));
  for (let h = 0; h < m.n_heads; h++) grid.append(el("div", { class: "colhead", text: h % every ? "" : String(h) }));
  for (let layer = 0; layer < m.n_layers; layer++) {
    grid.append(el("div", { class: "rowlabel", text: `L${layer}` }));
    let heads = Array.from({ length: m.n_heads }, (_, h) => h);
    if (sortBy) {
      const v = stats[sortBy][layer] || [];
      heads.sort((a, b) => (v[b] ?? -Infinity) - (v[a] ?? -Infinity));
    }
    for (const head of heads) {
      const cell = el("a", {
        class: "cell", href: hashHref({ ...base, view: "head", prompt: prompt.hash, layer, head }),
        dataset: { layer, head }, title: `layer ${layer}, head ${head}`,
      }, thumb(m, prompt.hash, layer, head, fig));
      if (colourBy) {
        // the statistic beside the image, never over it: a coloured border and a caption under it
        // (compact cells: a coloured strip, the number in the cell's title)
        const v = (stats[colourBy][layer] || [])[head];
        const colour = typeof v === "number" ? statColour((v - cLo) / (cHi - cLo || 1)) : "";
        if (colour) cell.style.borderColor = colour;
        cell.append(el("span", { class: "stat", text: fmtNum(v), style: compact && colour ? `background: ${colour}` : "" }));
        cell.title += `, ${colourBy} ${fmtNum(v)}`;
      }
      grid.append(cell);
    }
  }
  if (colourBy) {
    const bar = el("canvas", { class: "bar", width: 120, height: 10 });
    const ctx = bar.getContext("2d");
    for (let x = 0; x < 120; x++) { ctx.fillStyle = statColour(x / 119); ctx.fillRect(x, 0, 1, 10); }
    controls.append(el("span", { class: "legend" }, fmtNum(cLo), bar, fmtNum(cHi)));
  }
  main.append(grid);
}

const GRID_SIZES = [12, 16, 24, 32, 48, 64, 96, 128]; // screen pixels per thumbnail, besides "fit"
const ROW_LABEL_PX = 34;

function sizeSelect(route) {
  const select = el("select", { id: "size", onchange: (e) => go({ ...route, size: e.target.value }) }, el("option", { value: "", text: "fit the window" }));
  for (const z of GRID_SIZES) select.append(el("option", { value: z, selected: String(z) === route.size, text: `${z} px` }));
  return el("label", {}, "thumbnails ", select);
}

function stickyTop() {
  const header = document.querySelector("header");
  return header ? header.offsetHeight : 0;
}

function gridCell(nHeads, size) {
  // -> {cell, compact, gap, border}: thumbnails that fit the window's width ("fit"), or the size
  // asked for (then the grid scrolls); compact cells (under 56 px) get thin borders and gaps
  const main = document.getElementById("main");
  const style = getComputedStyle(main);
  const avail = main.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - ROW_LABEL_PX - 18; // 16: the page's scrollbar, once the grid makes it scroll
  const layout = (cell) => (cell < 56 ? { cell, compact: true, gap: 2, border: 1 } : { cell, compact: false, gap: 4, border: 2 });
  if (GRID_SIZES.includes(Number(size))) return layout(Number(size));
  for (const trial of [layout(56), layout(8)]) {
    const cell = Math.floor((avail - trial.gap) / nHeads) - trial.gap - 2 * trial.border;
    if (cell >= 56 || trial.compact) return layout(clamp(cell, 4, 128));
  }
  return layout(56);
}

async function viewHead(main, route, rid) {
  const { m, rows, prompt, fig, layer, head } = await target(route);
  const summary = await headStats(m, prompt.hash);
  const stats = summary ? summary.values : null;
  if (rid !== state.renderId) return;
  const gridHref = hashHref({ view: "grid", model: m.name, prompt: prompt.hash, fig: fig.name });
  const acrossHref = hashHref({ view: "across", model: m.name, fig: fig.name, layer, head, prompt: prompt.hash });
  const compareHref = hashHref({ view: "compare", model: m.name, prompt: prompt.hash, fig: fig.name, heads: `${layer}.${head}` });
  crumbs([["models", "#"], [m.model_name, hashHref({ view: "prompts", model: m.name })], [`prompt #${prompt._i}`, gridHref], [`L${layer} H${head}`, null]]);
  keysHelp("keys: ← → head, ↑ ↓ layer, [ ] previous / next prompt, a same head across prompts, Esc all heads");
  const move = (dl, dh, dp) => {
    const p = dp ? promptNeighbour(rows, prompt.hash, dp) : prompt;
    const next = { ...route, layer: clamp(layer + dl, 0, m.n_layers - 1), head: clamp(head + dh, 0, m.n_heads - 1), prompt: p.hash };
    if (next.layer !== layer || next.head !== head || next.prompt !== prompt.hash) go(next);
  };
  state.keyHandler = (e) => {
    const k = e.key;
    if (k === "ArrowLeft") move(0, -1, 0);
    else if (k === "ArrowRight") move(0, 1, 0);
    else if (k === "ArrowUp") move(-1, 0, 0);
    else if (k === "ArrowDown") move(1, 0, 0);
    else if (k === "[" || k === "PageUp") move(0, 0, -1);
    else if (k === "]" || k === "PageDown") move(0, 0, 1);
    else if (k === "a") location.hash = acrossHref;
    else if (k === "Escape") location.hash = gridHref;
    else return false;
    return true;
  };
  main.append(el("h2", {}, `layer ${layer}, head ${head} `, el("span", { class: "note", text: `prompt #${prompt._i}: ${snippet(prompt.text, 120)}` })));
  main.append(el("div", { class: "controls" },
    el("button", { onclick: () => move(0, -1, 0), text: "◀ head" }), el("button", { onclick: () => move(0, 1, 0), text: "head ▶" }),
    el("button", { onclick: () => move(-1, 0, 0), text: "▲ layer" }), el("button", { onclick: () => move(1, 0, 0), text: "layer ▼" }),
    el("button", { onclick: () => move(0, 0, -1), text: "◀ prompt" }), el("button", { onclick: () => move(0, 0, 1), text: "prompt ▶" }),
    figureSelect(m, fig.name, (v) => go({ ...route, fig: v })),
    zoomSelect(route),
    el("a", { id: "across-link", href: acrossHref, text: "this head across prompts" }),
    el("a", { id: "compare-link", href: compareHref, text: "this prompt across models" }),
    el("a", { href: gridHref, text: "all heads of this prompt" })));
  const box = el("div", { class: "patternbox", id: "pattern" });
  const readout = el("div", { id: "readout" }, el("span", { class: "note", text: "hover the pattern: query (row), key (column) and value" }));
  const tokensBox = el("div", { class: "tokens", id: "tokens" });
  const side = el("div", { class: "side" }, readout, el("h2", { text: "tokens" }), tokensBox);
  if (stats) {
    const table = el("table", { class: "stats", id: "head-stats" });
    const n = headSide(summary, layer, head);
    if (n !== null) table.append(el("tr", { class: "note" }, el("td", { text: "n_ctx" }), el("td", { class: "mono", text: n })));
    for (const [name, values] of Object.entries(stats)) table.append(el("tr", { dataset: { stat: name } }, el("td", { text: name }), el("td", { class: "mono", text: fmtNum((values[layer] || [])[head]) })));
    side.append(el("h2", { text: "head statistics" }), table);
  }
  main.append(el("div", { class: "headview" }, box, side));

  const path = figurePath(m, prompt.hash, layer, head, fig);
  if (!canShow(fig)) {
    box.append(el("p", { class: "note", style: "padding:1em", text: `${fig.name}.svgz: browsers show .svgz files only from a server; run pattern-lens serve on this folder` }));
    return;
  }
  let source = null; // an ImageBitmap or <img> to draw, and pixels where readable
  let pixels = null;
  let whyNoValue = "";
  if (FILE_MODE) {
    source = await loadImageElement(path);
    whyNoValue = "no value: browsers do not let a page read image pixels from file:// — open the folder with pattern-lens serve to read values";
  } else {
    const loaded = await loadPixels(path, fig.fmt);
    if (loaded) { source = loaded.bitmap; pixels = loaded.pixels; } else {
      source = await loadImageElement(path);
      whyNoValue = "no value: this figure holds no pixel matrix";
    }
  }
  if (rid !== state.renderId) return;
  const w = source.naturalWidth || source.width;
  const hgt = source.naturalHeight || source.height;
  const patSide = patternSide(prompt, summary, layer, head);
  if (!onePixelPerToken(w, hgt, prompt, patSide)) {
    showImage(box, readout, path, fig, w, hgt, patSide);
    const axis = axisFor(prompt, patSide ?? positionsOf(prompt));
    tokensBox.replaceChildren(...axis.tokens.map((t, i) => el("span", { title: `#${i}`, text: shown(t) })));
    return;
  }
  const range = headRange(summary, layer, head);
  const valueOf = async (q, k) => {
    // the exact weight where the server can read it, else what the pixel's colour proves
    if (rowState.api && !rowState.missing.has(`${m.name}|${prompt.hash}`)) {
      const row = await fetchRow(m, prompt.hash, layer, head, q);
      if (row && Array.isArray(row.values) && row.values.length === w) {
        const v = row.values[k];
        return { value: v, source: "npz", text: `attention weight ${fmtWeight(v)} — exact, read from activations.npz (${row.dtype})` };
      }
    }
    if (!pixels) return { text: whyNoValue + (range ? ` (this head's weights run from ${fmtWeight(range[0])} to ${fmtWeight(range[1])}: see the scale)` : ""), source: "none" };
    const o = (q * pixels.width + k) * 4;
    const bin = describeValue(fig.name, [pixels.data[o], pixels.data[o + 1], pixels.data[o + 2]]);
    if (bin.lo === undefined) return { ...bin, source: "none" };
    if (range && state.index.decodable[fig.name] && state.index.decodable[fig.name].normalized) return binToWeights(bin, range);
    return { ...bin, source: "normalised" };
  };
  const axis = axisFor(prompt, w);
  drawPattern(box, readout, tokensBox, source, axis, valueOf, route.zoom);
  if (range && state.index.decodable[fig.name]) readout.after(scaleBar(fig.name, range));
}

function scaleBar(figName, [mn, mx]) {
  // the figure's colour scale in weights (a min-max normalised colormap: 0 = the head's min, 1 = its max)
  const lut = state.index.decodable[figName].lut;
  const bar = el("canvas", { class: "bar", width: 256, height: 10 });
  const ctx = bar.getContext("2d");
  lut.forEach(([r, g, b], i) => { ctx.fillStyle = `rgb(${r},${g},${b})`; ctx.fillRect(i, 0, 1, 10); });
  return el("div", { class: "legend scale", id: "scale" }, "weights ", el("span", { class: "mono", text: fmtWeight(mn) }), bar, el("span", { class: "mono", text: fmtWeight(mx) }));
}

function onePixelPerToken(w, h, prompt, side) {
  // a square image the side of the pattern: the side from the head statistics or the token axis
  // where known (a preview of a <BOS> + n token head may be n pixels wide and still be block
  // averages), else the prompt's tokens, with or without a <BOS>
  if (w !== h) return false;
  if (side !== null) return w === side;
  const n = (prompt.tokens || []).length;
  return w === n || w === n + 1;
}

const SMALL_IMAGE = 256; // images narrower than this are magnified in the head view

function patternRoom(margin) {
  // screen pixels the head view has for a pattern (beside the readout, under the controls)
  return clamp(Math.min(window.innerWidth - 420, window.innerHeight - 160) - margin, 160, 900);
}

function showImage(box, readout, path, fig, w, h, side) {
  // not one pixel per (query, key): a plot or a downsampled preview, shown without token axes; a
  // small one magnified by a whole factor to fill the room, pixelated, so each pixel stays a square
  const scale = w < SMALL_IMAGE ? Math.max(1, Math.floor(patternRoom(0) / Math.max(w, h))) : 1;
  const style = scale > 1 ? `width: ${w * scale}px; height: ${h * scale}px; image-rendering: pixelated` : "max-width: 900px";
  box.append(el("img", { src: path, alt: fig.name, style, dataset: { scale } }));
  const what = isPreview(fig)
    ? `the head summaries' preview: ${w} × ${h} block averages of the ${side !== null ? `${side} × ${side} ` : ""}pattern (min-max normalised, shown ${scale}×)`
    : `this figure is ${w} × ${h} pixels`;
  readout.replaceChildren(el("span", { class: "note", text: `${what}, not one pixel per token pair: no token axes` }));
}

const ZOOMS = [1, 2, 4, 8, 16, 32]; // screen pixels per token, besides "fit"
const LABEL_PX = 13; // screen pixels a token label needs along its axis
const LABEL_MARGIN = 96; // screen pixels the labels take beside the pattern

function zoomSelect(route) {
  const select = el("select", { id: "zoom", onchange: (e) => go({ ...route, zoom: e.target.value }) }, el("option", { value: "", text: "fit" }));
  for (const z of ZOOMS) select.append(el("option", { value: z, selected: String(z) === route.zoom, text: `${z} px / token` }));
  return el("label", {}, "zoom ", select);
}

function labelStep(cell) {
  // every how many tokens a label fits: 1 when a token has LABEL_PX screen pixels, else 2, 5, 10, 20, 50, ...
  if (cell >= LABEL_PX) return 1;
  for (let base = 1; ; base *= 10) {
    for (const f of [2, 5, 10]) if (f * base * cell >= LABEL_PX) return f * base;
  }
}

function drawPattern(box, readout, tokensBox, source, axis, valueOf, zoom) {
  // the pattern on a canvas of one pixel per token pair, magnified by CSS (so a long prompt at a
  // high zoom costs no giant canvas); token labels as elements along both axes, thinned out to one
  // every `step` tokens when a token has fewer than LABEL_PX screen pixels (zoom in to see all);
  // the hovered query and key always named, on the axes and in the readout
  const tokens = axis.tokens;
  const n = tokens.length;
  const margin = LABEL_MARGIN;
  const avail = patternRoom(margin);
  // fit: whole screen pixels per token where they fit, else scaled down (then zoom in, and scroll)
  const cell = ZOOMS.includes(Number(zoom)) ? Number(zoom) : n >= avail ? avail / n : Math.max(1, Math.floor(avail / n));
  const size = cell * n;
  const step = labelStep(cell);
  // fewer than one screen pixel per token: a filtered downscale, since nearest-neighbour would drop
  // whole rows and columns (a previous-token diagonal vanishes); else the pixels themselves, magnified sharp
  const px = cell < 1 ? Math.max(1, Math.round(size)) : n;
  const canvas = el("canvas", {
    id: "pattern-canvas", width: px, height: px,
    style: `width: ${size}px; height: ${size}px; image-rendering: ${cell >= 1 ? "pixelated" : "auto"}`,
    dataset: { margin: 0, cell, n, step },
  });
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = cell < 1;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, 0, 0, px, px);
  // a 2 x 2 grid in the scrolling box: the label strips stick to its top and left edges, so a
  // zoomed-in pattern scrolled anywhere still has its tokens beside it
  const area = el("div", { class: "pattern-area", style: `width: ${margin + size}px; grid-template-columns: ${margin}px ${size}px; grid-template-rows: ${margin}px ${size}px` });
  const cut = (t) => { const s = shown(t); return s.length > 12 ? s.slice(0, 11) + "…" : s; };
  const rows = el("div", { class: "ylabels", id: "ylabels" });
  const cols = el("div", { class: "xlabels", id: "xlabels" });
  const lh = Math.min(LABEL_PX, Math.max(cell * step, 1));
  const at = (i, h) => clamp((i + 0.5) * cell - h / 2, 0, Math.max(0, size - h)); // inside the strip, never cut at its ends
  for (let i = 0; i < n; i += step) {
    rows.append(el("div", { class: "tl", style: `top: ${at(i, lh)}px; height: ${lh}px; line-height: ${lh}px`, text: cut(tokens[i]), title: `#${i} ${tokens[i]}` }));
    cols.append(el("div", { class: "tl", style: `left: ${at(i, lh)}px; width: ${lh}px; line-height: ${lh}px`, text: cut(tokens[i]), title: `#${i} ${tokens[i]}` }));
  }
  const qmark = el("div", { class: "tl mark q", hidden: true });
  const kmark = el("div", { class: "tl mark k", hidden: true });
  rows.append(qmark);
  cols.append(kmark);
  const rowBand = el("div", { class: "band q", hidden: true, style: `left: 0; width: ${size}px; height: ${Math.max(cell, 1)}px` });
  const colBand = el("div", { class: "band k", hidden: true, style: `top: 0; height: ${size}px; width: ${Math.max(cell, 1)}px` });
  const corner = el("div", { class: "corner note", text: step > 1 ? `every ${step}${step === 2 ? "nd" : "th"} token named: zoom in for all` : "key →  query ↓" });
  area.append(corner, cols, rows, el("div", { class: "plot" }, canvas, rowBand, colBand));
  box.append(area);
  tokensBox.before(el("p", { class: "note axisnote", id: "axis-note", text: `axes: ${axis.note}` }));
  // the tokens, each a span, to show the hovered pair in context
  const spans = n <= 4096 ? tokens.map((t, i) => el("span", { title: `#${i}`, text: shown(t) })) : [];
  tokensBox.replaceChildren(...(spans.length ? spans : [el("span", { class: "note", text: `${n} tokens` })]));
  let last = null;
  canvas.addEventListener("mousemove", async (e) => {
    const r = canvas.getBoundingClientRect();
    const k = Math.floor(((e.clientX - r.left) / r.width) * n);
    const q = Math.floor(((e.clientY - r.top) / r.height) * n);
    if (k < 0 || q < 0 || k >= n || q >= n) return;
    if (last && last[0] === q && last[1] === k) return;
    if (last) { spans[last[0]]?.classList.remove("q"); spans[last[1]]?.classList.remove("k"); }
    last = [q, k];
    rowBand.hidden = colBand.hidden = qmark.hidden = kmark.hidden = false;
    rowBand.style.top = `${q * cell}px`;
    colBand.style.left = `${k * cell}px`;
    const markH = LABEL_PX;
    qmark.textContent = `${cut(tokens[q])}`; qmark.style.cssText = `top: ${at(q, markH)}px; height: ${markH}px; line-height: ${markH}px`;
    kmark.textContent = `${cut(tokens[k])}`; kmark.style.cssText = `left: ${at(k, markH)}px; width: ${markH}px; line-height: ${markH}px`;
    spans[q]?.classList.add("q");
    spans[k]?.classList.add("k");
    const pair = el("div", {}, "query ", el("span", { class: "q", text: `#${q} ${shown(tokens[q])}` }), "  attends to  key ", el("span", { class: "k", text: `#${k} ${shown(tokens[k])}` }));
    readout.replaceChildren(pair, el("div", { class: "value note", text: "…" }));
    const value = await valueOf(q, k);
    if (!last || last[0] !== q || last[1] !== k) return; // the cursor moved on meanwhile
    const d = readout.dataset;
    for (const key of ["lo", "hi", "value", "wlo", "whi"]) delete d[key];
    Object.assign(d, { q, k, query: tokens[q], key: tokens[k], source: value.source });
    for (const key of ["lo", "hi", "value", "wlo", "whi"]) if (typeof value[key] === "number") d[key] = value[key];
    readout.replaceChildren(pair, el("div", { class: "value", text: value.text }));
  });
}

async function viewAcross(main, route, rid) {
  const { m, rows, fig, layer, head } = await target(route, false);
  if (rid !== state.renderId) return;
  crumbs([["models", "#"], [m.model_name, hashHref({ view: "prompts", model: m.name })], [`L${layer} H${head} across prompts`, null]]);
  keysHelp("keys: ← → head, ↑ ↓ layer, Esc back to the head (or the prompts)");
  const back = route.prompt && rows.some((p) => p.hash === route.prompt)
    ? hashHref({ view: "head", model: m.name, prompt: route.prompt, fig: fig.name, layer, head })
    : hashHref({ view: "prompts", model: m.name });
  const move = (dl, dh) => {
    const next = { ...route, layer: clamp(layer + dl, 0, m.n_layers - 1), head: clamp(head + dh, 0, m.n_heads - 1) };
    if (next.layer !== layer || next.head !== head) go(next);
  };
  state.keyHandler = (e) => {
    if (e.key === "ArrowLeft") move(0, -1); else if (e.key === "ArrowRight") move(0, 1);
    else if (e.key === "ArrowUp") move(-1, 0); else if (e.key === "ArrowDown") move(1, 0);
    else if (e.key === "Escape") location.hash = back;
    else return false;
    return true;
  };
  main.append(el("h2", { text: `layer ${layer}, head ${head} in all ${rows.length} prompts` }));
  main.append(el("div", { class: "controls" },
    el("button", { onclick: () => move(0, -1), text: "◀ head" }), el("button", { onclick: () => move(0, 1), text: "head ▶" }),
    el("button", { onclick: () => move(-1, 0), text: "▲ layer" }), el("button", { onclick: () => move(1, 0), text: "layer ▼" }),
    figureSelect(m, fig.name, (v) => go({ ...route, fig: v }))));
  const cellSize = 96;
  const grid = el("div", { class: "grid across", id: "across", style: `grid-template-columns: repeat(auto-fill, ${Math.round(cellSize * 1.6) + 4}px); --cell: ${cellSize}px;` });
  for (const p of rows) {
    grid.append(el("a", {
      class: "cell", dataset: { hash: p.hash }, title: snippet(p.text, 300),
      href: hashHref({ view: "head", model: m.name, prompt: p.hash, fig: fig.name, layer, head }),
    }, thumb(m, p.hash, layer, head, fig), el("span", { class: "lab", text: `#${p._i}` }), el("div", { class: "cap", text: snippet(p.text, 60) })));
  }
  main.append(grid);
}

// ------------------------------------------------------------------------------------------------
// one prompt text across every model that has it: rows of models, columns of chosen heads

function parseHeads(spec, nLayers, nHeads) {
  // "0.*, 3.5, *.2" -> [[layer, head], ...] within the model's size, in the order given, no repeats
  const out = [];
  const seen = new Set();
  for (const part of String(spec || "").split(/[\s,;]+/).filter(Boolean)) {
    const match = /^(\*|\d+)\.(\*|\d+)$/.exec(part);
    if (!match) continue;
    const layers = match[1] === "*" ? [...Array(nLayers).keys()] : [Number(match[1])];
    const heads = match[2] === "*" ? [...Array(nHeads).keys()] : [Number(match[2])];
    for (const l of layers) for (const h of heads) {
      if (l >= nLayers || h >= nHeads || seen.has(`${l}.${h}`)) continue;
      seen.add(`${l}.${h}`);
      out.push([l, h]);
    }
  }
  return out;
}

async function viewCompare(main, route, rid) {
  const { m, prompt, fig } = await target(route);
  const found = []; // {m, p}: the models holding this very text, in the index's order
  for (const other of state.index.models) {
    if (!other.figures.length) continue;
    const p = (await prompts(other.name)).find((r) => r.text === prompt.text);
    if (p) found.push({ m: other, p });
  }
  if (rid !== state.renderId) return;
  crumbs([["models", "#"], [m.model_name, hashHref({ view: "prompts", model: m.name })], [`prompt #${prompt._i}`, hashHref({ view: "grid", model: m.name, prompt: prompt.hash, fig: fig.name })], ["across models", null]]);
  keysHelp("Esc back to the prompt's heads");
  const gridHref = hashHref({ view: "grid", model: m.name, prompt: prompt.hash, fig: fig.name });
  state.keyHandler = (e) => { if (e.key !== "Escape") return false; location.hash = gridHref; return true; };
  const wanted = route.models ? route.models.split(",") : found.map((x) => x.m.name);
  const shownModels = found.filter((x) => wanted.includes(x.m.name));
  const spec = route.heads || "0.*";
  const maxLayers = Math.max(...found.map((x) => x.m.n_layers));
  const maxHeads = Math.max(...found.map((x) => x.m.n_heads));
  const columns = parseHeads(spec, maxLayers, maxHeads);
  main.append(el("h2", {}, `one prompt across ${found.length} model${found.length === 1 ? "" : "s"} `, el("span", { class: "note", text: snippet(prompt.text, 160) })));
  const figNames = [...new Set(found.flatMap((x) => x.m.figures.map((f) => f.name)))];
  const figSel = el("select", { id: "figure", onchange: (e) => go({ ...route, fig: e.target.value }) });
  for (const name of figNames) figSel.append(el("option", { value: name, selected: name === fig.name, text: name }));
  const headsInput = el("input", { id: "heads", type: "search", value: spec, placeholder: "0.* 3.5 *.2", title: "layer.head, * for all; comma or space separated" });
  headsInput.addEventListener("change", () => go({ ...route, heads: headsInput.value.trim() }));
  const boxes = found.map((x) => el("label", { class: "mcheck" }, el("input", {
    type: "checkbox", value: x.m.name, checked: wanted.includes(x.m.name),
    onchange: () => go({ ...route, models: [...document.querySelectorAll(".mcheck input:checked")].map((c) => c.value).join(",") }),
  }), ` ${x.m.model_name}`));
  main.append(el("div", { class: "controls" }, el("label", {}, "figure ", figSel), el("label", {}, "heads ", headsInput), ...boxes,
    el("span", { class: "note", text: `${columns.length} heads × ${shownModels.length} models` })));
  if (!columns.length) { main.append(el("p", { class: "note", text: `no head matches ${JSON.stringify(spec)}: write layer.head, e.g. 0.* or 3.5` })); return; }
  const { cell: cellSize, gap, border } = gridCell(columns.length, route.size);
  const labelPx = 160;
  const grid = el("div", {
    class: "grid heads compare compact", id: "compare",
    style: `grid-template-columns: ${labelPx}px repeat(${columns.length}, ${cellSize + 2 * border}px); gap: ${gap}px; --cell: ${cellSize}px; --border: ${border}px; --sticky-top: ${stickyTop()}px`,
  });
  const every = Math.max(1, Math.ceil(30 / (cellSize + 2 * border + gap)));
  grid.append(el("div", { class: "colhead corner", text: "L.H" }));
  columns.forEach(([l, h], i) => grid.append(el("div", { class: "colhead", text: i % every ? "" : `${l}.${h}` })));
  for (const { m: other, p } of shownModels) {
    const f = figureOf(other, fig.name);
    grid.append(el("div", { class: "rowlabel", title: other.model_name, text: snippet(other.model_name, 24) }));
    for (const [l, h] of columns) {
      if (l >= other.n_layers || h >= other.n_heads) { grid.append(el("div", { class: "cell none", title: `${other.model_name} has no head ${l}.${h}` })); continue; }
      grid.append(el("a", {
        class: "cell", dataset: { model: other.name, layer: l, head: h }, title: `${other.model_name}: layer ${l}, head ${h}`,
        href: hashHref({ view: "head", model: other.name, prompt: p.hash, fig: f.name, layer: l, head: h }),
      }, thumb(other, p.hash, l, h, f)));
    }
  }
  main.append(grid);
}

// ------------------------------------------------------------------------------------------------
// router

const VIEWS = { models: viewModels, prompts: viewPrompts, grid: viewGrid, head: viewHead, across: viewAcross, compare: viewCompare };

async function render() {
  const rid = ++state.renderId;
  state.keyHandler = null;
  const route = Object.fromEntries(new URLSearchParams(location.hash.replace(/^#/, "")));
  const view = VIEWS[route.view] || viewModels;
  const main = document.getElementById("main");
  main.replaceChildren();
  delete main.dataset.ready; // set to the hash once the view is drawn (tests and scripts wait on it)
  main.dataset.view = VIEWS[route.view] ? route.view : "models";
  document.title = `pattern_lens: ${main.dataset.view}`;
  try {
    await view(main, route, rid);
    if (rid === state.renderId) main.dataset.ready = location.hash;
  } catch (err) {
    if (rid !== state.renderId) return;
    main.append(el("p", { class: "error", id: "error", text: String(err && err.message ? err.message : err) }));
    main.dataset.ready = location.hash;
  }
}

document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || e.altKey || e.ctrlKey || e.metaKey) return;
  if (state.keyHandler && state.keyHandler(e)) e.preventDefault();
});

window.addEventListener("hashchange", render);

(function start() {
  state.index = window.PL_DATA && window.PL_DATA.index;
  if (!state.index) return; // index.js missing: the page's own message stays
  render();
})();
