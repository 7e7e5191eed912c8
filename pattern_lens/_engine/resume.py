"""before any worker starts: is there anything to do at all?

A rerun of a finished run (every output there) should not start a single worker process. The
parent lists head folders until it finds one that needs work, by file names only (nothing deleted,
nothing read): on a run with work that is the first head or so; on a finished run, one listing per
head, as each worker would have done. A head this check calls done is still checked properly (each
output a complete file, the statistics rows there) by the run, in this process: a damaged output is
redone there, without workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pattern_lens._layout import PREVIEW_FILE, head_dir
from pattern_lens._output.outputs import is_complete, list_head_dir

__all__ = ["has_work"]


def has_work(
    prompt_dirs: Sequence[str],
    layers: Sequence[int],
    heads: Sequence[int],
    funcs: Sequence[Callable],
    summaries: bool,
    force: bool,
) -> bool:
    """whether some selected head lacks an output of `funcs` (or its preview, with `summaries`)

    # Parameters:
     - `prompt_dirs : Sequence[str]` the prompts' folders (`prompts/<hash>`)
     - `layers`, `heads : Sequence[int]` the selection
     - `funcs : Sequence[Callable]` the figure functions of the run
     - `summaries : bool` the run also writes each head's `preview.png`
     - `force : bool` the run redoes everything: always work

    # Returns:
     - `bool` `True` at the first head with work, or any folder that cannot be listed
    """
    if force:
        return True
    for prompt_dir in prompt_dirs:
        for layer in layers:
            for h in heads:
                try:
                    listing = list_head_dir(head_dir(prompt_dir, layer, h), clean_temp=False)
                except (OSError, RuntimeError):  # not a folder, a link loop: the run reports it
                    return True
                if summaries and PREVIEW_FILE not in listing:
                    return True
                if not all(is_complete(f, listing) for f in funcs):
                    return True
    return False
