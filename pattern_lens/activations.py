"""computing attention patterns of a model on prompts and saving them (the reference's `pattern_lens.activations`)

```bash
python -m pattern_lens.activations --model gpt2 --prompts prompts.jsonl --save-path attn_data
pattern-lens activations -m ./my_model_folder -p prompts.jsonl --compress-level 1
```
```python
from pattern_lens.activations import activations_main
activations_main(model_name="gpt2", save_path="attn_data", prompts_path="prompts.jsonl",
                 raw_prompts=True, min_chars=100, max_chars=1000, force=False, n_samples=None,
                 no_index_html=False)
```

Same names, signatures, defaults and files as the reference: `model_cfg.json`, `prompts.jsonl`,
`prompts/<hash>/prompt.json` and `activations.npz` (keys `blocks.<L>.attn.hook_pattern`, shape
`(1, n_heads, n_ctx, n_ctx)`). Models: a Hugging Face hub name or a local `save_pretrained` folder
(loaded with `transformers`, eager attention, patterns taken by hooks layer by layer), or a
TransformerLens-style object (`run_with_hooks`/`run_with_cache`, hooks
`blocks.<L>.attn.hook_pattern`). Needs the `model` extra (a torch build first, CPU or CUDA, then
`pip install 'pattern_lens[model]'`); without it every entry point says so in one line
(`pattern_lens._model.load.require_model_extra`). At the end the gallery (`index.html`, as the
reference's) is written into the save path unless `no_index_html`. Each layer is written into the
`.npz` as it comes out of the forward pass; `compress_level` (default 6, the reference's) trades
file size for speed: 0 stores (~7x faster, full size), 1 is ~1.3x faster.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field  # noqa: F401 (asdict: a module-level name of the reference's, patched by its tests)
from pathlib import Path
from typing import Any

import numpy as np

from pattern_lens._errors import InputError, PatternLensError
from pattern_lens._model.load import load_model  # the loader `activations_main` uses (the reference's tests patch it here)
from pattern_lens._spinner import SpinnerContext
from pattern_lens.indexes import generate_models_jsonl, generate_prompts_jsonl, write_html_index
from pattern_lens.prompts import load_text_data
from pattern_lens._layout import ACTIVATIONS_FILE, layer_key, prompt_dir as _prompt_dir
from pattern_lens._output.indexes import write_models_jsonl, write_prompts_jsonl
from pattern_lens._input.inputs import model_folder
from pattern_lens.consts import ATTN_PATTERN_REGEX, DATA_DIR, DIVIDER_S1, DIVIDER_S2, SPINNER_KWARGS  # noqa: F401 (the reference's module-level names)
from pattern_lens._command import add_execution_arguments, add_gallery_argument, add_selection_arguments, each_model, import_modules, model_names, positive_int, run_command, run_options
from pattern_lens.load_activations import (  # the reference's module-level names (its tests patch load_activations here)
    ActivationsMissingError,
    activations_exist,
    augment_prompt_with_hash,
    load_activations,
)

__all__ = [
    "compute_activations",
    "compute_activations_batched",
    "get_activations",
    "activations_main",
    "ActivationsReport",
    "DEFAULT_COMPRESS_LEVEL",
    "add_arguments",
    "add_activations_arguments",
    "run_from_args",
    "main",
    "add_run_arguments",
    "run_stream_from_args",
    "SpinnerContext",
    "load_model",
    "load_text_data",
    "json_serialize",
    "generate_models_jsonl",
    "generate_prompts_jsonl",
    "write_html_index",
]

def json_serialize(obj: Any) -> Any:
    """`obj` as plain JSON values (dicts, lists, str, numbers, bool, None); anything else becomes its `str`"""
    import json

    return json.loads(json.dumps(obj, default=str))


def _save_activations(
    activations_path: Path, cache_np: dict[str, np.ndarray], compress_level: int = 6
) -> Path:
    """write a prompt's patterns as an `.npz` (atomically, members in the order given)

    # Parameters:
     - `activations_path : Path` the file to write
     - `cache_np : dict[str, np.ndarray]` arrays by key (`blocks.<L>.attn.hook_pattern`)
     - `compress_level : int` deflate level, 0 (stored) to 9 (defaults to 6, `numpy.savez_compressed`'s)

    # Returns:
     - `Path` the file written
    """
    from pattern_lens._model.npz_writer import NpzWriter

    with NpzWriter(activations_path, compress_level) as writer:
        for key, array in cache_np.items():
            writer.add(key, np.asarray(array))
    return Path(activations_path)

DEFAULT_COMPRESS_LEVEL: int = 6
"deflate level of `activations.npz`: the reference's (`numpy.savez_compressed`)"

STACKED_FILE: str = "activations-blocks.-.attn.hook_pattern.npy"
"the reference's file name for `stack_heads=True`: one `(1, n_layers, n_heads, n_ctx, n_ctx)` array"


def __getattr__(name: str) -> Any:
    if name == "DEFAULT_DEVICE":  # a torch.device, as in the reference; torch is imported only when asked
        from pattern_lens._model.load import resolve_device

        return resolve_device(None)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _filter_fn(names_filter: Callable[[str], bool] | re.Pattern) -> Callable[[str], bool]:
    if isinstance(names_filter, re.Pattern):
        return lambda key: names_filter.match(key) is not None
    return names_filter


def _layers(model: Any, names_filter: Callable[[str], bool] | re.Pattern) -> list[int]:
    fn = _filter_fn(names_filter)
    return [layer for layer in range(model.n_layers) if fn(layer_key(layer))]


def _model_dir(save_path: Path, model: Any) -> Path:
    return model_folder(save_path, model.model_name)


def _save_batch(
    model: Any,
    prepared: Sequence,
    save_path: Path,
    layers: Sequence[int],
    compress_level: int,
    keep: bool,
    stack_heads: bool = False,
    times: Any = None,
) -> tuple[list[Path], list[dict[str, np.ndarray]]]:
    """one forward pass over `prepared`, each layer written into each prompt's `.npz` as it arrives"""
    from pattern_lens._model.compute import run_batch
    from pattern_lens._model.npz_writer import NpzWriter
    from pattern_lens._model.setup import write_prompt_json

    model_dir = _model_dir(save_path, model)
    dirs = [_prompt_dir(model_dir, p.prompt["hash"]) for p in prepared]
    for d, p in zip(dirs, prepared):
        write_prompt_json(d, p.prompt)
    caches: list[dict[str, np.ndarray]] = [{} for _ in prepared]
    index = {id(p): i for i, p in enumerate(prepared)}
    with contextlib.ExitStack() as stack:
        writers = (
            [stack.enter_context(NpzWriter(d / ACTIVATIONS_FILE, compress_level)) for d in dirs]
            if not stack_heads
            else []
        )

        def sink(p: Any, layer: int, arr: np.ndarray) -> None:
            i = index[id(p)]
            if writers:
                writers[i].add(layer_key(layer), arr[None])
            if keep or stack_heads:
                caches[i][layer_key(layer)] = arr[None]

        run_batch(model, prepared, layers, sink, times)
    paths = [d / ACTIVATIONS_FILE for d in dirs]
    if stack_heads:
        paths = []
        for d, cache in zip(dirs, caches):
            path = d / STACKED_FILE
            np.save(path, np.stack([cache[layer_key(l)] for l in layers], axis=1))
            paths.append(path)
    return paths, caches


def _return(cache_np: dict[str, np.ndarray] | np.ndarray, return_cache: Any) -> Any:
    if return_cache is None:
        return None
    if return_cache == "numpy":
        return cache_np
    if return_cache == "torch":
        import torch

        if not isinstance(cache_np, dict):
            return torch.as_tensor(cache_np)
        return {k: torch.as_tensor(v) for k, v in cache_np.items()}
    raise ValueError(f"invalid return_cache: {return_cache!r} (expected None, 'numpy' or 'torch')")


def compute_activations(
    prompt: dict,
    model: Any = None,
    save_path: Path = Path(DATA_DIR),
    names_filter: Callable[[str], bool] | re.Pattern = ATTN_PATTERN_REGEX,
    return_cache: Any = "torch",
    stack_heads: bool = False,
) -> tuple[Path, Any]:
    """run the model on one prompt and save its attention patterns (always computes; see `get_activations`)

    # Parameters:
     - `prompt : dict` with `"text"`; `"hash"`, `"n_tokens"` and `"tokens"` are added
     - `model` a TransformerLens-style model, or a model from `pattern_lens._model.load.load_model`
     - `save_path : Path` (defaults to `Path(DATA_DIR)`)
     - `names_filter : Callable[[str], bool] | re.Pattern` which `blocks.<L>.attn.hook_pattern`
       keys to keep (defaults to `ATTN_PATTERN_REGEX`: all layers)
     - `return_cache : None | "numpy" | "torch"` (defaults to `"torch"`)
     - `stack_heads : bool` save one `(1, n_layers, n_heads, n_ctx, n_ctx)` array as
       `activations-blocks.-.attn.hook_pattern.npy` instead of the `.npz` (defaults to `False`)

    # Returns:
     - `tuple[Path, None | dict | array]` the file written, and the patterns as asked

    # Raises:
     - `AssertionError` when `model` is `None` or the prompt has no `"text"` (as the reference)
     - `InputError` for an empty prompt or one longer than the model's context
     - `ValueError` for an unknown `return_cache`
     - `ModelLoadError` when torch (or, for a model name, transformers) is not installed
    """
    from pattern_lens._model.load import load_model, require_model_extra  # no torch in this module

    assert model is not None, "model must be passed"
    assert "text" in prompt, f"prompt must contain a 'text' key, got keys {sorted(prompt)}"
    if return_cache not in (None, "numpy", "torch"):
        raise ValueError(f"invalid return_cache: {return_cache!r} (expected None, 'numpy' or 'torch')")
    require_model_extra(transformers=isinstance(model, (str, Path)))  # before anything imports torch
    from pattern_lens._model.compute import prepare_prompts

    pm = load_model(model)
    prepared, errors = prepare_prompts(pm, [(f"prompt {prompt.get('hash', '')}".strip(), prompt)])
    if errors:
        raise InputError(errors[0])
    layers = _layers(pm, names_filter)
    if stack_heads and layers != list(range(pm.n_layers)):
        raise ValueError(f"stack_heads needs every layer's pattern; names_filter kept layers {layers}")
    paths, caches = _save_batch(
        pm, prepared, Path(save_path), layers, DEFAULT_COMPRESS_LEVEL, return_cache is not None, stack_heads
    )
    cache: Any = caches[0]
    if stack_heads:
        cache = np.stack([cache[layer_key(l)] for l in layers], axis=1)
    return paths[0], _return(cache, return_cache)


def compute_activations_batched(
    prompts: list[dict],
    model: Any,
    save_path: Path = Path(DATA_DIR),
    names_filter: Callable[[str], bool] | re.Pattern = ATTN_PATTERN_REGEX,
    seq_lens: list[int] | None = None,
    *,
    compress_level: int = DEFAULT_COMPRESS_LEVEL,
    stack_heads: bool = False,
    times: Any = None,
) -> list[Path]:
    """run the model once on a batch of prompts (right-padded) and save each prompt's patterns, trimmed to its length

    # Parameters:
     - `prompts : list[dict]` each with `"text"` and `"hash"` (see `augment_prompt_with_hash`)
     - `model` as for `compute_activations`
     - `save_path : Path` (defaults to `Path(DATA_DIR)`)
     - `names_filter` (defaults to `ATTN_PATTERN_REGEX`)
     - `seq_lens : list[int] | None` the prompts' lengths as the model sees them (special tokens
       included); computed when `None` (defaults to `None`)
     - `compress_level : int` deflate level of the `.npz`, 0 (stored) to 9 (defaults to 6)
     - `stack_heads : bool` save one `.npy` stack per prompt instead (as `compute_activations`; defaults to `False`)
     - `times : StageTimes | None` seconds per stage are added to it (defaults to `None`)

    # Returns:
     - `list[Path]` one `activations.npz` (or `.npy` stack) per prompt, in the order given: `len(prompts)` paths;
       a prompt given twice (same hash) is computed once and its path returned for each

    # Raises:
     - `AssertionError` for an empty batch, a prompt without `"text"` / `"hash"`, or `seq_lens` of
       another length (as the reference)
     - `InputError` for an empty prompt or one longer than the model's context
     - `ModelLoadError` when torch (or, for a model name, transformers) is not installed
    """
    from pattern_lens._model.load import load_model, require_model_extra  # no torch in this module

    assert model is not None, "model must be passed"
    assert len(prompts) > 0, "prompts must not be empty"
    for i, p in enumerate(prompts):
        assert "text" in p, f"prompt {i} must contain a 'text' key: {sorted(p)}"
        assert "hash" in p, f"prompt {i} must contain a 'hash' key (call augment_prompt_with_hash first): {sorted(p)}"
    if seq_lens is not None:
        assert len(seq_lens) == len(prompts), f"seq_lens length mismatch: {len(seq_lens)} != {len(prompts)}"
    require_model_extra(transformers=isinstance(model, (str, Path)))  # before anything imports torch
    from pattern_lens._model.compute import make_batches, prepare_prompts

    pm = load_model(model)
    prepared, errors = prepare_prompts(pm, [(f"prompt {i} ({p['hash']})", p) for i, p in enumerate(prompts)])
    if errors:
        raise InputError("; ".join(errors))
    if seq_lens is not None:
        prepared = _with_seq_lens(prepared, prompts, seq_lens)
    layers = _layers(pm, names_filter)
    by_hash: dict[str, Path] = {}
    # one forward pass; prompts whose length only the forward pass tells run alone (make_batches)
    for batch in make_batches(prepared, len(prepared)):
        paths, _ = _save_batch(pm, batch, Path(save_path), layers, compress_level, keep=False, stack_heads=stack_heads, times=times)
        by_hash.update((b.prompt["hash"], path) for b, path in zip(batch, paths))
    _copy_token_metadata(prepared, prompts)
    return [by_hash[p["hash"]] for p in prompts]


def _with_seq_lens(prepared: list, prompts: list[dict], seq_lens: list[int]) -> list:
    """`prepared` with the caller's lengths, paired by input position: `prepared` holds each hash
    once (repeats dropped), so position `k` of `prepared` is not position `k` of `prompts`"""
    from pattern_lens._model.compute import PreparedPrompt

    first: dict[str, int] = {}
    for i, p in enumerate(prompts):
        first.setdefault(p["hash"], i)
    return [PreparedPrompt(p.prompt, int(seq_lens[first[p.prompt["hash"]]]), p.where) for p in prepared]


def _copy_token_metadata(prepared: list, prompts: list[dict]) -> None:
    """give a repeated prompt the `n_tokens` and `tokens` its first copy got (the reference adds them to every prompt)"""
    done = {p.prompt["hash"]: p.prompt for p in prepared}
    for p in prompts:
        src = done[p["hash"]]
        if p is not src:
            p.update(n_tokens=src["n_tokens"], tokens=src["tokens"])


def get_activations(
    prompt: dict,
    model: Any,
    save_path: Path = Path(DATA_DIR),
    allow_disk_cache: bool = True,
    return_cache: Any = "numpy",
) -> tuple[Path, Any]:
    """load a prompt's saved patterns if they exist, else compute and save them

    # Parameters:
     - `prompt : dict` with `"text"`
     - `model` a model object, or a name / folder (then loaded only if the patterns must be computed)
     - `save_path : Path` (defaults to `Path(DATA_DIR)`)
     - `allow_disk_cache : bool` use saved patterns (defaults to `True`)
     - `return_cache : None | "numpy" | "torch"` (defaults to `"numpy"`)

    # Returns:
     - `tuple[Path, None | dict]`

    # Raises:
     - `ModelLoadError` when the patterns must be computed and torch (or, for a model name,
       transformers) is not installed; loading saved patterns as numpy needs neither
    """
    from pattern_lens._model.load import load_model as as_pattern_model, model_display_name

    if return_cache not in (None, "numpy", "torch"):
        raise ValueError(f"invalid return_cache: {return_cache!r} (expected None, 'numpy' or 'torch')")
    augment_prompt_with_hash(prompt)
    model_name: str = (
        model_display_name(str(model)) if isinstance(model, (str, Path)) else as_pattern_model(model).model_name
    )
    if allow_disk_cache:
        try:
            path, cache = load_activations(model_name, prompt, Path(save_path))
        except ActivationsMissingError:
            pass
        else:
            return path, _return(cache, return_cache)
    return compute_activations(  # load_model checks for the `model` extra before anything imports torch
        prompt=prompt, model=as_pattern_model(model), save_path=Path(save_path), return_cache=return_cache)


@dataclass
class ActivationsReport:
    """what `activations_main` did

    # Fields:
     - `model_name : str`, `model_dir : Path`
     - `n_prompts : int` prompts selected; `n_cached : int` already saved (skipped);
       `n_computed : int` computed and saved
     - `errors : list[str]` bad input, each naming the prompt (file and line) or the model
     - `times : StageTimes | None` seconds per stage
    """

    model_name: str = ""
    model_dir: Path | None = None
    n_prompts: int = 0
    n_cached: int = 0
    n_computed: int = 0
    errors: list[str] = field(default_factory=list)
    times: Any = None

    @property
    def ok(self) -> bool:
        """no bad input"""
        return not self.errors

    def format(self) -> str:
        """a few lines for people"""
        lines = [
            f"{self.model_name}: {self.n_computed} prompts computed, {self.n_cached} already saved "
            f"(of {self.n_prompts}) in {self.model_dir}"
        ]
        if self.errors:
            lines.append(f"bad input ({len(self.errors)} problems):")
            lines.extend(f"  {e}" for e in self.errors)
        return "\n".join(lines)


def activations_main(
    model_name: str,
    save_path: str | Path,
    prompts_path: str | None,
    raw_prompts: bool,
    min_chars: int | None,
    max_chars: int | None,
    force: bool,
    n_samples: int | None,
    no_index_html: bool,
    shuffle: bool = False,
    stacked_heads: bool = False,
    device: Any = None,
    batch_size: int = 32,
    *,
    compress_level: int = DEFAULT_COMPRESS_LEVEL,
    model: Any = None,
    verbose: bool = True,
) -> ActivationsReport:
    """compute and save the attention patterns of a model on prompts

    # Parameters:
     - `model_name : str` hub name or local folder (ignored for loading when `model` is given)
     - `save_path : str | Path` root folder; data goes to `<save_path>/<sanitized model name>/`
     - `prompts_path : str | None` jsonl file of `{"text": ...}`; `None`: the model folder's
       `prompts.jsonl`, else the prompts shipped with the package
     - `raw_prompts : bool` cut the texts to `min_chars`..`max_chars` (`load_text_data`); else use them as they are
     - `min_chars : int | None`, `max_chars : int | None` with `raw_prompts`
     - `force : bool` recompute prompts already saved
     - `n_samples : int | None` only the first `n_samples` prompts; `None` all
     - `no_index_html : bool` do not write the gallery (`index.html` and `pattern_lens_gallery/` in
       `save_path`, see `pattern_lens._view.gallery`); written at the end by default, as the
       reference writes its `index.html`
     - `shuffle : bool` (defaults to `False`)
     - `stacked_heads : bool` save `.npy` stacks instead of `.npz` (defaults to `False`); such
       prompts are never counted as saved (a rerun recomputes them) and `render` cannot read them
     - `device : str | torch.device | None` (defaults to `None`: cuda when available, else cpu)
     - `batch_size : int` prompts per forward pass, sorted by length, longest first (defaults to `32`)
     - `compress_level : int` deflate level of the `.npz`, 0 (stored) to 9 (defaults to `6`, the reference's)
     - `model` an already loaded model to use instead of loading `model_name` (defaults to `None`)
     - `verbose : bool` print progress (defaults to `True`)

    # Returns:
     - `ActivationsReport` (`.ok` when no input was bad)

    # Raises:
     - `ModelLoadError` (an `InputError`) naming the model when it cannot be loaded or moved to
       `device`, or when torch / transformers are not installed
     - `PromptsFileError` when the prompts file cannot be read at all (bad lines are reported, not raised)
    """
    from pattern_lens._model.load import model_display_name, require_model_extra  # no torch in this module

    # first: the modules below import torch, which would fail with a bare ModuleNotFoundError
    require_model_extra(f"computing attention patterns of {model_name!r}", transformers=model is None)
    from pattern_lens._model.front_door import prompts_before_model

    save_path = Path(save_path)
    # the prompts before the model: a missing file, or a cut that leaves no prompt, is said at once
    given = load_model(model, device=device) if model is not None else None
    folder_name = given.model_name if given is not None else model_display_name(str(model_name))
    entries, errors, source = prompts_before_model(  # `load_text_data` of this module: the reference's tests patch it
        prompts_path, save_path, folder_name, raw_prompts, min_chars, max_chars, shuffle, n_samples, verbose, load_text_data
    )
    from pattern_lens._progress import ProgressBar

    from pattern_lens._model.compute import StageTimes, make_batches, prepare_prompts  # imports torch
    from pattern_lens._model.load import load_model as as_pattern_model
    from pattern_lens._model.offline import quiet_model_loading
    from pattern_lens._model.setup import write_model_cfg

    with quiet_model_loading(not verbose):
        # `load_model` of this module (patched by the reference's tests to give a TransformerLens-style object)
        pm = given if given is not None else as_pattern_model(load_model(model_name, device=device))
    model_dir = _model_dir(save_path, pm)
    report = ActivationsReport(model_name=pm.model_name, model_dir=model_dir, times=StageTimes())
    write_model_cfg(model_dir, pm)
    report.errors.extend(errors)
    report.n_prompts = len(entries)
    prepared, errors = prepare_prompts(pm, entries)
    report.errors.extend(errors)
    if not force:
        todo = [p for p in prepared if not activations_exist(pm.model_name, p.prompt, save_path)]
        report.n_cached = len(prepared) - len(todo)
        prepared = todo
    if verbose:
        print(f"{pm.model_name}: {len(entries)} prompts from {source}, {len(prepared)} to compute -> {model_dir}")
    with ProgressBar(total=len(prepared), unit="prompt", desc="activations", disable=not verbose, file=sys.stderr) as bar:
        for batch in make_batches(prepared, batch_size):  # longest first; a prompt of unknown length alone
            seq_lens = [p.seq_len for p in batch]
            compute_activations_batched(
                prompts=[p.prompt for p in batch],
                model=pm,
                save_path=save_path,
                seq_lens=None if None in seq_lens else seq_lens,
                compress_level=compress_level,
                stack_heads=stacked_heads,
                times=report.times,
            )
            report.n_computed += len(batch)
            bar.update(len(batch))
    write_prompts_jsonl(model_dir, order=[prompt.get("hash") for _, prompt in entries])  # input order
    write_models_jsonl(save_path)
    if not no_index_html:
        from pattern_lens._view.gallery import write_gallery_after_run

        # a failure is reported, not raised: the patterns are saved already
        error = write_gallery_after_run(save_path, quiet=not verbose)
        if error is not None:
            report.errors.append(error)
    if verbose:
        print(report.format())
    return report


# ---------------------------------------------------------------------------------------------------
# command line


def _compress_level(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer 0-9, got {text!r}") from None
    if not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"expected 0 (stored) to 9, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser, batch_size: int = 32) -> None:
    """the reference's options of `python -m pattern_lens.activations` (also `pattern-lens activations`)"""
    p.add_argument("--model", "-m", type=str, required=True, help="model name(s) or folder(s), comma separated without spaces")
    p.add_argument(
        "--prompts", "-p", type=str, default=None,
        help="jsonl file, one {\"text\": ...} a line (default: the model folder's prompts.jsonl, else the built-in prompts)",
    )
    p.add_argument("--save-path", "-s", type=str, default=DATA_DIR, help=f"root folder (default: {DATA_DIR})")
    p.add_argument("--min-chars", type=int, default=100, help="with --raw-prompts: drop shorter texts (default: 100)")
    p.add_argument("--max-chars", type=int, default=1000, help="with --raw-prompts: cut longer texts (default: 1000)")
    p.add_argument("--n-samples", "-n", type=int, default=None, help="only the first N prompts (default: all)")
    p.add_argument("--batch-size", "-b", type=positive_int, default=batch_size, help=f"prompts per forward pass (default: {batch_size})")
    p.add_argument("--device", type=str, default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--raw-prompts", "-r", action="store_true", help="cut the prompts to --min-chars..--max-chars")
    p.add_argument("--shuffle", action="store_true", help="shuffle the prompts")
    add_gallery_argument(p)  # dest `index_html`, as `render`'s: `run` shares `_command.each_model`, which reads it


def run_from_args(args: argparse.Namespace) -> int:
    """run `activations_main` for every model in `args.model`; exit code 0 only when every prompt was saved"""
    code = 0
    for name in model_names(args.model):
        try:
            report = activations_main(
                model_name=name,
                save_path=args.save_path,
                prompts_path=args.prompts,
                raw_prompts=args.raw_prompts,
                min_chars=args.min_chars,
                max_chars=args.max_chars,
                force=args.force,
                n_samples=args.n_samples,
                no_index_html=not args.index_html,
                shuffle=args.shuffle,
                stacked_heads=args.stacked_heads,
                device=args.device,
                batch_size=args.batch_size,
                compress_level=args.compress_level,
                verbose=not getattr(args, "quiet", False),
            )
        except PatternLensError as e:
            print(f"error: {e}", file=sys.stderr)
            code = 1
            continue
        if not report.ok:
            code = 1
    return code


def add_activations_arguments(p: argparse.ArgumentParser) -> None:
    """`add_arguments` plus the options only `activations` has"""
    add_arguments(p)
    p.add_argument("--force", "-f", action="store_true", help="recompute prompts already saved")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars (transformers' included) and no preamble")
    p.add_argument("--stacked-heads", action="store_true", help="save one .npy stack per prompt instead of the .npz (no resume; render reads only .npz)")
    p.add_argument(
        "--compress-level", type=_compress_level, default=DEFAULT_COMPRESS_LEVEL,
        help="deflate level of activations.npz: 0 stored (fastest, largest), 1-9, 6 the reference's (default: 6)",
    )


# ---------------------------------------------------------------------------------------------------
# `pattern-lens run`: the model's layers rendered as they are computed (`pattern_lens._engine.stream`)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens run`: model and prompts as `activations`, then those of `render`"""
    from pattern_lens._engine.stream import DEFAULT_BATCH_SIZE

    add_arguments(p, batch_size=DEFAULT_BATCH_SIZE)
    p.add_argument(
        "--save-activations", action="store_true",
        help="also write each prompt's activations.npz (default: figures only, no .npz)",
    )
    p.add_argument(
        "--compress-level", type=_compress_level, default=DEFAULT_COMPRESS_LEVEL,
        help="deflate level of activations.npz with --save-activations: 0 stored (fastest, largest) to 9; 6 the reference's (default: 6)",
    )
    add_selection_arguments(p)
    add_execution_arguments(p)


def run_stream_from_args(args: argparse.Namespace) -> int:
    """run each model in `args.model` on the prompts and render its heads as the layers are computed"""
    from pattern_lens._engine.stream import run_main

    import_modules(args.imports)
    return each_model(
        args,
        lambda model: run_main(
            model,
            args.prompts,
            args.save_path,
            raw_prompts=args.raw_prompts,
            min_chars=args.min_chars,
            max_chars=args.max_chars,
            shuffle=args.shuffle,
            n_samples=args.n_samples,
            batch_size=args.batch_size,
            device=args.device,
            save_activations=args.save_activations,
            compress_level=args.compress_level,
            verbose=not args.quiet,
            **run_options(args),
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pattern_lens.activations --model M --prompts P [...]`; returns the exit code"""
    return run_command("activations", add_activations_arguments, run_from_args, argv, prog="python -m pattern_lens.activations")


if __name__ == "__main__":
    from pattern_lens._command import as_process

    sys.exit(as_process(main))
