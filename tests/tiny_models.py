"""tiny random-weight transformers models built from configs, with a tokenizer built here (no downloads)

`save_tiny_model(kind, folder, ...)` writes a `save_pretrained` folder (config, weights, tokenizer)
that the real loading code reads back: `"gpt2"` (causal LM, a BOS token the tokenizer does not add
itself, no pad token) or `"bert"` (encoder, the tokenizer adds [CLS] ... [SEP]).
"""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "the river was low that summer and the children walked across it",
    "to make bread you need flour water salt and time",
    "one two three four five six seven eight nine ten",
    "a lighthouse keeper kept a notebook of every ship that passed",
]


def _tokenizer(kind: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "<bos>"]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=specials))
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
        )
    # GPT-2 style: a BOS/EOS token that the tokenizer does not add, no pad token
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="<bos>", eos_token="<bos>")


def save_tiny_model(
    kind: str, folder: Path, n_layers: int = 3, n_heads: int = 4, d_model: int = 16, n_ctx: int = 64, seed: int = 0
) -> Path:
    """write a tiny random model of `kind` (`"gpt2"` or `"bert"`) into `folder`; returns `folder`"""
    import torch
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tok = _tokenizer(kind)
    vocab = len(tok)
    if kind == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab, n_positions=n_ctx, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        )
        model = GPT2LMHeadModel(cfg)
    elif kind == "bert":
        cfg = BertConfig(
            vocab_size=vocab, hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
            intermediate_size=2 * d_model, max_position_embeddings=n_ctx, pad_token_id=tok.pad_token_id,
        )
        model = BertModel(cfg)
    else:
        raise ValueError(kind)
    folder = Path(folder)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
