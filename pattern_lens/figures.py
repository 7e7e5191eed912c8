"""render figures of every attention head, with the functions registered by `register_attn_figure_func`

The reference's API (`figures_main`, `process_single_head`, `compute_and_save_figures`,
`process_prompt`, `select_attn_figure_funcs`, `HTConfigMock`, `python -m pattern_lens.figures`) with
the same on-disk layout, but the work of one run is split by (prompt, layer, batch of heads) over
every core, each layer is read from the `.npz` only when it is rendered, a head folder is listed once
to resume, every file is written atomically, and failures are summarised at the end.

# Figure functions in worker processes
Workers receive the figure functions by pickling. Define yours at module level in an importable
module and import it before rendering (CLI: `--import my_module`); see `pattern_lens._engine.transfer`.

```python
# my_figs.py, somewhere on sys.path
from pattern_lens.attn_figure_funcs import register_attn_figure_func
from pattern_lens.figure_util import save_matrix_wrapper

@register_attn_figure_func
@save_matrix_wrapper(fmt="png", normalize=True, cmap="viridis")
def squared(attn):
    return attn**2
```
then `pattern-lens render --import my_figs --model M --save-path P --figure-funcs squared`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pattern_lens._command import (
    add_execution_arguments,
    add_gallery_argument,
    add_selection_arguments,
    each_model,
    import_modules,
    positive_int,
    run_command,
    run_options,
    search_current_folder,
)
from pattern_lens._engine.selection import select_figure_funcs
from pattern_lens._errors import FigureFuncTransferError, InputError, PatternLensError, RunInterrupted
from pattern_lens._output.indexes import write_run_indexes
from pattern_lens._output.indexes import write_prompts_jsonl as generate_prompts_jsonl
from pattern_lens._input.cfg_shape import check_against_activations
from pattern_lens._input.inputs import (
    HTConfigMock,
    check_layers,
    check_prompt_hash,
    clean_index_temp,
    leaves_root,
    load_model_cfg,
    model_folder,
    prompt_work,
    read_prompt_index,
)
from pattern_lens._input.npz import ActivationsFile
from pattern_lens._layout import ACTIVATIONS_FILE, FIGURES_INDEX, MODELS_INDEX, MODEL_CFG_FILE, PROMPTS_INDEX, head_dir, layer_key
from pattern_lens._output.outputs import check_output_names, figure_func_name, list_head_dir, run_figure_funcs
from pattern_lens._engine.run import render_prompts, stop_on_signals
from pattern_lens._summaries.stats import PREVIEW_SIZE
from pattern_lens._summaries.summaries import indexed_funcs, summary_spec
from pattern_lens._summaries.summary import FailureStat, RenderSummary
from pattern_lens._summaries.summary import interrupted_line as _interrupted_line
from pattern_lens._spinner import SpinnerContext
from pattern_lens.attn_figure_funcs import ATTENTION_MATRIX_FIGURE_FUNCS
from pattern_lens.consts import DATA_DIR, ActivationCacheNp, AttentionMatrix
from pattern_lens.profile import export_profile

__all__ = [
    "ATTENTION_MATRIX_FIGURE_FUNCS",
    "generate_prompts_jsonl",
    "SpinnerContext",
    "HTConfigMock",
    "process_single_head",
    "compute_and_save_figures",
    "process_prompt",
    "select_attn_figure_funcs",
    "figures_main",
    "load_model_cfg",
    "main",
    "add_arguments",
    "run_from_args",
    "RenderSummary",
    "FailureStat",
    "PatternLensError",
    "InputError",
    "FigureFuncTransferError",
    "RunInterrupted",
]

FigureFuncsSelect = set[str] | frozenset[str] | str | Sequence[Callable] | None
"which figure functions to run: `None` all registered, a glob, a set of names, or the functions"


def _registered_funcs() -> list[Callable]:
    """the registered functions, read through this module's `ATTENTION_MATRIX_FIGURE_FUNCS` so that
    patching it (as the reference's tests do) changes what runs"""
    return list(ATTENTION_MATRIX_FIGURE_FUNCS)


def select_attn_figure_funcs(figure_funcs_select: FigureFuncsSelect = None) -> list[Callable]:
    """choose figure functions from `ATTENTION_MATRIX_FIGURE_FUNCS`, in registration order

    # Parameters:
     - `figure_funcs_select : set[str] | str | Sequence[Callable] | None`
       - `None`: every registered function
       - `str`: names matching this glob (`fnmatch`, case-sensitive), e.g. `"raw*"`
       - `set[str]` (or a sequence of names): exactly these names
       - a sequence of callables: these functions, registered or not
       (defaults to `None`)

    # Returns:
     - `list[Callable]`

    # Raises:
     - `PatternLensError` when nothing matches or a named function is not registered
     - `TypeError` for another kind of selector
    """
    return select_figure_funcs(figure_funcs_select, _registered_funcs())


def process_single_head(
    layer_idx: int,
    head_idx: int,
    attn_pattern: AttentionMatrix,
    save_dir: Path,
    figure_funcs: Sequence[Callable] | None = None,
    force_overwrite: bool = False,
) -> dict[str, bool | Exception]:
    """run the figure functions on one head's pattern, in this process

    The folder is listed once; a function whose outputs all exist is skipped unless
    `force_overwrite`. A function that raises leaves `<name>.error.txt` (message and traceback), a
    warning is issued, and the others still run.

    # Parameters:
     - `layer_idx : int`, `head_idx : int` where the head is (for the warning)
     - `attn_pattern : AttentionMatrix` the pattern, `(n_ctx, n_ctx)`
     - `save_dir : Path` the head folder (created if missing)
     - `figure_funcs : Sequence[Callable] | None` the functions to run (defaults to `None`: every
       registered one, `ATTENTION_MATRIX_FIGURE_FUNCS`)
     - `force_overwrite : bool` redo existing outputs (defaults to `False`)

    # Returns:
     - `dict[str, bool | BaseException]` function name -> `True` or the exception it raised

    # Raises:
     - `PatternLensError` when a function's file names are not plain names (`check_output_names`)
    """
    figure_funcs = _or_registered(figure_funcs)
    check_output_names(figure_funcs)
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    status = run_figure_funcs(attn_pattern, save_dir, figure_funcs, list_head_dir(save_dir), force_overwrite)
    for name, st in status.items():
        if st is not True:
            warnings.warn(f"Error in {name} for L{layer_idx}H{head_idx}: {st!s}", stacklevel=2)
    return status


def _or_registered(figure_funcs: Sequence[Callable] | None) -> Sequence[Callable]:
    # read through this module at call time, so that a test patching ATTENTION_MATRIX_FIGURE_FUNCS here is seen
    return list(ATTENTION_MATRIX_FIGURE_FUNCS) if figure_funcs is None else figure_funcs


def _first_prompt_dirs(model_dir: Path, prompts: list, root: Path, n: int = 8) -> list[str]:
    """the folders of the first `n` prompts whose hash and `activations.npz` pass the guard (to peek at)"""
    out = []
    for p in prompts[:n]:
        try:
            d = model_dir / "prompts" / check_prompt_hash(p.get("hash") if isinstance(p, dict) else None)
        except InputError:
            continue
        if leaves_root(d / ACTIVATIONS_FILE, root) is None:
            out.append(str(d))
    return out


def _inside(path: Path, root: Path) -> Path:
    """`path`, after checking it stays inside the save path `root` (nothing is written outside it)

    # Raises:
     - `InputError` naming the path that leaves `root` (a link, a hostile prompt hash)
    """
    if (outside := leaves_root(path, root)) is not None:
        raise InputError(outside)
    return path


def compute_and_save_figures(
    model_cfg: HTConfigMock,
    activations_path: Path,
    cache: ActivationCacheNp | np.ndarray,
    figure_funcs: Sequence[Callable] | None = None,
    save_path: Path = Path(DATA_DIR),
    force_overwrite: bool = False,
    track_results: bool = False,
) -> dict[str, dict[tuple[int, int], bool | Exception]] | None:
    """render every head of one prompt from patterns already in memory, in this process

    # Parameters:
     - `model_cfg : HTConfigMock` (`n_layers`, `n_heads`, `model_name`)
     - `activations_path : Path` the prompt's `activations.npz`; figures go beside it in `L*/H*/`
     - `cache : dict | np.ndarray` `{"blocks.<L>.attn.hook_pattern": (1, n_heads, n, n)}` or an
       array `(n_layers, n_heads, n, n)`
     - `figure_funcs : Sequence[Callable] | None` (defaults to `None`: every registered one)
     - `save_path : Path` root holding `<model>/prompts.jsonl`, rebuilt at the end like the
       reference, by one call of this module's `generate_prompts_jsonl` (defaults to `Path(DATA_DIR)`)
     - `force_overwrite : bool` (defaults to `False`)
     - `track_results : bool` return every head's status (defaults to `False`)

    # Returns:
     - `None`, or with `track_results` `{func_name: {(layer, head): True | Exception}}`

    # Raises:
     - `InputError` when the model name is not a folder name, or the prompt folder (beside
       `activations_path`) or a head folder is outside `save_path`, itself or through a symbolic link
    """
    model_dir = model_folder(save_path, model_cfg.model_name)  # refuse a name leaving the save path first
    figure_funcs = _or_registered(figure_funcs)
    prompt_dir = Path(activations_path).parent
    root = Path(save_path).resolve()
    _inside(prompt_dir, root)  # as process_prompt: nothing written outside the save path
    results: dict[str, dict[tuple[int, int], bool | Exception]] = {}
    for layer in range(model_cfg.n_layers):
        if isinstance(cache, dict):
            layer_patterns = cache[layer_key(layer)][0]
        elif isinstance(cache, np.ndarray):
            layer_patterns = cache[layer]
        else:
            raise TypeError(f"cache must be a dict or np.ndarray, not {type(cache).__name__}")
        for head in range(model_cfg.n_heads):
            d = _inside(head_dir(prompt_dir, layer, head), root)
            status = process_single_head(layer, head, layer_patterns[head], d, figure_funcs, force_overwrite)
            if track_results:
                for name, st in status.items():
                    results.setdefault(name, {})[(layer, head)] = st
    generate_prompts_jsonl(model_dir)
    return results if track_results else None


def process_prompt(
    prompt: dict,
    model_cfg: HTConfigMock,
    save_path: Path,
    figure_funcs: Sequence[Callable] | None = None,
    force_overwrite: bool = False,
) -> None:
    """render every head of one prompt in this process, reading one layer at a time

    # Parameters:
     - `prompt : dict` with `"hash"`: the prompt folder is `<save_path>/<model>/prompts/<hash>`
     - `model_cfg : HTConfigMock`
     - `save_path : Path`
     - `figure_funcs : Sequence[Callable] | None` (defaults to `None`: every registered one)
     - `force_overwrite : bool` (defaults to `False`)

    # Raises:
     - `ActivationsError` (a `ValueError`) naming the file when the activations are bad
     - `InputError` when the hash or model name is not a folder name, or a folder leads outside
       `save_path` through a symbolic link
    """
    model_dir = model_folder(save_path, model_cfg.model_name)
    figure_funcs = _or_registered(figure_funcs)
    prompt_dir = model_dir / "prompts" / check_prompt_hash(prompt.get("hash"))
    root = Path(save_path).resolve()
    _inside(prompt_dir, root)
    with ActivationsFile(prompt_dir / ACTIVATIONS_FILE, n_heads=model_cfg.n_heads) as acts:
        for layer in range(model_cfg.n_layers):
            patterns = acts.read_layer(layer)
            for head in range(model_cfg.n_heads):
                d = _inside(head_dir(prompt_dir, layer, head), root)
                process_single_head(layer, head, patterns[head], d, figure_funcs, force_overwrite)
    generate_prompts_jsonl(model_dir)


def figures_main(
    model_name: str,
    save_path: str | Path,
    n_samples: int | None,
    force: bool,
    figure_funcs_select: FigureFuncsSelect = None,
    parallel: bool | int = True,
    *,
    n_jobs: int | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
    profile: str | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    progress: bool = True,
    verbose: bool = True,
    timeout: float | None = None,
    summaries: bool = True,
    summaries_only: bool = False,
    preview_size: int = PREVIEW_SIZE,
) -> RenderSummary:
    """render figures for every head of a model's prompts, on every core, resuming what exists

    # Parameters:
     - `model_name : str` folder `<save_path>/<model_name>` (sanitised) with `model_cfg.json`,
       `prompts.jsonl` and `prompts/<hash>/activations.npz`
     - `save_path : str | Path` the root folder
     - `n_samples : int | None` render only the first `n_samples` prompts of `prompts.jsonl`; `None` all
     - `force : bool` redo figures that exist
     - `figure_funcs_select : set[str] | str | Sequence[Callable] | None`
       see `select_attn_figure_funcs` (defaults to `None`: all registered)
     - `parallel : bool | int` the reference's switch: `True` all cores (or the ambient
       `joblib.parallel_config`), `False` one process, an int that many workers (defaults to `True`)
     - `n_jobs : int | None` workers, overrides `parallel`; `-1` all cores (defaults to `None`)
     - `backend : str | None` joblib backend (`"loky"`, `"threading"`, `"multiprocessing"`,
       `"dask"`, ...); `None`: the ambient `joblib.parallel_config`'s, else loky (defaults to `None`)
     - `scheduler : str | None` dask scheduler address, with `backend="dask"` (defaults to `None`)
     - `profile : str | None` export profile `"exact"` or `"fast"`; `None`: the active
       `export_profile()` (defaults to `None`)
     - `layers : Sequence[int] | None`, `heads : Sequence[int] | None` render only these
       (defaults to `None`: all)
     - `progress : bool` tqdm bar over heads on stderr (defaults to `True`)
     - `verbose : bool` print what is loaded and the summary (defaults to `True`)
     - `timeout : float | None` seconds one figure function may take on one head; past it, that is
       the function's failure there (`FigureTimeout`) and the run goes on. Needs process workers or
       one job (SIGALRM) (defaults to `None`: no limit)
     - `summaries : bool` also summarise every head rendered, from the same read: statistics into
       `prompts/<hash>/head_stats.json` and a preview `L*/H*/preview.png`
       (`pattern_lens._summaries.summaries`) (defaults to `True`)
     - `summaries_only : bool` only the summaries, no figures (`figure_funcs_select` is ignored)
       (defaults to `False`)
     - `preview_size : int` largest preview side, pixels (defaults to `PREVIEW_SIZE`, 64)

    # Returns:
     - `RenderSummary` counts, speed, failures per function, input errors (`.ok` when none)

    # Raises:
     - `InputError` when the model config or `prompts.jsonl` is missing or malformed, or a layer /
       head selection is out of range. Bad prompts or activations do not raise: they are reported
       in the summary and every other prompt is rendered.
     - `FigureFuncTransferError` when a figure function cannot run in the worker processes
     - `PatternLensError` for an empty selection or bad parallel settings
     - `RunInterrupted` (a `KeyboardInterrupt`) on SIGINT or SIGTERM, with a one-line message saying
       what was done; the index files are written first, and a rerun resumes

    Whatever else happens on the way (a figure function that raises, exits or hangs past `timeout`, a
    worker that dies, a bad prompt, an index that cannot be written), the run goes on, writes its
    index files and reports the problem in the summary (`.ok` is then `False`).
    """
    save_path = Path(save_path)
    model_dir = model_folder(save_path, model_name)
    cfg = load_model_cfg(model_dir)
    prompts = read_prompt_index(model_dir / PROMPTS_INDEX)
    if n_samples is not None:
        prompts = prompts[:n_samples]
    funcs = [] if summaries_only else select_attn_figure_funcs(figure_funcs_select)
    spec = summary_spec(cfg, preview_size) if summaries or summaries_only else None
    listed = indexed_funcs(funcs, spec)
    cfg_path = model_dir / MODEL_CFG_FILE
    check_against_activations(  # a damaged config fails here, before a plan is sized from it
        cfg_path, cfg.n_layers, cfg.n_heads, _first_prompt_dirs(model_dir, prompts, save_path.resolve())
    )
    layer_sel = check_layers(layers, cfg.n_layers, "layer", cfg_path)
    head_sel = check_layers(heads, cfg.n_heads, "head", cfg_path)
    if n_jobs is None and parallel is not True:
        n_jobs = 1 if not parallel else int(parallel)  # the reference: any falsy value is serial
    profile = profile if profile is not None else export_profile()

    if verbose:
        print(f"{model_dir}: {len(prompts)} prompts, {len(layer_sel)} layers x {len(head_sel)} heads")
        print(f"{len(funcs)} figure functions: {', '.join(figure_func_name(f) for f in funcs)}")

    clean_index_temp(model_dir, [PROMPTS_INDEX])
    clean_index_temp(save_path, [MODELS_INDEX, FIGURES_INDEX])
    summary = RenderSummary(
        model_name=model_dir.name,
        n_prompts=len(prompts),
        n_layers=len(layer_sel),
        n_heads_per_layer=len(head_sel),
    )
    heads_per_prompt = len(layer_sel) * len(head_sel)
    work = prompt_work(prompts, model_dir, summary, heads_per_prompt)
    summary.n_heads += (len(prompts) - len(work)) * heads_per_prompt
    with stop_on_signals():
        try:
            render_prompts(
                work,
                funcs,
                cfg.n_heads,
                layer_sel,
                head_sel,
                force=force,
                profile=profile,
                n_jobs=n_jobs,
                backend=backend,
                scheduler=scheduler,
                progress=progress,
                desc=model_dir.name,
                summary=summary,
                timeout=timeout,
                root=str(save_path.resolve()),
                summaries=spec,
            )
        except RunInterrupted as e:
            write_indexes(save_path, model_dir, listed, summary)
            raise RunInterrupted(e.signum, _interrupted_line(e.signum, summary, len(prompts) * heads_per_prompt)) from None
        write_indexes(save_path, model_dir, listed, summary)
    if verbose:
        print(summary.format())
    return summary


def write_indexes(save_path: Path, model_dir: Path, funcs: Sequence[Callable], summary: RenderSummary) -> None:
    """rebuild the frontend's indexes after a run: `<model>/prompts.jsonl`, `models.jsonl`, and
    `figures.jsonl` (every registered function, plus `funcs` not registered); one that cannot be
    written is bad input in `summary`, not a traceback"""
    write_run_indexes(save_path, model_dir, funcs, summary, _registered_funcs())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """the options of `pattern-lens render` and `python -m pattern_lens.figures`"""
    p.add_argument("--model", "-m", type=str, required=True, help="model name(s), comma separated without spaces")
    p.add_argument("--save-path", "-s", type=str, default=DATA_DIR, help=f"root folder (default: {DATA_DIR})")
    p.add_argument("--n-samples", "-n", type=positive_int, default=None, help="only the first N prompts (default: all)")
    add_selection_arguments(p)
    add_execution_arguments(p)
    add_gallery_argument(p)


def run_from_args(args: argparse.Namespace) -> int:
    """render every model named in `args.model`; a model that fails does not stop the others"""
    from pattern_lens._engine.prestart import prestart_workers

    search_current_folder(args.imports)  # before the workers start: they take sys.path as it is then
    prestart_workers(args.jobs, args.backend, args.profile, args.imports)  # warm while we import and plan
    import_modules(args.imports)
    options = run_options(args)
    return each_model(
        args,
        lambda model: figures_main(
            model_name=model, save_path=args.save_path, n_samples=args.n_samples, verbose=not args.quiet, **options
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pattern_lens.figures --model M[,M2] --save-path P [--n-samples N] [--force] [--figure-funcs GLOB|a,b]`

    also takes `pattern-lens render`'s options (`--jobs`, `--backend`, `--profile`, ...)

    # Returns:
     - `int` exit code: 0 when everything rendered, 1 when a figure function failed or input was bad
    """
    return run_command("render", add_arguments, run_from_args, argv, prog="python -m pattern_lens.figures")


if __name__ == "__main__":
    from pattern_lens._command import as_process

    sys.exit(as_process(main))
