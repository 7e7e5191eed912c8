"""issue 20: the model front door (prompts before the model, offline fail-fast, -q), TransformerLens-style
objects as the reference handles them, load_activations' errors and deprecation, `_save_activations`"""

import json
import socket
import time
import warnings
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pattern_lens.activations as act
from pattern_lens._layout import layer_key
from pattern_lens._model.offline import hub_offline, quiet_model_loading
from pattern_lens.load_activations import ActivationsMissingError, load_activations
from pattern_lens.prompts import PromptsFileError


class StubTokenizerTL:
    """TransformerLens-style: `to_tokens` and `run_with_hooks` fail as a HookedTransformer without a
    tokenizer does; `run_with_cache` takes the text; the tokenizer only has `tokenize`"""

    def __init__(self):
        self.cfg = SimpleNamespace(n_layers=2, n_heads=2, model_name="stub-tl")
        self.tokenizer = mock.MagicMock()
        self.tokenizer.tokenize = lambda text: list(text)
        self.texts = []

    def to_tokens(self, *a, **k):
        raise AssertionError("Set the tokenizer for the model by calling set_tokenizer")

    def run_with_hooks(self, *a, **k):
        raise AssertionError("Set the tokenizer for the model by calling set_tokenizer")

    def run_with_cache(self, inp, names_filter=None, return_type=None, **kwargs):
        self.texts.append(inp)
        n = len(inp) + 1
        cache = {layer_key(l): torch.full((1, 2, n, n), float(l + 1)) for l in range(2)}
        return None, {k: v for k, v in cache.items() if names_filter is None or names_filter(k)}


def test_tl_object_with_stub_tokenizer_gets_text(tmp_path):
    model = StubTokenizerTL()
    path, cache = act.compute_activations({"text": "hello"}, model=model, save_path=tmp_path, return_cache="numpy")
    assert model.texts == ["hello"]
    assert cache[layer_key(1)].shape == (1, 2, 6, 6) and np.all(cache[layer_key(1)] == 2.0)
    saved = json.loads((path.parent / "prompt.json").read_text())
    assert saved["tokens"] == list("hello") and saved["n_tokens"] == 5


def test_save_activations_roundtrip_and_levels(tmp_path):
    rng = np.random.default_rng(0)
    cache = {layer_key(l): rng.random((1, 2, 16, 16), dtype=np.float32) for l in range(2)}
    for level in (0, 6):
        p = act._save_activations(tmp_path / f"a{level}.npz", cache, compress_level=level)
        with np.load(p) as z:
            assert list(z.files) == list(cache) and all(np.array_equal(z[k], cache[k]) for k in cache)
    assert (tmp_path / "a0.npz").stat().st_size > (tmp_path / "a6.npz").stat().st_size


def test_reference_module_names_exist():
    for name in ("SpinnerContext", "load_model", "load_text_data", "write_html_index", "generate_models_jsonl",
                 "generate_prompts_jsonl", "asdict", "json_serialize", "compute_activations_batched", "_save_activations"):
        assert hasattr(act, name), name
    assert act.json_serialize({"a": (1, 2), "b": torch.device("cpu")}) == {"a": [1, 2], "b": "cpu"}


def test_load_activations_messages_and_deprecation(tmp_path):
    prompt = {"text": "t", "hash": "h"}
    with pytest.raises(ActivationsMissingError, match="^Prompt file .*prompt.json does not exist"):
        load_activations("m", prompt, tmp_path)
    d = tmp_path / "m" / "prompts" / "h"
    d.mkdir(parents=True)
    (d / "prompt.json").write_text(json.dumps(prompt))
    with pytest.raises(ActivationsMissingError, match="^Activations file .*activations.npz does not exist") as e:
        load_activations("m", prompt, tmp_path)
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(ValueError, match="^Invalid return_fmt: 'torch'"):
        load_activations("m", prompt, tmp_path, return_fmt="torch")
    np.savez(d / "activations.npz", **{layer_key(0): np.ones((1, 1, 2, 2), np.float32)})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        _, cache = load_activations("m", prompt, tmp_path, return_fmt="numpy")
        load_activations("m", prompt, tmp_path)
    assert [str(x.message).startswith("return_fmt is deprecated") for x in w if x.category is DeprecationWarning] == [True]
    assert isinstance(cache[layer_key(0)], np.ndarray)
    path, tc = act.get_activations({"text": "t", "hash": "h"}, model="m", save_path=tmp_path, return_cache="torch")
    assert isinstance(tc[layer_key(0)], torch.Tensor)


def _no_model_load():
    return mock.patch.object(act, "load_model", side_effect=AssertionError("model loaded before the prompts were checked"))


def test_missing_prompts_file_before_model(tmp_path):
    with _no_model_load(), pytest.raises(PromptsFileError, match="prompts file not found"):
        act.activations_main("EleutherAI/pythia-14m", tmp_path, str(tmp_path / "missing.jsonl"), False, None, None, False, None, True)
    assert not any(tmp_path.rglob("model_cfg.json"))


def test_cut_leaving_no_prompt_before_model(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps({"text": "x" * n}) for n in (10, 20, 30)) + "\n")
    with _no_model_load(), pytest.raises(PromptsFileError, match=r"all 3 prompts read were dropped by the cut \(3 shorter than --min-chars 100\)"):
        act.activations_main("gpt2", tmp_path, str(f), True, 100, 1000, False, None, True)


def test_dropped_prompts_are_counted(tmp_path, capsys):
    from pattern_lens._model.front_door import prompts_before_model

    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps({"text": "x" * n}) for n in (10, 150, 250)) + "\n")
    entries, errors, _ = prompts_before_model(f, tmp_path, "m", True, 100, 200, False, None, True)
    # 10: too short; 150: kept; 250: cut into 200 + 50, the 50 dropped
    assert [len(p["text"]) for _, p in entries] == [150, 200] and errors == []
    err = capsys.readouterr().err
    assert "2 prompts dropped (1 shorter than --min-chars 100, 1 last pieces of texts cut at --max-chars 200" in err


def test_hub_name_offline_fails_at_once(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from pattern_lens._model.load import ModelLoadError, load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    t0 = time.monotonic()
    with pytest.raises(ModelLoadError, match=r"not in the local Hugging Face cache; the hub cannot be reached \(HF_HUB_OFFLINE=1\)"):
        load_model("EleutherAI/pythia-14m-not-cached", device="cpu")
    assert time.monotonic() - t0 < 15


def test_probe_is_one_try(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    calls = []

    def refuse(addr, timeout):
        calls.append((addr, timeout))
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example:8443")
    assert "no connection to hub.example:8443" in hub_offline()
    assert calls == [(("hub.example", 8443), 3.0)]
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert hub_offline() is None and len(calls) == 1


def test_quiet_silences_and_restores_bars():
    pytest.importorskip("transformers")
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as tf_logging

    assert tf_logging.is_progress_bar_enabled()
    with quiet_model_loading(True):
        assert not tf_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
    assert tf_logging.is_progress_bar_enabled() and not are_progress_bars_disabled()


class CharTL:
    """TransformerLens-style with `to_tokens`: one token per character plus a BOS; batches right-padded with zeros"""

    def __init__(self):
        self.cfg = SimpleNamespace(n_layers=2, n_heads=2, model_name="char-tl", n_ctx=512)
        self.tokenizer = SimpleNamespace(tokenize=lambda text: list(text))

    def to_tokens(self, text, **kwargs):
        return torch.zeros(1, len(text) + 1, dtype=torch.long)

    def run_with_cache(self, inp, names_filter=None, return_type=None, **kwargs):
        texts = [inp] if isinstance(inp, str) else list(inp)
        width = max(len(t) for t in texts) + 1
        cache = {}
        for l in range(2):
            t = torch.zeros(len(texts), 2, width, width)
            for i, text in enumerate(texts):
                n = len(text) + 1
                t[i, :, :n, :n] = float(l + 1) + n / 1000
            cache[layer_key(l)] = t
        return None, {k: v for k, v in cache.items() if names_filter is None or names_filter(k)}


def test_activations_main_batches_longest_first_through_compute_activations_batched(tmp_path):
    f = tmp_path / "p.jsonl"
    lines = [json.dumps({"text": "x" * n}) for n in (3, 9, 5, 7)] + ["not json", json.dumps({"text": "y" * 4})]
    f.write_text("\n".join(lines) + "\n")
    with mock.patch.object(act, "load_model", return_value=CharTL()), mock.patch.object(
        act, "compute_activations_batched", wraps=act.compute_activations_batched
    ) as spy:
        report = act.activations_main("ignored", tmp_path, str(f), True, 0, 100, True, None, True, batch_size=2)
    assert [[len(p["text"]) for p in c.kwargs["prompts"]] for c in spy.call_args_list] == [[9, 7], [5, 4], [3]]
    assert [c.kwargs["seq_lens"] for c in spy.call_args_list] == [[10, 8], [6, 5], [4]]
    assert report.n_computed == 5 and report.errors == [f"{f}:5: not valid JSON (Expecting value: line 1 column 1 (char 0))"]
    for n in (3, 4, 5, 7, 9):
        prompt = {"text": ("y" if n == 4 else "x") * n}
        _, cache = load_activations("char-tl", prompt, tmp_path)
        assert cache[layer_key(1)].shape == (1, 2, n + 1, n + 1)
        assert np.all(cache[layer_key(1)] == np.float32(2 + (n + 1) / 1000))  # no padding left in


def test_cli_quiet_prints_nothing(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tiny_models import save_tiny_model

    folder = save_tiny_model("gpt2", tmp_path / "tiny-gpt2", n_layers=1, n_heads=2)
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"text": "a short prompt for a tiny model"}) + "\n")
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pattern_lens.activations", "-m", str(folder), "-p", str(f), "-s", str(tmp_path / "out"), "--no-index-html"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(repo), "HF_HUB_OFFLINE": "1"}
    loud = subprocess.run(cmd + ["--force"], capture_output=True, text=True, env=env, timeout=300)
    quiet = subprocess.run(cmd + ["--force", "-q"], capture_output=True, text=True, env=env, timeout=300)
    assert loud.returncode == quiet.returncode == 0, loud.stderr + quiet.stderr
    assert "Loading weights" in loud.stderr or "activations" in loud.stderr  # the bars are there without -q
    assert quiet.stdout == "" and quiet.stderr == "", quiet.stderr
