"""the gallery's data: tokens as the pattern sees them, one head's row of weights, prompts in input order

- `align_tokens` (pattern_lens._tokens) on data the reference writes: `tokens` without special
  tokens, a BOS-prefixed causal pattern (n + 1), a `[CLS] ... [SEP]` encoder pattern (n + 2), and the
  cases it must refuse (said, not guessed)
- a real encoder and a real causal model saved with `save_pretrained`: `activations` and `run`
  record `pattern_tokens` (special tokens included, one per position of the saved pattern) and
  `first_text_token`; `prompts.jsonl` lists the prompts in input order
- `values.handle_row_request`: the row equals the `.npz` (deflated and stored members), and every
  bad query (`..`, another model's name, out of range) is a JSON error, never a path outside
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pattern_lens._tokens import align_tokens, first_text_token, model_kind
from pattern_lens._view.axes import prompt_axis
from pattern_lens._view.values import handle_row_request, read_row

BERT_CFG = {"model_type": "bert", "architectures": ["BertModel"], "n_layers": 2, "n_heads": 2}
GPT2_CFG = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}
TL_CFG = {"original_architecture": "GPTNeoXForCausalLM", "attention_dir": "causal", "default_prepend_bos": True}
ROBERTA_CFG = {"model_type": "roberta"}


def test_alignment_reference_data_causal_with_bos():
    prompt = {"tokens": ["The", "Ġcat", "Ġsat"]}
    for cfg in (GPT2_CFG, TL_CFG, None):
        axis = align_tokens(prompt, 4, cfg)
        assert axis.tokens == ["<BOS>", "The", "Ġcat", "Ġsat"] and axis.first_text_token == 1 and axis.how == "bos"
    assert align_tokens(prompt, 3, TL_CFG).tokens == ["The", "Ġcat", "Ġsat"]  # no BOS prepended


def test_alignment_reference_data_encoder_cls_sep():
    prompt = {"tokens": ["hello", "world"]}
    axis = align_tokens(prompt, 4, BERT_CFG)
    assert axis.tokens == ["[CLS]", "hello", "world", "[SEP]"] and axis.first_text_token == 1 and axis.how == "cls_sep"
    assert align_tokens(prompt, 4, ROBERTA_CFG).tokens == ["<s>", "hello", "world", "</s>"]
    assert align_tokens(prompt, 4, {"attention_dir": "bidirectional", "original_architecture": "BertForMaskedLM"}).tokens[0] == "[CLS]"


def test_alignment_says_when_it_cannot():
    prompt = {"tokens": ["a", "b"]}
    for side, cfg in ((3, BERT_CFG), (4, GPT2_CFG), (7, None), (1, BERT_CFG)):
        axis = align_tokens(prompt, side, cfg)
        assert axis.tokens is None and axis.how == "unknown"
        assert f"{side} x {side}" in axis.note and "2 tokens" in axis.note
    # recorded tokens win, but only when they fill the pattern
    rec = {"tokens": ["a"], "pattern_tokens": ["[CLS]", "a", "[SEP]"], "first_text_token": 1}
    assert align_tokens(rec, 3, BERT_CFG).how == "recorded"
    assert align_tokens(rec, 5, BERT_CFG).how == "unknown"


def test_model_kind_and_first_text_token():
    assert model_kind(BERT_CFG) == ("encoder", ("[CLS]", "[SEP]"))
    assert model_kind(GPT2_CFG) == ("causal", None)
    assert model_kind({}) == ("unknown", None)
    assert first_text_token(["[CLS]", "a", "b", "[SEP]"], ["a", "b"]) == 1
    assert first_text_token(["<bos>", "x"], ["y"]) is None


def test_prompt_axis_reads_the_side_from_the_raw_png(tmp_path):
    from PIL import Image

    head = tmp_path / "L0" / "H0"
    head.mkdir(parents=True)
    Image.new("RGB", (5, 5)).save(head / "raw.png")
    fields = prompt_axis({"tokens": ["a", "b", "c"]}, tmp_path, BERT_CFG)
    assert fields["axis"] == ["[CLS]", "a", "b", "c", "[SEP]"] and fields["axis_side"] == 5
    fields = prompt_axis({"tokens": ["a", "b"]}, tmp_path, BERT_CFG)
    assert "axis" not in fields and "cannot place" in fields["axis_note"]


def test_figures_jsonl_names_the_defining_module_without_absolute_paths(tmp_path):
    from pattern_lens._output.indexes import write_figures_jsonl
    from pattern_lens.attn_figure_funcs import raw

    write_figures_jsonl(tmp_path, [raw])
    (row,) = [json.loads(line) for line in (tmp_path / "figures.jsonl").read_text().splitlines()]
    assert row["name"] == "raw" and row["source"] == "pattern_lens/attn_figure_funcs.py"  # not figure_util.py (its wrapper)
    assert "def raw(" in row["code"]


# -------------------------------------------------------------------------------------------------
# real models saved with save_pretrained

torch = pytest.importorskip("torch", reason="needs the `model` extra")
pytest.importorskip("transformers", reason="needs the `model` extra")
from tiny_models import SENTENCES, save_tiny_model  # noqa: E402

TEXTS = [SENTENCES[3], SENTENCES[0], SENTENCES[2] + " six", "one two", SENTENCES[1]]  # not in hash order


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tok_models")
    return {kind: save_tiny_model(kind, root / f"tiny-{kind}", n_layers=2, n_heads=2) for kind in ("gpt2", "bert")}


def _prompts_file(path: Path) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return path


def _index(model_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (model_dir / "prompts.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_activations_record_the_tokens_the_pattern_sees(models, kind, tmp_path):
    from pattern_lens.activations import activations_main

    save = tmp_path / "data"
    report = activations_main(str(models[kind]), save, str(_prompts_file(tmp_path / "p.jsonl")), False, None, None,
                              False, None, True, verbose=False)
    assert report.ok
    (model_dir,) = [d for d in save.iterdir() if d.is_dir()]
    rows = _index(model_dir)
    assert [r["text"] for r in rows] == TEXTS  # input order, not hash order
    assert [r["hash"] for r in rows] != sorted(r["hash"] for r in rows)
    for row in rows:
        with np.load(model_dir / "prompts" / row["hash"] / "activations.npz") as npz:
            side = npz["blocks.0.attn.hook_pattern"].shape[-1]
        assert len(row["pattern_tokens"]) == side
        assert row["tokens"] == row["text"].split()  # the reference's field, unchanged (word-level tokenizer)
        first = row["first_text_token"]
        assert row["pattern_tokens"][first : first + len(row["tokens"])] == row["tokens"]
        if kind == "bert":
            assert row["pattern_tokens"][0] == "[CLS]" and row["pattern_tokens"][-1] == "[SEP]" and first == 1
            assert side == len(row["tokens"]) + 2
        else:
            assert row["pattern_tokens"][0] == "<bos>" and first == 1 and side == len(row["tokens"]) + 1
        saved = json.loads((model_dir / "prompts" / row["hash"] / "prompt.json").read_text())
        assert saved["pattern_tokens"] == row["pattern_tokens"]
    # the row endpoint reads exactly what numpy reads (the default archive is deflated)
    row0 = rows[0]
    with np.load(model_dir / "prompts" / row0["hash"] / "activations.npz") as npz:
        want = npz["blocks.1.attn.hook_pattern"][0, 1, 2]
    status, body = handle_row_request(save, f"model={model_dir.name}&prompt={row0['hash']}&layer=1&head=1&row=2")
    assert status == 200, body
    got = json.loads(body)
    assert np.array_equal(np.asarray(got["values"], dtype=want.dtype), want) and got["n_ctx"] == want.shape[0]


def test_run_records_pattern_tokens_in_input_order(models, tmp_path):
    from pattern_lens._engine.stream import run_main

    save = tmp_path / "data"
    summary = run_main(str(models["bert"]), _prompts_file(tmp_path / "p.jsonl"), save, n_jobs=1, progress=False, verbose=False,
                       figure_funcs_select="raw")
    assert summary.ok, summary.format()
    (model_dir,) = [d for d in save.iterdir() if d.is_dir()]
    rows = _index(model_dir)
    assert [r["text"] for r in rows] == TEXTS
    from PIL import Image

    for row in rows:
        with Image.open(model_dir / "prompts" / row["hash"] / "L0" / "H0" / "raw.png") as im:
            assert im.size == (len(row["pattern_tokens"]),) * 2
        assert row["pattern_tokens"][0] == "[CLS]"
        stats = json.loads((model_dir / "prompts" / row["hash"] / "head_stats.json").read_text())
        for head in stats["heads"]:
            assert 0 <= head["min"] <= head["max"] <= 1  # the range raw is normalised to: the page's colour -> weight


# -------------------------------------------------------------------------------------------------
# the row endpoint: exact values, stored members, bad queries


@pytest.fixture
def npz_data(tmp_path) -> tuple[Path, np.ndarray]:
    from pattern_lens.synthetic import write_synthetic_model

    model_dir = write_synthetic_model(tmp_path, n_layers=2, n_heads=3, n_ctx=9, n_prompts=1, seed=4)
    (row,) = _index(model_dir)
    path = model_dir / "prompts" / row["hash"] / "activations.npz"
    with np.load(path) as npz:
        layers = np.stack([npz[f"blocks.{i}.attn.hook_pattern"][0] for i in range(2)])
    return tmp_path, layers


def test_row_request_exact_and_stored(npz_data):
    root, layers = npz_data
    (model_dir,) = [d for d in root.iterdir() if d.is_dir()]
    (row,) = _index(model_dir)
    path = model_dir / "prompts" / row["hash"] / "activations.npz"
    for layer, head, q in ((0, 0, 0), (1, 2, 8), (1, 1, 4)):
        assert np.array_equal(read_row(path, layer, head, q), layers[layer, head, q])
    # an archive of stored (not deflated) members, as compress_level 0 writes
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez(path, **arrays)
    with zipfile.ZipFile(path) as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    assert np.array_equal(read_row(path, 1, 2, 5), layers[1, 2, 5])
    status, body = handle_row_request(root, f"model={model_dir.name}&prompt={row['hash']}&layer=1&head=2&row=5")
    assert status == 200 and json.loads(body)["values"] == layers[1, 2, 5].tolist()


def test_row_request_refuses_bad_queries(npz_data, tmp_path):
    root, _ = npz_data
    (model_dir,) = [d for d in root.iterdir() if d.is_dir()]
    (row,) = _index(model_dir)
    good = {"model": model_dir.name, "prompt": row["hash"], "layer": "0", "head": "0", "row": "0"}
    (root.parent / "secret").mkdir(exist_ok=True)
    cases = {
        "prompt": ["..", "../../x", "a/b", "%2e%2e", ""],
        "model": ["..", "../secret", "/etc", "no-such-model", ""],
        "layer": ["-1", "x", "7", "1e3"],
        "head": ["3", "-0"],
        "row": ["9", " 1"],
    }
    for key, bad_values in cases.items():
        for bad in bad_values:
            query = "&".join(f"{k}={bad if k == key else v}" for k, v in good.items())
            status, body = handle_row_request(root, query)
            assert status in (400, 404), (query, status, body)
            assert set(json.loads(body)) == {"error"}
    status, body = handle_row_request(root, "model=a&model=b&prompt=x&layer=0&head=0&row=0")
    assert status == 400
    # no activations.npz: an answer with no values and the reason the page shows (no failed request)
    (model_dir / "prompts" / row["hash"] / "activations.npz").unlink()
    status, body = handle_row_request(root, "&".join(f"{k}={v}" for k, v in good.items()))
    assert status == 200 and json.loads(body)["values"] is None and "--save-activations" in json.loads(body)["reason"]
