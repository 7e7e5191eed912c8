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


def make_tiny_tl(n_layers: int = 2, n_heads: int = 2, d_model: int = 8, n_ctx: int = 32, seed: int = 0):
    """a real tiny torch model with TransformerLens's interface (cfg, tokenizer, to_tokens,
    run_with_hooks, run_with_cache, hook points `blocks.<L>.attn.hook_pattern`): TransformerLens
    itself is not installed here (2.x needs numpy < 2; 4.x replaced HookedTransformer), so the
    adapter is tested against the interface, with real hooks in a real forward pass"""
    import dataclasses

    import torch
    from torch import nn

    @dataclasses.dataclass
    class Cfg:
        n_layers: int
        n_heads: int
        n_ctx: int
        d_model: int
        model_name: str = "tiny-tl"

    class HookPoint(nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name
            self.fns: list = []

        def forward(self, x):
            for fn in self.fns:
                out = fn(x, hook=self)
                if out is not None:
                    x = out
            return x

    class Attn(nn.Module):
        def __init__(self, layer: int) -> None:
            super().__init__()
            self.qk = nn.Linear(d_model, 2 * d_model)
            self.v = nn.Linear(d_model, d_model)
            self.hook_pattern = HookPoint(f"blocks.{layer}.attn.hook_pattern")

        def forward(self, x):
            b, s, _ = x.shape
            q, k = self.qk(x).view(b, s, 2, n_heads, d_model // n_heads).unbind(2)
            scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / (d_model // n_heads) ** 0.5
            causal = torch.ones(s, s, dtype=torch.bool).triu(1)
            pattern = self.hook_pattern(scores.masked_fill(causal, float("-inf")).softmax(-1))
            v = self.v(x).view(b, s, n_heads, d_model // n_heads)
            return torch.einsum("bhqk,bkhd->bqhd", pattern, v).reshape(b, s, d_model)

    class TinyTL(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.cfg = Cfg(n_layers, n_heads, n_ctx, d_model)
            self.tokenizer = _tokenizer("gpt2")
            self.embed = nn.Embedding(len(self.tokenizer), d_model)
            self.pos = nn.Embedding(n_ctx, d_model)
            self.blocks = nn.ModuleList(nn.ModuleDict({"attn": Attn(i)}) for i in range(n_layers))
            self.hook_dict = {b["attn"].hook_pattern.name: b["attn"].hook_pattern for b in self.blocks}

        def to_tokens(self, text, padding_side: str = "right"):
            texts = [text] if isinstance(text, str) else list(text)
            ids = [[self.tokenizer.bos_token_id, *self.tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]
            width = max(len(x) for x in ids)
            assert padding_side == "right"
            return torch.tensor([x + [0] * (width - len(x)) for x in ids])

        def forward(self, inp, return_type=None, padding_side: str = "right"):
            tokens = self.to_tokens(inp, padding_side) if isinstance(inp, (str, list)) else inp
            x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1]))
            for block in self.blocks:
                x = x + block["attn"](x)
            return x if return_type is not None else None

        def run_with_hooks(self, inp, fwd_hooks=(), **kw):
            for name, fn in fwd_hooks:
                self.hook_dict[name].fns.append(fn)
            try:
                return self(inp, **kw)
            finally:
                for hp in self.hook_dict.values():
                    hp.fns.clear()

        def run_with_cache(self, inp, names_filter=lambda n: True, **kw):
            cache: dict = {}

            def save(t, hook):
                cache[hook.name] = t.detach()

            out = self.run_with_hooks(inp, [(n, save) for n in self.hook_dict if names_filter(n)], **kw)
            return out, cache

    return TinyTL().eval()
