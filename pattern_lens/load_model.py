"""any variant of a model's name to one canonical name, and loading a TransformerLens model by it
(the reference's `pattern_lens.load_model`)

One model has many names: a TransformerLens alias (`tiny-stories-1M`), its Hugging Face hub path
(`roneneldan/TinyStories-1M`), the path's tail that TransformerLens sets as `cfg.model_name`
(`TinyStories-1M`), and the folder-safe form of each (`roneneldan-TinyStories-1M`).
`resolve_model_name` maps each to TransformerLens's default alias, `sanitize_model_name` to that
alias made folder-safe. Both work without TransformerLens: the alias table is shipped with the
package (see `pattern_lens.model_table`); with TransformerLens installed, its own alias lookup comes
first, as in the reference. Nothing here touches the network.

This package's data folders keep their names: `activations` and `run` name a model's folder
`sanitize_name_str(name as given)` (as before), so existing folders are found; use
`sanitize_model_name` where one folder per model, whatever name it was given by, is wanted.

`load_model` needs TransformerLens (not a dependency of this package: `pip install transformer-lens`);
`pattern-lens activations` / `run` load `transformers` models themselves and do not need it.
"""

from __future__ import annotations

from typing import Any

from pattern_lens._model.names import build_resolver, resolve_name
from pattern_lens.consts import sanitize_name_str

__all__ = ["resolve_model_name", "sanitize_model_name", "get_name_resolver", "load_model"]

_NAME_RESOLVER: dict[str, str] | None = None
_ALIASES: dict[str, str] | None = None


def _build_name_resolver() -> dict[str, str]:
    """`{any name variant: default alias}` from `pattern_lens.model_table.fetch_model_table_df()`
    (its rows through pandas when pandas is installed, as the reference; else the same CSV read without it)"""
    from pattern_lens import model_table

    try:
        records = model_table.fetch_model_table_df().to_dict("records")
    except ImportError:  # no pandas: the same table
        from pattern_lens._model.model_table import parse_csv

        records = parse_csv(model_table._fetch_csv_content())
    return build_resolver(records, stacklevel=3)


def get_name_resolver() -> dict[str, str]:
    """the variant -> default alias map, built once (an unreadable table gives `{}` and a warning: names pass through)"""
    global _NAME_RESOLVER
    if _NAME_RESOLVER is None:
        try:
            _NAME_RESOLVER = _build_name_resolver()
        except Exception as e:  # noqa: BLE001 (the reference's fallback: resolution degrades to pass-through)
            import warnings

            warnings.warn(f"Failed to build name resolver ({e}); falling back to pass-through name resolution", stacklevel=2)
            _NAME_RESOLVER = {}
    return _NAME_RESOLVER


def _aliases() -> dict[str, str]:
    """TransformerLens's alias map from the shipped snapshot (used when TransformerLens is not installed)"""
    global _ALIASES
    if _ALIASES is None:
        from pattern_lens._model.model_table import SNAPSHOT_PATH, aliases_from_rows, parse_csv

        try:
            _ALIASES = aliases_from_rows(parse_csv(SNAPSHOT_PATH.read_text(encoding="utf-8")))
        except OSError:
            _ALIASES = {}
    return _ALIASES


def resolve_model_name(name: str) -> str:
    """TransformerLens's default alias for any variant of a model's name

    # Parameters:
     - `name : str` an alias (any case), a hub path, `cfg.model_name`, or the folder-safe form of one

    # Returns:
     - `str` the default alias (`"roneneldan/TinyStories-1M"` -> `"tiny-stories-1M"`, `"gpt2"` ->
       `"gpt2-small"`); a name the table does not know, unchanged
    """
    return resolve_name(name, get_name_resolver(), _aliases)


def sanitize_model_name(name: str) -> str:
    """the folder-safe default alias: `sanitize_name_str(resolve_model_name(name))`; idempotent

    # Parameters:
     - `name : str` any variant of a model's name

    # Returns:
     - `str`
    """
    return sanitize_name_str(resolve_model_name(name))


def load_model(
    model_name: str,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    refactor_factored_attn_matrices: bool = False,
    checkpoint_index: int | None = None,
    checkpoint_value: int | None = None,
    hf_model: Any = None,
    device: Any = None,
    n_devices: int = 1,
    tokenizer: Any = None,
    move_to_device: bool = True,
    fold_value_biases: bool = True,
    default_prepend_bos: bool | None = None,
    default_padding_side: str = "right",
    dtype: str = "float32",
    first_n_layers: int | None = None,
    **from_pretrained_kwargs: Any,
) -> Any:
    """`HookedTransformer.from_pretrained` under any variant of the model's name

    Every argument is passed on as given (TransformerLens's defaults); the name is resolved first
    (`resolve_model_name`), and the model's `cfg.model_name_sanitized` is set to
    `sanitize_model_name(model_name)`.

    # Parameters:
     - `model_name : str` any variant of the model's name
     - the others: those of `HookedTransformer.from_pretrained`

    # Returns:
     - `HookedTransformer`

    # Raises:
     - `ModelLoadError` (an `InputError`) when TransformerLens is not installed, naming what to install
    """
    try:
        from transformer_lens import HookedTransformer
    except ImportError as e:
        from pattern_lens._model.load import ModelLoadError

        raise ModelLoadError(
            f"load_model({model_name!r}) loads a TransformerLens HookedTransformer and needs transformer-lens "
            "(pip install 'transformer-lens<3', the reference's 2.x); `pattern-lens activations` and `run` load "
            f"transformers models without it ({type(e).__name__}: {e})"
        ) from e
    model = HookedTransformer.from_pretrained(
        resolve_model_name(model_name),
        fold_ln=fold_ln,
        center_writing_weights=center_writing_weights,
        center_unembed=center_unembed,
        refactor_factored_attn_matrices=refactor_factored_attn_matrices,
        checkpoint_index=checkpoint_index,
        checkpoint_value=checkpoint_value,
        hf_model=hf_model,
        device=device,
        n_devices=n_devices,
        tokenizer=tokenizer,
        move_to_device=move_to_device,
        fold_value_biases=fold_value_biases,
        default_prepend_bos=default_prepend_bos,
        default_padding_side=default_padding_side,
        dtype=dtype,
        first_n_layers=first_n_layers,
        **from_pretrained_kwargs,
    )
    model.cfg.model_name_sanitized = sanitize_model_name(model_name)
    return model


