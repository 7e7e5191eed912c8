"""the exact attention weights of one query row of one head, for the served gallery's hover

`GET /_pl/row?model=<folder>&prompt=<hash>&layer=L&head=H&row=Q` answers
`{"model", "prompt", "layer", "head", "row", "n_ctx", "dtype", "values": [n_ctx floats]}`: row `Q`
of head `H` in layer `L` of the prompt's `activations.npz`, as stored (float16/32/64, shown as
JSON numbers: a float32 `x` round-trips as `float(x)`).

Only that row is read: the layer's `.npy` member is opened inside the archive, its header checked
(shape `(1, n_heads, n, n)`, a float dtype, C order), and the stream is advanced to the row and `n`
values are read. A stored member is seeked to directly; a deflated one is inflated in a stream up to
the row (memory: zlib's window and one row, never the layer or the prompt).

Every name from the query is checked before it becomes a path: the model folder through
`model_folder`, the hash through `check_prompt_hash`, and the file's real path must lie inside the
served folder. Errors are JSON too (`{"error": "..."}`) with 400 (bad query), 404 (no such model or
layer key) or 422 (a file that does not hold such a pattern); never a traceback. A prompt saved
without its `activations.npz` is 200 with `{"values": null, "reason": "..."}`.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np

from pattern_lens._errors import InputError
from pattern_lens._guard import is_inside, resolved_root
from pattern_lens._layout import ACTIVATIONS_FILE, layer_key, prompt_dir
from pattern_lens._input.inputs import check_prompt_hash, model_folder

__all__ = ["ROW_ROUTE", "RowError", "read_row", "handle_row_request"]

ROW_ROUTE: str = "/_pl/row"
"the path the server answers with `handle_row_request` (the page asks it on hover)"

_MAX_INDEX: int = 1 << 20


class RowError(Exception):
    """a request that cannot be answered: `status` (400, 404, 422) and a message for the page"""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NoActivations(Exception):
    """the prompt has no `activations.npz` (`run` without `--save-activations`): an answer, not an
    error (200, `values` null, `reason`): the page falls back to the colours, and a browser logs no
    failed request for every prompt that has none"""


def _int_param(query: dict[str, list[str]], name: str) -> int:
    values = query.get(name)
    if not values or len(values) != 1:
        raise RowError(400, f"expected exactly one {name}=<int> in the query")
    text = values[0]
    if not text.isdigit() or int(text) >= _MAX_INDEX:
        raise RowError(400, f"{name}={text!r}: expected a non-negative integer")
    return int(text)


def _str_param(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    if not values or len(values) != 1 or not values[0]:
        raise RowError(400, f"expected exactly one non-empty {name}=... in the query")
    return values[0]


def activations_path(root: Path, model: str, prompt_hash: str) -> Path:
    """`<root>/<model>/prompts/<hash>/activations.npz`, every part checked (`RowError` 400 / 404)"""
    try:
        check_prompt_hash(prompt_hash)
        model_dir = model_folder(root, model)
    except InputError as e:
        raise RowError(400, str(e)) from None
    if model_dir.name != model or not model_dir.is_dir():  # the page sends the folder's own name
        raise RowError(404, f"no model folder named {model!r}")
    if not prompt_dir(model_dir, prompt_hash).is_dir():
        raise RowError(404, f"{model}: no prompt {prompt_hash!r}")
    path = prompt_dir(model_dir, prompt_hash) / ACTIVATIONS_FILE
    try:
        inside = is_inside(path, resolved_root(root))
    except InputError:
        inside = False
    if not inside:
        raise RowError(400, f"{model}/{prompt_hash}: outside the served folder")
    if not path.is_file():
        raise NoActivations(f"{model}/prompts/{prompt_hash}/{ACTIVATIONS_FILE}: not saved (run with --save-activations to hover exact values)")
    return path


def read_row(path: Path | str, layer: int, head: int, row: int, name: str | None = None) -> np.ndarray:
    """row `row` of head `head` in layer `layer` of an `activations.npz`, read alone

    # Parameters:
     - `path : Path | str` the `activations.npz`
     - `layer : int`, `head : int`, `row : int` which row (the query position)
     - `name : str | None` how messages name the file (defaults to `None`: its path)

    # Returns:
     - `np.ndarray` `(n,)` in the stored dtype

    # Raises:
     - `RowError` 404 when the layer's key is absent, 422 when the member is no such pattern or is
       unreadable, 400 when `head` or `row` is out of range
    """
    where = name or str(path)
    key = layer_key(layer) + ".npy"
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(key)
            except KeyError:
                raise RowError(404, f"{where}: no key {key[:-4]!r} (layer {layer} was not saved)") from None
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version[0] == 1 else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(f, max_header_size=10_000)
                if len(shape) == 4 and shape[0] == 1:
                    shape = shape[1:]
                if len(shape) != 3 or shape[1] != shape[2] or dtype.kind != "f" or fortran:
                    raise RowError(422, f"{where}: {key[:-4]} is {dtype} {shape}{' (Fortran order)' if fortran else ''}, expected float (1, n_heads, n, n) in C order")
                n_heads, n, _ = shape
                if head >= n_heads or row >= n:
                    raise RowError(400, f"head {head}, row {row}: the pattern has {n_heads} heads of {n} x {n}")
                if (n_heads * n * n) * dtype.itemsize > info.file_size:
                    raise RowError(422, f"{where}: {key[:-4]} is shorter than its header says")
                f.seek(f.tell() + ((head * n + row) * n) * dtype.itemsize)  # a deflated member inflates up to here, in a stream
                data = f.read(n * dtype.itemsize)
    except RowError:
        raise
    except (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile, NotImplementedError, RuntimeError) as e:
        raise RowError(422, f"{where}: cannot read {key[:-4]} ({type(e).__name__}: {e})") from None
    if len(data) != n * dtype.itemsize:
        raise RowError(422, f"{where}: {key[:-4]} ends before row {row} of head {head}")
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))


def handle_row_request(root: Path | str, query: str) -> tuple[int, bytes]:
    """answer `GET /_pl/row?<query>` for the folder `root`: `(HTTP status, JSON body)`

    # Parameters:
     - `root : Path | str` the served data folder
     - `query : str` the URL's query string: `model` (a model folder's name), `prompt` (a hash),
       `layer`, `head`, `row` (integers)

    # Returns:
     - `tuple[int, bytes]` 200 and the row (see the module docstring), or 400 / 404 / 422 and `{"error": ...}`
    """
    try:
        q = parse_qs(query, keep_blank_values=True, max_num_fields=16)
        model, prompt = _str_param(q, "model"), _str_param(q, "prompt")
        layer, head, row = (_int_param(q, k) for k in ("layer", "head", "row"))
        path = activations_path(Path(root), model, prompt)
        values = read_row(path, layer, head, row, name=f"{model}/prompts/{prompt}/{ACTIVATIONS_FILE}")  # no server path in answers
    except NoActivations as e:
        return 200, json.dumps({"values": None, "reason": str(e)}).encode()
    except RowError as e:
        return e.status, json.dumps({"error": str(e)}).encode()
    except ValueError as e:  # parse_qs: too many fields
        return 400, json.dumps({"error": f"bad query: {e}"}).encode()
    body = {
        "model": model, "prompt": prompt, "layer": layer, "head": head, "row": row,
        "n_ctx": int(values.shape[0]), "dtype": str(values.dtype),
        "values": [v if math.isfinite(v) else None for v in values.tolist()],  # JSON has no NaN
    }
    return 200, json.dumps(body).encode()
