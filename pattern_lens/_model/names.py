"""model names: every variant of a model's name to TransformerLens's default alias

Variants: the default alias (`tiny-stories-1M`), the hub name (`roneneldan/TinyStories-1M`), the
hub name's tail, which TransformerLens sets as `cfg.model_name` (`TinyStories-1M`), and
`sanitize_name_str` of each (`roneneldan-TinyStories-1M`). The resolution order is the
reference's: TransformerLens's case-insensitive alias lookup when it is installed (else the same
lookup over the aliases of the shipped table), then the table's variants, else the name unchanged.
No torch, no pandas, no network.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

from pattern_lens.consts import sanitize_name_str

__all__ = ["build_resolver", "resolve_name", "tl_official_name"]


def build_resolver(rows: Iterable[dict], stacklevel: int = 2) -> dict[str, str]:
    """`{any name variant: default alias}` from table rows (`name.default_alias`, `name.huggingface`)

    A variant two models claim keeps the first model, with a warning (as the reference).
    """
    resolver: dict[str, str] = {}
    for row in rows:
        alias_raw = row.get("name.default_alias")
        if alias_raw is None or alias_raw != alias_raw or str(alias_raw) == "":  # NaN from pandas
            continue
        alias = str(alias_raw)
        hf_raw = row.get("name.huggingface")
        hf = "" if hf_raw is None or hf_raw != hf_raw else str(hf_raw)
        tail = hf.rsplit("/", maxsplit=1)[-1] if hf else ""
        variants = [alias, sanitize_name_str(alias)]
        for v in (hf, tail):
            if v:
                variants += [v, sanitize_name_str(v)]
        for v in variants:
            if v and resolver.setdefault(v, alias) != alias:
                warnings.warn(
                    f"resolve_model_name collision: {v!r} maps to both {resolver[v]!r} and {alias!r}; keeping first",
                    stacklevel=stacklevel,
                )
    return resolver


def tl_official_name(name: str) -> str | None:
    """TransformerLens's `get_official_model_name(name)` when it is installed and knows the name, else `None`"""
    try:
        from transformer_lens.loading_from_pretrained import get_official_model_name
    except ImportError:  # not installed (or blocked: `sys.modules[...] = None`)
        return None
    try:
        return str(get_official_model_name(name))
    except ValueError:
        return None


def resolve_name(name: str, resolver: dict[str, str], aliases: Callable[[], dict[str, str]]) -> str:
    """the default alias of any variant of a model's name; an unknown name unchanged

    # Parameters:
     - `name : str`
     - `resolver : dict[str, str]` from `build_resolver`
     - `aliases : Callable[[], dict[str, str]]` the shipped alias map (`{lower-cased name: hub
       name}`), asked for only when TransformerLens is not installed
    """
    official = tl_official_name(name)
    if official is None and not _tl_importable():
        official = aliases().get(name.lower())
    if official is not None:
        if official in resolver:
            return resolver[official]
        tail = official.rsplit("/", maxsplit=1)[-1]
        return resolver.get(tail, tail)
    if name in resolver:
        return resolver[name]
    return resolver.get(sanitize_name_str(name), name)


def _tl_importable() -> bool:
    try:
        import transformer_lens.loading_from_pretrained  # noqa: F401
    except ImportError:
        return False
    return True
