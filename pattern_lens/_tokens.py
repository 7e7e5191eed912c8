"""the tokens on a pattern's axes: what the model saw, special tokens included

A pattern of side `n` has one row and one column per position the model saw. The reference's
`prompt.json` stores `tokens` without special tokens (`tokenizer.tokenize`), so a causal model that
prepends a BOS has `n = len(tokens) + 1`, and an encoder that wraps the text in `[CLS] ... [SEP]`
has `n = len(tokens) + 2`. This package also writes what the model saw:

- `pattern_tokens : list[str]` every position of the pattern, special tokens included, in order
- `first_text_token : int` the index in `pattern_tokens` of `tokens[0]` (1 after a BOS or `[CLS]`)

For data without them (the reference's, older versions'), `align_tokens` rebuilds the axis from
`tokens`, the pattern's side and the model's known special tokens (its `model_cfg.json`), and says
why when it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TokenAxis", "first_text_token", "pattern_fields", "model_kind", "align_tokens"]

# model_type -> (first, last) special token of an encoder's single-text input
_ENCODER_SPECIALS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("bert", "distilbert", "electra", "albert", "mobilebert", "squeezebert", "nystromformer"), ("[CLS]", "[SEP]")),
    **dict.fromkeys(("roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "bart", "deberta"), ("<s>", "</s>")),
    "deberta-v2": ("[CLS]", "[SEP]"),
}
_ENCODER_ARCH_HINTS: tuple[str, ...] = ("ForMaskedLM", "BertModel", "RobertaModel", "ForSequenceClassification", "ForTokenClassification")


@dataclass(frozen=True)
class TokenAxis:
    """the tokens along a pattern's side

    # Fields:
     - `tokens : list[str] | None` one per position (`None`: cannot be told)
     - `first_text_token : int | None` the position of the text's first token
     - `how : str` `"recorded"` (the run wrote them), `"same"` (the prompt's tokens fill the side),
       `"bos"`, `"cls_sep"` (rebuilt around the text's tokens), or `"unknown"`
     - `note : str` one line for the page: how the axis was made, or why it could not be
    """

    tokens: list[str] | None
    first_text_token: int | None
    how: str
    note: str


def first_text_token(pattern_tokens: Sequence[str], tokens: Sequence[str]) -> int | None:
    """the first index `i` with `pattern_tokens[i : i + len(tokens)] == tokens`, `None` if none"""
    n, m = len(pattern_tokens), len(tokens)
    if m == 0:
        return None
    for i in range(n - m + 1):
        if list(pattern_tokens[i : i + m]) == list(tokens):
            return i
    return None


def pattern_fields(pattern_tokens: Sequence[str] | None, tokens: Sequence[str], seq_len: int | None) -> dict:
    """`{"pattern_tokens", "first_text_token"}` for `prompt.json`, or `{}` when the model did not
    tell its tokens or they do not fill the pattern (`seq_len` positions)"""
    if not pattern_tokens or (seq_len is not None and len(pattern_tokens) != seq_len):
        return {}
    out: dict = {"pattern_tokens": [str(t) for t in pattern_tokens]}
    first = first_text_token(out["pattern_tokens"], tokens)
    if first is not None:
        out["first_text_token"] = first
    return out


def model_kind(cfg: dict | None) -> tuple[str, tuple[str, str] | None]:
    """`("encoder", (first, last))`, `("causal", None)` or `("unknown", None)` from a `model_cfg.json`

    Read: the Hugging Face `model_type` and `architectures`, `is_decoder`, and TransformerLens's
    `attention_dir` / `original_architecture` (what the reference's configs hold).
    """
    cfg = cfg if isinstance(cfg, dict) else {}
    model_type = str(cfg.get("model_type") or "").lower()
    archs = [str(a) for a in cfg.get("architectures") or [] if isinstance(a, str)]
    original = str(cfg.get("original_architecture") or "")
    if cfg.get("attention_dir") == "causal" or cfg.get("is_decoder") is True:
        return "causal", None
    if model_type in _ENCODER_SPECIALS:
        return "encoder", _ENCODER_SPECIALS[model_type]
    if cfg.get("attention_dir") == "bidirectional" or any(h in a for a in [*archs, original] for h in _ENCODER_ARCH_HINTS):
        family = original.lower() or (archs[0].lower() if archs else "")
        roberta_like = any(k in family for k in ("roberta", "mpnet", "camembert"))
        return "encoder", ("<s>", "</s>") if roberta_like else ("[CLS]", "[SEP]")
    if model_type or archs or original:
        return "causal", None
    return "unknown", None


def align_tokens(prompt: dict, side: int | None, cfg: dict | None) -> TokenAxis:
    """the axis of a pattern of side `side` for `prompt` (its `pattern_tokens` when recorded)

    # Parameters:
     - `prompt : dict` a `prompt.json`: `tokens`, and `pattern_tokens` / `first_text_token` when written by this package
     - `side : int | None` the pattern's side (`None`: not known; only recorded or equal-length tokens are trusted)
     - `cfg : dict | None` the model's `model_cfg.json`

    # Returns:
     - `TokenAxis`
    """
    tokens = [str(t) for t in prompt.get("tokens") or []]
    recorded = prompt.get("pattern_tokens")
    if isinstance(recorded, list) and recorded and (side is None or len(recorded) == side):
        first = prompt.get("first_text_token")
        first = first if isinstance(first, int) and not isinstance(first, bool) else first_text_token(recorded, tokens)
        return TokenAxis([str(t) for t in recorded], first, "recorded", "tokens as the model saw them (recorded by the run)")
    if side is None:
        if tokens:
            return TokenAxis(tokens, 0, "same", "the prompt's tokens (the pattern's size is not known here)")
        return TokenAxis(None, None, "unknown", "the prompt records no tokens")
    kind, specials = model_kind(cfg)
    if len(tokens) == side:
        return TokenAxis(tokens, 0, "same", "the prompt's tokens, one per position")
    if kind == "encoder" and specials and len(tokens) + 2 == side:
        first, last = specials
        return TokenAxis([first, *tokens, last], 1, "cls_sep",
                         f"{first} and {last} added around the prompt's {len(tokens)} tokens (an encoder: the pattern is {side} x {side})")
    if kind != "encoder" and len(tokens) + 1 == side:
        return TokenAxis(["<BOS>", *tokens], 1, "bos",
                         f"<BOS> added before the prompt's {len(tokens)} tokens (the pattern is {side} x {side})")
    what = {"encoder": "an encoder ([CLS]/[SEP]: 2 more)", "causal": "a causal model (a BOS: 1 more)"}.get(kind, "a model of unknown kind")
    return TokenAxis(None, None, "unknown",
                     f"cannot place the prompt's {len(tokens)} tokens on a {side} x {side} pattern of {what}: positions are numbered")
