"""write the offline gallery into a data folder: the page, its scripts, and its index data as `.js`

The page (`pattern_lens/frontend/`) is static: plain JavaScript, no build step, nothing from the
network. It reads everything through small generated scripts under `pattern_lens_gallery/data/`,
because a page opened straight from disk (`file://`) may not `fetch` files: a `<script>` element
may load them. What is written:

```
<save_path>/index.html                                     the page
<save_path>/pattern_lens_gallery/app.js, style.css         copied from the package
<save_path>/pattern_lens_gallery/data/index.js             models (+ figures found, counts), figures.jsonl, colormaps
<save_path>/pattern_lens_gallery/data/<model>/prompts.js   the model's prompts.jsonl (+ each one's token axis: `axes.py`): loaded when the model is opened
<save_path>/pattern_lens_gallery/data/<model>/stats/<hash>.js  head statistics of one prompt, where present
```

The head summaries (`summaries.py`): a prompt's `head_stats.json` becomes its `stats/<hash>.js`; a
head's `preview.png` is the figure `preview`, and the thumbnail of the `raw` grid (`PREVIEW_THUMBNAILS`).

The index data is built from the reference's index files (`models.jsonl`, `figures.jsonl`,
`<model>/prompts.jsonl`, falling back to the folders when one is absent), so the gallery also shows
data the reference wrote. Files whose content would not change are not rewritten.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.resources
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pattern_lens import _guard
from pattern_lens._errors import InputError
from pattern_lens._layout import (
    ERROR_SUFFIX,
    GALLERY_DIR,
    GALLERY_INDEX,
    HEAD_STATS_FILE,
    MODEL_CFG_FILE,
    PREVIEW_FILE,
    PREVIEW_NAME,
    PROMPT_FILE,
    PROMPTS_INDEX,
    is_temp_name,
)
from pattern_lens._output.atomic import write_text_if_changed
from pattern_lens._json_limits import load_json_file
from pattern_lens._output.indexes import read_jsonl, sanitize_model_name
from pattern_lens._view.axes import prompt_axis
from pattern_lens._view.summaries import page_names, read_head_stats

__all__ = [
    "GalleryInfo",
    "DECODABLE_FIGURES",
    "PREVIEW_THUMBNAILS",
    "STATIC_FILES",
    "write_gallery",
    "write_gallery_after_run",
    "gallery_url",
]

STATIC_FILES: tuple[str, ...] = ("app.js", "style.css")
"files of `pattern_lens/frontend/` copied into `pattern_lens_gallery/` (the page itself goes to `index.html`)"

DECODABLE_FIGURES: dict[str, dict] = {
    "raw": {"cmap": "Blues", "normalized": True},
    PREVIEW_NAME: {"cmap": "Blues", "normalized": True},
}
"""figures whose pixels the page may decode back to values: the figure's colormap and whether it
was min-max normalised. `raw` is the reference's (and this package's) `save_matrix_wrapper(
normalize=True, cmap="Blues")`; the preview is coloured the same way (`pattern_lens._export.preview.
PREVIEW_CMAP`), and the page reads its pixels only when it has one pixel per token pair (a pattern
no longer than the preview size: then it is the pattern itself). The page shows a value only when
the pixel's colour is exactly one of the colormap's 256 colours (else it says the colour is not from
that colormap)."""

PREVIEW_THUMBNAILS: tuple[str, ...] = ("raw",)
"""figures whose grid cells show the head's preview instead of the figure itself: the preview is
coloured like `raw` (Blues, min-max normalised), so it stands for `raw` only; for another figure a
Blues preview would misrepresent what a click opens"""

_IMAGE_FORMATS: tuple[str, ...] = ("png", "svg", "svgz", "jpg", "jpeg", "gif", "webp")


@dataclass(frozen=True)
class GalleryInfo:
    """what `write_gallery` wrote: the page, how many models and prompts it shows"""

    index_html: Path
    n_models: int
    n_prompts: int

    def file_url(self) -> str:
        """the page as a `file://` URL"""
        return self.index_html.resolve().as_uri()


@functools.lru_cache(maxsize=1)
def _version() -> str:
    try:
        return importlib.metadata.version("pattern_lens")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class GalleryWarning(UserWarning):
    """something in the data folder the gallery skipped (an unreadable index, a refused name)"""


def _warn(message: str) -> None:
    """one line on stderr (no source line: the place is in the message)"""
    warnings.warn_explicit(" ".join(message.split()), GalleryWarning, "pattern_lens gallery", 0)


def _colormap_lut(name: str) -> list[list[int]]:
    """the 256 colours a figure in colormap `name` can have, as `figure_util` computes them"""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    rgb = (cmap(np.arange(cmap.N))[:, :3] * 255).astype(np.uint8)
    return rgb.tolist()


def _stamp() -> str:
    """the first line of a prompt's statistics script: which version wrote it"""
    return f"/* pattern_lens {_version()} */\n"


def _up_to_date(script: Path, source: Path) -> bool:
    """whether `script` was made from `source` as it is now, by this version: written after the
    source last changed, and stamped with this version (`_stamp`). Rereading a thousand prompts'
    statistics to rewrite the same scripts took seconds at the end of every render."""
    try:
        if script.stat().st_mtime_ns < source.stat().st_mtime_ns:
            return False
        with open(script, "rb") as f:
            return f.read(200).startswith(_stamp().encode())
    except OSError:
        return False


def _js(key: str, data) -> str:
    """a script that hands `data` to the page under `key`"""
    payload = json.dumps(data, separators=(",", ":"))
    return f"(window.PL_DATA = window.PL_DATA || {{}})[{json.dumps(key)}] = {payload};\n"


def _read_rows(path: Path) -> list[dict] | None:
    try:
        return read_jsonl(path)
    except FileNotFoundError:
        return None
    except (ValueError, OSError, UnicodeDecodeError) as e:
        _warn(f"skipping unreadable index {path}: {e}")
        return None


def _model_dir(save_path: Path, folder: object, what: str) -> Path | None:
    """`save_path / folder` through the guard (one folder name, inside the save path), else `None` and a warning"""
    try:
        return _guard.inside(save_path, folder, what=what)
    except InputError as e:
        _warn(f"skipping model: {e}")
        return None


def _model_dirs(save_path: Path) -> list[tuple[Path, dict]]:
    """(folder, config) of every model: `models.jsonl` first, then folders with a config it lacks

    Every folder name comes through the guard (`pattern_lens._guard.inside`): a `sanitized_name`
    that is a path, or a model folder that is a link leading outside the save path, is skipped.
    """
    out: list[tuple[Path, dict]] = []
    seen: set[str] = set()
    for i, row in enumerate(_read_rows(save_path / "models.jsonl") or [], start=1):
        folder = row.get("sanitized_name") or sanitize_model_name(str(row.get("model_name", "")))
        if not folder or folder in seen:
            continue
        d = _model_dir(save_path, folder, f"{save_path / 'models.jsonl'}: row {i} sanitized_name")
        if d is not None and d.is_dir():
            seen.add(folder)
            out.append((d, row))
    for p in sorted(save_path.iterdir()):
        if p.name in seen or p.name == GALLERY_DIR or not p.is_dir():
            continue
        cfg = p / MODEL_CFG_FILE
        if not cfg.is_file() or (d := _model_dir(save_path, p.name, f"model folder {p}")) is None:
            continue
        try:
            data = load_json_file(cfg)
        except ValueError as e:
            _warn(f"skipping model {p.name}: {e}")
            continue
        if isinstance(data, dict):
            out.append((d, data))
        else:
            _warn(f"skipping model {p.name}: {cfg} is not a JSON object")
    return out


def _safe_hash(model_dir: Path, prompt: dict, what: str) -> str | None:
    """the prompt's hash when it is a folder name whose folder stays inside the save path, else `None`"""
    try:
        h = _guard.check_hash(prompt.get("hash"), what)
        _guard.inside(model_dir.parent, model_dir.name, "prompts", h, what=what)
        return h
    except InputError as e:
        _warn(f"skipping prompt: {e}")
        return None


def _prompts(model_dir: Path) -> list[dict]:
    """the model's prompts: `prompts.jsonl`, else every `prompts/<hash>/prompt.json`"""
    rows = _read_rows(model_dir / PROMPTS_INDEX)
    if rows is None:
        rows = []
        root = model_dir / "prompts"
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            try:
                rows.append(load_json_file(d / PROMPT_FILE))
            except ValueError:
                continue
    index = model_dir / PROMPTS_INDEX
    return [
        r for i, r in enumerate(rows, start=1)
        if isinstance(r, dict) and _safe_hash(model_dir, r, f"{index}: prompt {i} hash") is not None
    ]


def _first_head_dir(model_dir: Path, prompts: list[dict]) -> Path | None:
    """the first head folder with files, in prompt order: the figures of a model are read from it"""
    root = _guard.resolved_root(model_dir.parent)
    for prompt in prompts[:20]:
        pdir = model_dir / "prompts" / prompt["hash"]
        if not pdir.is_dir():
            continue
        for layer_dir in sorted(pdir.glob("L*"), key=lambda p: p.name):
            for head_dir in sorted(layer_dir.glob("H*"), key=lambda p: p.name):
                if _guard.leaves_root(head_dir, root) is None and head_dir.is_dir() and any(head_dir.iterdir()):
                    return head_dir
    return None


def _model_figures(head_dir: Path | None, figure_names: list[str]) -> list[dict]:
    """`[{name, fmt[, thumb]}]` of the figures found in `head_dir`

    Order: `raw` first, then `figures.jsonl`'s order, the preview last (the grid opens on the first:
    the preview only when it is all there is, as after `--summaries-only`). `thumb`: the file the
    grid shows instead of the figure (the head's preview, for `PREVIEW_THUMBNAILS`); the model's
    first head decides, and the page falls back to the figure where a head lacks its preview.
    """
    if head_dir is None:
        return []
    found: dict[str, str] = {}
    names = {p.name for p in head_dir.iterdir() if p.is_file()}
    for file_name in sorted(names):
        if is_temp_name(file_name) or file_name.endswith(ERROR_SUFFIX):
            continue
        stem, _, fmt = file_name.rpartition(".")
        if stem and fmt.lower() in _IMAGE_FORMATS and stem not in found:
            found[stem] = fmt
    order = {name: i for i, name in enumerate(figure_names)}
    ranked = sorted(found, key=lambda n: (n == PREVIEW_NAME, n != "raw", order.get(n, len(order)), n))
    has_preview = PREVIEW_FILE in names
    return [
        {"name": n, "fmt": found[n], **({"thumb": PREVIEW_FILE} if has_preview and n in PREVIEW_THUMBNAILS else {})}
        for n in ranked
    ]


def gallery_url(save_path: Path | str) -> str:
    """the `file://` URL of the gallery page in `save_path`"""
    return (Path(save_path) / GALLERY_INDEX).resolve().as_uri()


def write_gallery_after_run(save_path: Path | str, quiet: bool) -> str | None:
    """`write_gallery` at the end of a run: prints where the page is (unless `quiet`); a failure is
    returned as a one-line message, not raised (the run's outputs are saved already)

    # Returns:
     - `str | None` `"writing the gallery into <save_path> failed: <why>"`, or `None` when written
    """
    from pattern_lens._errors import PatternLensError

    try:
        info = write_gallery(save_path)
    except (PatternLensError, OSError, ValueError) as e:
        return f"writing the gallery into {save_path} failed: {e}"
    if not quiet:
        print(f"gallery: {info.file_url()}  (or: pattern-lens serve {save_path})")
    return None


def _gallery_target(out: Path) -> Path:
    """`out / GALLERY_DIR`, ready to be written into: a symbolic link there is replaced by a folder
    (never followed: it may lead outside); a file there, or `index.html` a folder, is an `InputError`"""
    gallery = out / GALLERY_DIR
    if gallery.is_symlink():
        gallery.unlink()  # the link only, not what it points to
    elif gallery.exists() and not gallery.is_dir():
        raise InputError(f"{gallery} is a file, not the gallery's folder: move it away (the gallery is written there)")
    index = out / GALLERY_INDEX
    if index.is_dir() and not index.is_symlink():
        raise InputError(f"{index} is a folder, not the gallery's page: move it away (the page is written there)")
    return gallery


def write_gallery(save_path: Path | str, out: Path | str | None = None) -> GalleryInfo:
    """write (or refresh) the gallery into the data folder `save_path`

    # Parameters:
     - `save_path : Path | str` the data folder (the one holding `models.jsonl` and the model folders)
     - `out : Path | str | None` write the page and `pattern_lens_gallery/` here instead (defaults to
       `None`: into `save_path`); the server uses a private temporary folder for a read-only data folder

    # Returns:
     - `GalleryInfo` the page's path and what it shows

    # Raises:
     - `InputError` when `save_path` is not a folder
    """
    save_path = Path(save_path)
    if not save_path.is_dir():
        raise InputError(f"data folder not found: {save_path} (expected the folder given to `render --save-path`)")
    frontend = importlib.resources.files("pattern_lens") / "frontend"
    target = save_path if out is None else Path(out)
    gallery = _gallery_target(target)
    data_dir = gallery / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if (outside := _guard.leaves_root(data_dir, _guard.resolved_root(target))) is not None:
        raise InputError(outside)  # a link inside pattern_lens_gallery/ leading out

    figure_rows = _read_rows(save_path / "figures.jsonl") or []
    figure_names = [str(r["name"]) for r in figure_rows if "name" in r]
    models: list[dict] = []
    n_prompts_total = 0
    root = _guard.resolved_root(save_path)
    for model_dir, cfg in _model_dirs(save_path):
        prompts = [{**p, **prompt_axis(p, model_dir / "prompts" / p["hash"], cfg)} for p in _prompts(model_dir)]
        n_prompts_total += len(prompts)
        model_data = _guard.inside(data_dir, model_dir.name, what="gallery model folder")
        model_data.mkdir(exist_ok=True)
        write_text_if_changed(model_data / "prompts.js", _js(f"prompts/{model_dir.name}", prompts))
        n_layers, n_heads = _shape(cfg)
        stats_names: dict[str, None] = {}  # in the files' order (entropy, prev_token, ...)
        stats_prompts: list[str] = []
        for prompt in prompts:
            stats_js = model_data / "stats" / f"{prompt['hash']}.js"  # the hash was checked by `_prompts`
            if (outside := _guard.leaves_root(model_dir / "prompts" / prompt["hash"] / HEAD_STATS_FILE, root)) is not None:
                _warn(f"skipping statistics: {outside}")  # a link to a file outside: not read
                continue
            if stats_names and _up_to_date(stats_js, model_dir / "prompts" / prompt["hash"] / HEAD_STATS_FILE):
                stats_prompts.append(prompt["hash"])  # written from this very file by this version: kept
                continue
            try:
                stats = read_head_stats(model_dir / "prompts" / prompt["hash"], n_layers, n_heads)
            except ValueError as e:
                _warn(f"{e}")
                continue
            if stats is not None:
                _guard.inside(model_data, "stats", what="gallery statistics folder").mkdir(exist_ok=True)
                key = f"stats/{model_dir.name}/{prompt['hash']}"
                write_text_if_changed(stats_js, _stamp() + _js(key, stats.page_data()))
                stats_names.update(dict.fromkeys(stats.values))
                stats_prompts.append(prompt["hash"])
        models.append({
            "name": model_dir.name,
            "model_name": cfg.get("model_name", model_dir.name),
            "n_layers": n_layers,
            "n_heads": n_heads,
            "n_ctx": cfg.get("n_ctx"),
            "n_prompts": len(prompts),
            "figures": _model_figures(_first_head_dir(model_dir, prompts), figure_names),
            "stats": list(stats_names),
            "stats_prompts": stats_prompts,  # the prompts whose statistics script the page may load
        })
    index = {
        "version": _version(),
        "models": models,
        "figures": [{k: r.get(k) for k in ("name", "func_name", "doc", "figure_save_fmt", "source", "code")} for r in figure_rows],
        "decodable": {
            name: {**spec, "lut": _colormap_lut(spec["cmap"])} for name, spec in DECODABLE_FIGURES.items()
        },
        "names": page_names(),
    }
    write_text_if_changed(data_dir / "index.js", _js("index", index))
    for name in STATIC_FILES:
        write_text_if_changed(gallery / name, (frontend / name).read_text(encoding="utf-8"))
    page = (frontend / "index.html").read_text(encoding="utf-8").replace("$$PATTERN_LENS_VERSION$$", _version())
    write_text_if_changed(target / GALLERY_INDEX, page)
    return GalleryInfo(index_html=target / GALLERY_INDEX, n_models=len(models), n_prompts=n_prompts_total)


_MAX_SHAPE: int = 1 << 16
"more layers or heads than any model has: a config saying more is damaged (the page would allocate them all)"

_MAX_HEADS: int = 1 << 20
"more heads in all than any model has (a 70B model: 80 x 64 = 5,120)"


def _shape(cfg: dict) -> tuple[int, int]:
    """`(n_layers, n_heads)` of a model config, 0 where absent, not an integer, or absurd"""
    out = []
    for key in ("n_layers", "n_heads"):
        v = cfg.get(key)
        ok = isinstance(v, int) and not isinstance(v, bool) and 0 < v <= _MAX_SHAPE
        if v is not None and not ok:
            _warn(f"model {cfg.get('model_name')!r}: {key} = {str(v)[:40]} is not a layer or head count; taken as unknown")
        out.append(v if ok else 0)
    if out[0] * out[1] > _MAX_HEADS:  # each statistic is a layers x heads table in the page's data
        _warn(f"model {cfg.get('model_name')!r}: {out[0]} layers x {out[1]} heads is more than any model has; shape taken as unknown")
        return 0, 0
    return out[0], out[1]
