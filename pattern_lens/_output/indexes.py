"""the jsonl indexes the frontend reads: `figures.jsonl`, `models.jsonl`, `<model>/prompts.jsonl`

Each is rebuilt once per run (the reference rebuilt `prompts.jsonl` after every prompt), written
atomically, and left untouched when its content would not change (so a rerun that renders nothing
changes no file at all).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pattern_lens._guard import leaves_root, resolved_root
from pattern_lens._json_limits import load_json_file, loads_bounded
from pattern_lens._layout import FIGURES_INDEX, MODELS_INDEX, MODEL_CFG_FILE, PROMPTS_INDEX, PROMPT_FILE, figure_names
from pattern_lens._output.atomic import write_text_if_changed
from pattern_lens._output.outputs import figure_func_name
from pattern_lens._summaries.summary import RenderSummary
from pattern_lens.consts import sanitize_name_str

__all__ = [
    "sanitize_model_name",
    "legacy_model_dir_name",
    "raw_model_dir",
    "find_model_dir",
    "figure_metadata",
    "write_figures_jsonl",
    "write_models_jsonl",
    "write_prompts_jsonl",
    "write_run_indexes",
    "read_jsonl",
    "read_jsonl_tolerant",
    "parse_jsonl_line",
]

_UNSAFE_CHARS: re.Pattern = re.compile(r"[^A-Za-z0-9._-]")


def sanitize_model_name(model_name: str) -> str:
    """a model name made safe as a folder name, as the reference's HEAD does it (`consts.sanitize_name_str`)

    `"pythia-14m"` stays as it is; `"EleutherAI/pythia-14m"` becomes `"EleutherAI-pythia-14m"`.
    """
    return sanitize_name_str(model_name)


def legacy_model_dir_name(model_name: str) -> str:
    """the folder name this package used before (every unsafe character, `/` included, became `_`)"""
    return _UNSAFE_CHARS.sub("_", model_name)


def raw_model_dir(save_path: Path | str, model_name: str) -> Path | None:
    """`<save_path>/<model_name>` unsanitised, as the reference's releases before its HEAD wrote it
    (`EleutherAI/pythia-14m` -> the nested `EleutherAI/pythia-14m/`), or `None` when that path would
    leave `save_path` (absolute, `..`, empty parts) or is just `save_path`

    Lexical only: symbolic links are checked by the caller (`inputs.model_folder` refuses a folder
    resolving outside the save path).
    """
    parts = model_name.split("/")
    if model_name.startswith("/") or "\\" in model_name or any(part in ("", ".", "..") for part in parts):
        return None
    return Path(save_path).joinpath(*parts)


def find_model_dir(save_path: Path | str, model_name: str) -> Path:
    """`<save_path>/<sanitized model name>`, or an older release's folder when only that one exists

    Found, in this order, when the sanitised folder is absent: the folder this package named with
    `_` for `/` (`EleutherAI_pythia-14m`), and the reference's releases before its HEAD, which used
    the name as a path (`EleutherAI/pythia-14m/`, nested; only inside `save_path`, see `raw_model_dir`).
    """
    new: Path = Path(save_path) / sanitize_model_name(model_name)
    if new.exists():
        return new
    old: Path = Path(save_path) / legacy_model_dir_name(model_name)
    if old.is_dir():
        return old
    raw: Path | None = raw_model_dir(save_path, model_name)
    return raw if raw is not None and raw.is_dir() else new


def read_jsonl(path: Path) -> list[dict]:
    """read a jsonl file, one object a line (blank lines ignored)

    # Raises:
     - `FileNotFoundError` when the file is absent
     - `ValueError` naming the file and line when a line is not a JSON object
    """
    with open(path, encoding="utf-8") as f:
        return [parse_jsonl_line(path, i, line) for i, line in enumerate(f, start=1) if line.strip()]


def read_jsonl_tolerant(path: Path) -> list[tuple[int, dict | str]]:
    """every non-blank line of a jsonl file, each decoded and parsed alone: `(number, object)`, or
    `(number, message)` for a line that is not valid UTF-8 or not a JSON object (one bad line must
    not cost the others)

    # Raises:
     - `FileNotFoundError` when the file is absent, `OSError` when it cannot be read
    """
    out: list[tuple[int, dict | str]] = []
    with open(path, "rb") as f:
        data = f.read()
    for number, raw in enumerate(data.splitlines(), start=1):  # bytes: only \n, \r, \r\n end a line
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            out.append((number, f"{path}:{number}: not valid UTF-8 ({e.reason} at byte {e.start})"))
            continue
        if not line.strip():
            continue
        try:
            out.append((number, parse_jsonl_line(path, number, line)))
        except ValueError as e:
            out.append((number, str(e)))
    return out


def parse_jsonl_line(path: Path, number: int, line: str) -> dict:
    """one line of a jsonl file as a dict

    # Raises:
     - `ValueError` `"<path>:<number>: ..."` when the line is not a JSON object
    """
    obj = loads_bounded(line, f"{path}:{number}")  # depth and size limits: a hostile line costs that line
    if not isinstance(obj, dict):
        raise ValueError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _jsonl(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def write_prompts_jsonl(model_dir: Path, order: Sequence[str] = ()) -> Path:
    """rebuild `<model_dir>/prompts.jsonl` from the `prompts/<hash>/prompt.json` files

    Prompts keep the order of the existing `prompts.jsonl` (so `--n-samples` keeps selecting the
    same prompts); a line whose prompt folder has no `prompt.json` is kept as it was; prompt
    folders not listed yet are appended in `order` (the hashes of a run's prompts, in input order:
    prompt #0 is the first line of the input), then the rest sorted by folder name. A bad line (not UTF-8, not a JSON
    object: reported by the run that read the index) is dropped, the rows around it kept in order.

    # Returns:
     - `Path` of the index
    """
    index_path: Path = model_dir / PROMPTS_INDEX
    on_disk: dict[str, dict] = {}
    prompts_root: Path = model_dir / "prompts"
    root: Path = resolved_root(model_dir.parent)
    if prompts_root.is_dir():
        for prompt_dir in sorted(prompts_root.iterdir()):
            prompt_file: Path = prompt_dir / PROMPT_FILE
            if prompt_file.is_file() and leaves_root(prompt_file, root) is None:  # a link out is not read
                try:
                    on_disk[prompt_dir.name] = load_json_file(prompt_file)
                except ValueError:
                    continue  # an unreadable prompt.json must not cost the whole index
    rows: list[dict] = []
    seen: set[str] = set()
    try:
        existing: list[dict] = [row for _, row in read_jsonl_tolerant(index_path) if isinstance(row, dict)]
    except FileNotFoundError:
        existing = []
    for row in existing:
        key = str(row.get("hash"))
        if key in seen:
            continue
        seen.add(key)
        rows.append(on_disk.get(key, row))
    for key in order:
        if key in on_disk and key not in seen:
            seen.add(key)
            rows.append(on_disk[key])
    rows.extend(prompt for key, prompt in on_disk.items() if key not in seen)
    write_text_if_changed(index_path, _jsonl(rows))
    return index_path


def write_models_jsonl(save_path: Path) -> Path:
    """rebuild `<save_path>/models.jsonl`: every `<model>/model_cfg.json`, plus `sanitized_name` (the folder name)

    # Returns:
     - `Path` of the index
    """
    rows: list[dict] = []
    root: Path = resolved_root(save_path)
    for model_dir in sorted(p for p in save_path.iterdir() if p.is_dir()):
        cfg_path: Path = model_dir / MODEL_CFG_FILE
        if not cfg_path.is_file() or leaves_root(cfg_path, root) is not None:  # a link out is not read
            continue
        try:
            cfg = load_json_file(cfg_path)
        except ValueError:
            continue
        if not isinstance(cfg, dict):
            continue
        rows.append({**cfg, "sanitized_name": model_dir.name})
    out: Path = save_path / MODELS_INDEX
    write_text_if_changed(out, _jsonl(rows))
    return out


def figure_metadata(func: Callable) -> list[dict[str, str | None]]:
    """`figures.jsonl` rows for one figure function

    # Returns:
     - `list[dict]`, one row per figure, with keys
       `name` (`<func>` or, for a multi-figure function, `<func>.<figure>`), `func_name`, `doc`,
       `figure_save_fmt` (`None` if not declared), `source` (the file that defines the function,
       past its decorators, as a path relative to its import root, e.g.
       `pattern_lens/attn_figure_funcs.py`, or `None`), `code` (source text or `None`)
    """
    func_name: str = figure_func_name(func)
    try:
        code: str | None = inspect.getsource(func)
    except (OSError, TypeError):
        code = None
    base: dict[str, str | None] = {
        "func_name": func_name,
        "doc": getattr(func, "__doc__", None),
        "figure_save_fmt": getattr(func, "figure_save_fmt", None),
        "source": source_name(func),
        "code": code,
    }
    return [{"name": name, **base} for name in figure_names(func)]


def source_name(func: Callable) -> str | None:
    """the file defining `func` (decorators unwrapped: `raw` is defined in `attn_figure_funcs.py`,
    not in `figure_util.py` where its wrapper is), relative to where its module is imported from:
    `pattern_lens/attn_figure_funcs.py`, never a machine's absolute path (a venv, a home folder)"""
    target = inspect.unwrap(func)
    try:
        source_file = inspect.getsourcefile(target)
    except TypeError:
        return None
    if not source_file:
        return None
    path = Path(source_file)
    parts = str(getattr(target, "__module__", "") or "").split(".")
    tail = [*parts[:-1], path.name] if parts[-1] == path.stem else [*parts, path.name] if path.stem == "__init__" else None
    if tail and list(path.parts[-len(tail):]) == tail:
        return "/".join(tail)
    return path.name


def write_figures_jsonl(save_path: Path, figure_funcs: Iterable[Callable]) -> Path:
    """merge the figure functions' metadata into `<save_path>/figures.jsonl`, sorted by name

    rows already in the file for other names are kept; rows for these functions are replaced

    # Returns:
     - `Path` of the index
    """
    path: Path = save_path / FIGURES_INDEX
    rows: dict[str, dict] = {}
    try:
        for row in read_jsonl(path):
            if "name" in row:
                rows[str(row["name"])] = row
    except (FileNotFoundError, ValueError):
        pass
    for func in figure_funcs:
        for row in figure_metadata(func):
            rows[str(row["name"])] = row
    write_text_if_changed(path, _jsonl(rows[name] for name in sorted(rows)))
    return path


def write_run_indexes(save_path: Path, model_dir: Path, funcs: Sequence[Callable], summary: RenderSummary, registered: Sequence[Callable]) -> None:
    """rebuild the frontend's indexes after a run: `<model>/prompts.jsonl`, `models.jsonl`, and
    `figures.jsonl` (every `registered` function, plus `funcs` not registered); one that cannot be
    written is bad input in `summary`, not a traceback"""
    registered = list(registered)
    writes = (
        (model_dir / PROMPTS_INDEX, lambda: write_prompts_jsonl(model_dir)),
        (save_path / MODELS_INDEX, lambda: write_models_jsonl(save_path)),
        (save_path / FIGURES_INDEX, lambda: write_figures_jsonl(save_path, [*registered, *(f for f in funcs if f not in registered)])),
    )
    for path, write in writes:
        try:
            write()
        except OSError as e:
            summary.add_input_error(f"{path}: cannot write the index ({type(e).__name__}: {e})", 0)
