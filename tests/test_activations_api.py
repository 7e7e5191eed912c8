"""the reference's activations API on real tiny models: repeated prompts in a batch, a device the
machine lacks, the gallery at the end of `activations_main`, a TransformerLens-style object without
`to_tokens` (the reference's single-prompt path needs none)

Models as in test_model.py: tiny random `transformers` models saved with `save_pretrained` and
loaded back by the real loading code; nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it: nothing is downloaded

torch = pytest.importorskip("torch", reason="needs the `model` extra (torch, transformers)")
pytest.importorskip("transformers", reason="needs the `model` extra (transformers)")

from tiny_models import SENTENCES, save_tiny_model  # noqa: E402

from pattern_lens._layout import layer_key  # noqa: E402
from pattern_lens._model.load import ModelLoadError, load_model  # noqa: E402
from pattern_lens.activations import activations_main, compute_activations, compute_activations_batched  # noqa: E402
from pattern_lens.load_activations import augment_prompt_with_hash  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
A, B = SENTENCES[0], "one two"


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> Path:
    return save_tiny_model("gpt2", tmp_path_factory.mktemp("models") / "tiny-gpt2")


def _patterns(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------------------------------
# a prompt given twice


@pytest.mark.parametrize("pass_seq_lens", [False, True])
def test_batched_repeated_prompt_one_result_per_input(gpt2, tmp_path, pass_seq_lens):
    pm = load_model(str(gpt2), device="cpu")
    prompts = [augment_prompt_with_hash({"text": t}) for t in (A, A, B)]
    seq_lens = [pm.seq_len(p["text"]) for p in prompts]
    assert seq_lens[0] != seq_lens[2]  # a misaligned length would show in B's shape
    paths = compute_activations_batched(prompts, pm, tmp_path / "batch", seq_lens=seq_lens if pass_seq_lens else None)
    assert len(paths) == 3 and paths[0] == paths[1] != paths[2]
    assert [p.parent.name for p in paths] == [p["hash"] for p in prompts]
    for p in prompts:  # every input gets its token metadata, as the reference's
        assert p["n_tokens"] == len(p["tokens"]) == pm.seq_len(p["text"]) - 1  # BOS not counted
    for text, path in ((A, paths[0]), (B, paths[2])):
        single, _ = compute_activations({"text": text}, model=pm, save_path=tmp_path / "single", return_cache=None)
        got, want = _patterns(path), _patterns(single)
        n = pm.seq_len(text)
        for layer in range(pm.n_layers):
            assert got[layer_key(layer)].shape == (1, pm.n_heads, n, n)
            np.testing.assert_allclose(got[layer_key(layer)], want[layer_key(layer)], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# a device the machine lacks


def test_unusable_device_names_the_device(gpt2, tmp_path):
    # cuda:99: a CPU build raises AssertionError, a machine with GPUs a RuntimeError (no such ordinal)
    with pytest.raises(ModelLoadError, match=r"cannot move model .*tiny-gpt2.* to device 'cuda:99'"):
        load_model(str(gpt2), device="cuda:99")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"text": A}) + "\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "pattern_lens.activations", "-m", str(gpt2), "-p", str(prompts),
                        "-s", str(tmp_path / "out"), "--device", "cuda:99"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "to device 'cuda:99'" in r.stderr


# ---------------------------------------------------------------------------------------------------
# the gallery, as the reference's index.html


def test_activations_main_writes_the_gallery_unless_no_index_html(gpt2, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"text": A}) + "\n" + json.dumps({"text": B}) + "\n")
    for no_index_html in (False, True):
        out = tmp_path / f"out-{no_index_html}"
        report = activations_main(str(gpt2), out, str(prompts), False, None, None, False, None, no_index_html,
                                  device="cpu", verbose=False)
        assert report.ok, report.format()
        assert (out / "index.html").is_file() is not no_index_html
        assert (out / "pattern_lens_gallery").is_dir() is not no_index_html
    index_js = (tmp_path / "out-False" / "pattern_lens_gallery" / "data" / "index.js").read_text()
    assert "tiny-gpt2" in index_js


# ---------------------------------------------------------------------------------------------------
# a TransformerLens-style object with only what the reference's single-prompt path uses


class CfgTokenizerCacheOnly:
    """`cfg`, `tokenizer.tokenize`, `run_with_cache`: no `to_tokens`, no `run_with_hooks`; one
    position per character plus a BOS, so the length is known only from the pattern"""

    def __init__(self) -> None:
        self.cfg = SimpleNamespace(n_layers=2, n_heads=2, model_name="duck-model")
        self.tokenizer = SimpleNamespace(tokenize=lambda text: list(text))

    def run_with_cache(self, inp, names_filter=None, return_type=None, **kwargs):
        texts = [inp] if isinstance(inp, str) else list(inp)
        width = max(len(t) for t in texts) + 1
        cache = {}
        for layer in range(self.cfg.n_layers):
            t = torch.zeros(len(texts), 2, width, width)
            for i, text in enumerate(texts):
                n = len(text) + 1
                t[i, :, :n, :n] = torch.full((2, n, n), float(layer + 1) / n)
            cache[layer_key(layer)] = t
        return None, {k: v for k, v in cache.items() if names_filter is None or names_filter(k)}


def test_model_without_to_tokens(tmp_path):
    duck = CfgTokenizerCacheOnly()
    path, cache = compute_activations({"text": "test prompt"}, model=duck, save_path=tmp_path, return_cache="numpy")
    assert path.parent.parent.parent.name == "duck-model"
    for layer in range(2):
        assert cache[layer_key(layer)].shape == (1, 2, 12, 12)
        assert np.all(cache[layer_key(layer)] == np.float32((layer + 1) / 12))
    # a batch: each prompt of unknown length runs alone, so no padding is left in
    prompts = [augment_prompt_with_hash({"text": t}) for t in ("ab", "a much longer prompt")]
    paths = compute_activations_batched(prompts, duck, tmp_path / "batch")
    for p, path in zip(prompts, paths):
        n = len(p["text"]) + 1
        got = _patterns(path)[layer_key(0)]
        assert got.shape == (1, 2, n, n) and np.all(got == np.float32(1 / n))
