"""stage 1: from a model to attention patterns, and streaming them into the renderer

Real components throughout: tiny random-weight `transformers` models (GPT-2-style causal LM, BERT-
style encoder) built from configs, with a tokenizer trained here, saved with `save_pretrained` and
loaded back by the real loading code; a real tiny torch model with TransformerLens's interface; real
worker processes. Nothing is downloaded (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from interrupt_support import assert_one_interrupt_line, child_env, interrupt_when

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it: nothing is downloaded

torch = pytest.importorskip("torch", reason="the model tests need the `model` extra (torch, transformers)")
transformers = pytest.importorskip("transformers", reason="the model tests need the `model` extra (transformers)")

from tiny_models import SENTENCES, make_tiny_tl, save_tiny_model  # noqa: E402

from pattern_lens._layout import layer_key  # noqa: E402
from pattern_lens._model.compute import make_batches, prepare_prompts, run_batch  # noqa: E402
from pattern_lens._model.load import load_model  # noqa: E402
from pattern_lens._engine.stream import run_main  # noqa: E402
from pattern_lens.activations import activations_main, compute_activations, compute_activations_batched  # noqa: E402
from pattern_lens.consts import sanitize_name_str  # noqa: E402
from pattern_lens.figures import figures_main  # noqa: E402
from pattern_lens.load_activations import (  # noqa: E402
    ActivationsMismatchError,
    ActivationsMissingError,
    InvalidPromptError,
    augment_prompt_with_hash,
    load_activations,
)

REPO = Path(__file__).resolve().parents[1]

# prompts of different lengths (words from the tokenizer's vocabulary, plus unknown ones)
PROMPTS = [
    SENTENCES[0],
    "one two three",
    SENTENCES[1] + " " + SENTENCES[3],
    "bread and water and salt and flour and time and bread",
    SENTENCES[2] + " zebra",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {kind: save_tiny_model(kind, root / f"tiny-{kind}") for kind in ("gpt2", "bert")}


def _prompts_file(path: Path, texts=PROMPTS) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------
# names and hashes


def test_sanitize_name_str_as_the_reference():
    assert sanitize_name_str("google/gemma-2b") == "google-gemma-2b"
    assert sanitize_name_str("org/sub/model") == "org-sub-model"
    for name, expected in [("model@v2", "model_v2"), ("model name", "model_name"), ("model:v2", "model_v2")]:
        assert sanitize_name_str(name) == expected
    for name in ["gpt2", "pythia-14m", "my_model", "model.v2", ""]:
        assert sanitize_name_str(name) == name
        assert sanitize_name_str(sanitize_name_str(name + "/x y")) == sanitize_name_str(name + "/x y")


def test_old_folder_name_still_found(tmp_path):
    """data written when `/` became `_` still renders under the hub name"""
    from pattern_lens.synthetic import write_synthetic_model

    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=1, n_ctx=8, n_prompts=1, seed=0)
    old = model_dir.rename(tmp_path / "EleutherAI_pythia-14m")
    summary = figures_main("EleutherAI/pythia-14m", tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    assert summary.ok and summary.n_rendered == 1
    assert list(old.glob("prompts/*/L0/H0/raw.png"))


def test_prompt_hash_and_load_errors(tmp_path):
    import base64
    import hashlib

    p = augment_prompt_with_hash({"text": "héllo"})
    assert p["hash"] == base64.urlsafe_b64encode(hashlib.md5("héllo".encode()).digest()).decode().rstrip("=")
    assert augment_prompt_with_hash({"hash": "x"}) == {"hash": "x"}
    with pytest.raises(InvalidPromptError):
        augment_prompt_with_hash({"meta": 1})
    with pytest.raises(ActivationsMissingError) as e:
        load_activations("m", {"text": "a"}, tmp_path, return_fmt="numpy")
    assert "prompt.json" in str(e.value)
    d = tmp_path / "m" / "prompts" / augment_prompt_with_hash({"text": "a"})["hash"]
    d.mkdir(parents=True)
    (d / "prompt.json").write_text(json.dumps({"text": "b", "hash": d.name}))
    with pytest.raises(ActivationsMismatchError):
        load_activations("m", {"text": "a"}, tmp_path, return_fmt="numpy")
    with pytest.raises(ValueError):
        load_activations("m", {"text": "a"}, tmp_path, return_fmt="jax")


# ---------------------------------------------------------------------------------------------------
# hooks see exactly what the model returns


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_hooked_patterns_equal_output_attentions_bit_for_bit(models, kind):
    pm = load_model(str(models[kind]), device="cpu")
    assert pm.model.config._attn_implementation == "eager"
    prepared, errors = prepare_prompts(pm, [(f"p{i}", {"text": t}) for i, t in enumerate(PROMPTS)])
    assert not errors
    (batch,) = make_batches(prepared, batch_size=len(prepared))
    assert len({p.seq_len for p in batch}) > 2  # really padded
    got: dict[tuple[int, int], np.ndarray] = {}
    run_batch(pm, batch, range(pm.n_layers), lambda p, layer, arr: got.__setitem__((batch.index(p), layer), arr))

    # the model's own attentions for the same right-padded batch
    ids = [pm.ids(p.prompt["text"]) for p in batch]
    width = max(map(len, ids))
    input_ids = torch.tensor([x + [0] * (width - len(x)) for x in ids])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    with torch.no_grad():
        out = pm.model(input_ids=input_ids, attention_mask=mask, output_attentions=True)
    assert len(out.attentions) == pm.n_layers
    for (i, layer), arr in got.items():
        n = batch[i].seq_len
        expected = out.attentions[layer][i, :, :n, :n].numpy()
        assert arr.dtype == np.float32 and arr.shape == (pm.n_heads, n, n)
        assert arr.tobytes() == np.ascontiguousarray(expected).tobytes()
    if kind == "gpt2":  # a BOS is prepended, as TransformerLens's to_tokens does
        assert ids[0][0] == pm.tokenizer.bos_token_id
    else:
        assert pm.tokenizer.convert_ids_to_tokens(ids[0][0]) == "[CLS]"


def test_single_prompt_file_matches_unpadded_forward(models, tmp_path):
    """compute_activations: the .npz holds (1, n_heads, n, n) per layer = the model's own attentions"""
    pm = load_model(str(models["gpt2"]), device="cpu")
    path, cache = compute_activations({"text": PROMPTS[2]}, model=pm, save_path=tmp_path, return_cache="numpy")
    ids = torch.tensor([pm.ids(PROMPTS[2])])
    with torch.no_grad():
        out = pm.model(input_ids=ids, output_attentions=True)
    with np.load(path) as npz:
        assert sorted(npz.files) == sorted(layer_key(i) for i in range(pm.n_layers))
        for i in range(pm.n_layers):
            assert npz[layer_key(i)].tobytes() == out.attentions[i].numpy().tobytes()
            assert npz[layer_key(i)].shape == (1, pm.n_heads, ids.shape[1], ids.shape[1])
            assert cache[layer_key(i)].tobytes() == npz[layer_key(i)].tobytes()
    prompt = json.loads((path.parent / "prompt.json").read_text())
    assert prompt["n_tokens"] == len(prompt["tokens"]) == ids.shape[1] - 1  # BOS not counted, as the reference
    assert path.parent.parent.parent.name == "tiny-gpt2"


def test_bfloat16_becomes_float32_float16_stays():
    from pattern_lens._model.compute import layer_to_numpy

    t = torch.rand(2, 3, 5, 5)
    bf = layer_to_numpy(t.to(torch.bfloat16), 1, 4)
    assert bf.dtype == np.float32 and np.array_equal(bf, t.to(torch.bfloat16)[1, :, :4, :4].float().numpy())
    assert layer_to_numpy(t.half(), 0, 5).dtype == np.float16


def test_transformerlens_style_model(tmp_path):
    """hooks through run_with_hooks, or the cache of run_with_cache, equal the model's own patterns"""
    tl = make_tiny_tl()
    texts = PROMPTS[:3]
    _, cache = tl.run_with_cache(texts[1], names_filter=lambda n: True)
    _, cache = tl.run_with_cache(texts[1])
    path, got = compute_activations({"text": texts[1]}, model=tl, save_path=tmp_path, return_cache="numpy")
    assert path.parent.parent.parent.name == "tiny-tl"
    for name, t in cache.items():
        assert got[name].tobytes() == t.numpy().tobytes()

    class CacheOnly:  # an object with run_with_cache but no run_with_hooks
        cfg, tokenizer, to_tokens = tl.cfg, tl.tokenizer, tl.to_tokens

        def run_with_cache(self, *a, **kw):
            return tl.run_with_cache(*a, **kw)

    prompts = [augment_prompt_with_hash({"text": t}) for t in texts]
    paths_hooks = compute_activations_batched([dict(p) for p in prompts], tl, tmp_path / "hooks")
    paths_cache = compute_activations_batched([dict(p) for p in prompts], CacheOnly(), tmp_path / "cache")
    for a, b, t in zip(paths_hooks, paths_cache, texts):
        _, single = tl.run_with_cache(t)
        with np.load(a) as na, np.load(b) as nb:
            for name, s in single.items():
                assert na[name].shape == s.shape  # trimmed to the prompt's own length
                assert na[name].tobytes() == nb[name].tobytes()
                np.testing.assert_allclose(na[name], s.numpy(), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# streaming == activations -> .npz -> render, byte for byte


@pytest.mark.parametrize("kind,profile,n_jobs", [("gpt2", "exact", 1), ("bert", "fast", 1), ("gpt2", "fast", 2)])
def test_stream_equals_two_step(models, tmp_path, monkeypatch, kind, profile, n_jobs):
    # a run this small would go sequential; with 2 jobs, really use worker processes (arrays
    # handed over as memory-mapped files)
    monkeypatch.setattr("pattern_lens._engine.stream.SMALL_RUN_SECONDS", 0.0)
    prompts = _prompts_file(tmp_path / "prompts.jsonl")
    two, one = tmp_path / "two", tmp_path / "one"
    report = activations_main(str(models[kind]), two, str(prompts), False, None, None, False, None, True,
                              device="cpu", batch_size=3, verbose=False)
    assert report.ok and report.n_computed == len(PROMPTS)
    rendered = figures_main(f"tiny-{kind}", two, None, False, "raw", n_jobs=1, profile=profile, progress=False, verbose=False)
    assert rendered.ok
    summary = run_main(str(models[kind]), prompts, one, batch_size=3, device="cpu", figure_funcs_select="raw",
                       profile=profile, n_jobs=n_jobs, progress=False, verbose=False)
    assert summary.ok, summary.format()
    assert summary.n_rendered == len(PROMPTS) * 3 * 4 and summary.n_batches == 2
    assert summary.backend == ("warm" if n_jobs == 2 else "sequential")
    a = {k: v for k, v in _tree(two).items() if not k.endswith("activations.npz")}
    b = _tree(one)
    assert sorted(a) == sorted(b)
    assert sum(k.endswith("raw.png") for k in b) == len(PROMPTS) * 12
    for k in a:
        assert a[k] == b[k], k
    # a rerun resumes without a forward pass
    again = run_main(str(models[kind]), prompts, one, batch_size=3, device="cpu", figure_funcs_select="raw",
                     profile=profile, n_jobs=1, progress=False, verbose=False)
    assert again.ok and again.n_skipped == len(PROMPTS) * 12 and again.n_batches == 0


def test_stream_saves_activations_when_asked(models, tmp_path):
    prompts = _prompts_file(tmp_path / "prompts.jsonl", PROMPTS[:2])
    run_main(str(models["gpt2"]), prompts, tmp_path / "s", figure_funcs_select="raw", layers=[1], n_jobs=1,
             save_activations=True, compress_level=1, progress=False, verbose=False)
    activations_main(str(models["gpt2"]), tmp_path / "a", str(prompts), False, None, None, False, None, True,
                     compress_level=0, verbose=False)
    for npz in (tmp_path / "s").rglob("activations.npz"):
        ref = tmp_path / "a" / npz.relative_to(tmp_path / "s")
        with np.load(npz) as x, np.load(ref) as y:
            assert sorted(x.files) == sorted(y.files) == [layer_key(i) for i in range(3)]
            for k in x.files:
                assert x[k].tobytes() == y[k].tobytes()
    assert not list((tmp_path / "s").rglob("L0"))  # only the selected layer is rendered


# ---------------------------------------------------------------------------------------------------
# memory: a few layers in flight, not the prompt's whole cache


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc (Linux)")
def test_stream_memory_stays_near_the_layers_in_flight(tmp_path):
    n_layers, n_heads, n_ctx = 48, 8, 400
    folder = save_tiny_model("gpt2", tmp_path / "deep", n_layers=n_layers, n_heads=n_heads, d_model=16, n_ctx=n_ctx)
    words = " ".join(SENTENCES).split()
    text = " ".join(words[i % len(words)] for i in range(n_ctx - 1))
    prompts = _prompts_file(tmp_path / "p.jsonl", [text])
    pm = load_model(str(folder), device="cpu")
    assert pm.seq_len(text) == n_ctx
    layer_bytes = n_heads * n_ctx * n_ctx * 4
    cache_bytes = n_layers * layer_bytes  # 246 MB: what the reference holds per prompt
    with torch.no_grad():  # warm up: the model's own working memory for one forward pass
        pm.model(input_ids=torch.tensor([pm.ids(text)]))
    # and the render path (imports, numba compiling the kernels) on a short prompt
    run_main(pm, _prompts_file(tmp_path / "warm.jsonl", ["one two"]), tmp_path / "warm", figure_funcs_select="raw",
             profile="fast", n_jobs=1, progress=False, verbose=False)
    base = _rss()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        summary = run_main(pm, prompts, tmp_path / "out", figure_funcs_select="raw", profile="fast", n_jobs=1,
                           progress=False, verbose=False)
    finally:
        stop.set()
        sampler.join()
    assert summary.ok and summary.n_rendered == n_layers * n_heads
    growth = peak[0] - base
    # in flight: the queue (2), the layer rendering, the one being copied out, the model's own
    # working tensors and allocator slack; measured 6-8 layers here. A third of the cache at most:
    print(f"peak RSS growth {growth / 1e6:.1f} MB; layer {layer_bytes / 1e6:.1f} MB; cache {cache_bytes / 1e6:.0f} MB")
    assert growth < 16 * layer_bytes, f"grew {growth / 1e6:.0f} MB; a layer is {layer_bytes / 1e6:.1f} MB, the cache {cache_bytes / 1e6:.0f} MB"


def test_worker_processes_get_only_the_layers_in_flight(tmp_path, monkeypatch):
    """with loky, layers travel as files the workers map, deleted as results come back: the files on disk (RAM) at any
    moment stay a few layers, where joblib's own memory-mapping kept every layer until the end"""
    import pattern_lens._input.handover as handover
    import pattern_lens._engine.stream as stream

    n_layers, n_heads, n_ctx = 24, 4, 256
    folder = save_tiny_model("gpt2", tmp_path / "deep", n_layers=n_layers, n_heads=n_heads, d_model=16, n_ctx=n_ctx)
    words = " ".join(SENTENCES).split()
    texts = [" ".join(words[(i + k) % len(words)] for i in range(n_ctx - 1)) for k in range(2)]
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(handover, "spill_root", lambda: str(spill))
    monkeypatch.setattr(stream, "SMALL_RUN_SECONDS", 0.0)
    layer_bytes = n_heads * n_ctx * n_ctx * 4
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            size = 0
            for f in spill.rglob("*.npy"):
                try:
                    size += f.stat().st_size
                except FileNotFoundError:
                    pass
            peak[0] = max(peak[0], size)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        summary = run_main(str(folder), _prompts_file(tmp_path / "p.jsonl", texts), tmp_path / "out", figure_funcs_select="raw",
                           profile="fast", n_jobs=2, backend="loky", progress=False, verbose=False)
    finally:
        stop.set()
        sampler.join()
    assert summary.ok and summary.backend == "loky" and summary.n_rendered == 2 * n_layers * n_heads
    print(f"peak hand-over files {peak[0] / layer_bytes:.1f} layers of {2 * n_layers}")
    # queue 2 + joblib's 4 dispatched ahead + 2 rendering + results back whose files the run has not
    # deleted yet (it deletes a file when the task's result is back: a result lost with a pool that
    # died leaves the file for the rerun): 9 on a quiet machine, 13 seen under load; 16 of 48 here
    assert 0 < peak[0] <= 16 * layer_bytes
    assert not list(spill.iterdir())  # the run's folder is gone


# ---------------------------------------------------------------------------------------------------
# bad input: named, the rest goes on, non-zero exit


def _cli(*argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "pattern_lens.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_run_cli_bad_prompts_reported_rest_rendered(models, tmp_path):
    long_text = " ".join(["one"] * 80)  # the tiny models' context is 64
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"text": PROMPTS[0]}) + "\n"
        + "{not json\n"
        + json.dumps({"meta": "no text"}) + "\n"
        + json.dumps({"text": "   "}) + "\n"
        + json.dumps({"text": long_text}) + "\n"
        + json.dumps({"text": PROMPTS[1]}) + "\n"
    )
    r = _cli("run", "-m", f"{models['gpt2']},{tmp_path / 'no-such-model'}", "-p", str(prompts), "-s", str(tmp_path / "out"),
             "--figure-funcs", "raw", "--jobs", "1", "-q")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    err = r.stdout + r.stderr
    assert f"{prompts}:2: not valid JSON" in err
    assert f"{prompts}:3: no 'text' key" in err
    assert f"{prompts}:4: empty prompt" in err
    assert f"{prompts}:5: prompt is 81 tokens, longer than the context of tiny-gpt2 (64 positions)" in err
    assert f"cannot load model '{tmp_path / 'no-such-model'}'" in err
    assert len(list((tmp_path / "out" / "tiny-gpt2" / "prompts").glob("*/L2/H3/raw.png"))) == 2

    r = _cli("activations", "-m", f"surely-not-a-model-name-xyz,{models['bert']}", "-p", str(prompts),
             "-s", str(tmp_path / "out3"), "--compress-level", "1")
    assert r.returncode == 1 and "surely-not-a-model-name-xyz" in r.stderr and "Hugging Face hub" in r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert f"{prompts}:3: no 'text' key" in r.stdout
    assert len(list((tmp_path / "out3" / "tiny-bert" / "prompts").glob("*/activations.npz"))) == 2


def test_no_index_html_for_activations_and_run(models, tmp_path):
    """`--no-index-html` (the reference's flag) for `python -m pattern_lens.activations` and `run`;
    `run` without it writes the gallery as `render` does"""
    prompts = _prompts_file(tmp_path / "prompts.jsonl", PROMPTS[:2])
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "pattern_lens.activations", "-m", str(models["gpt2"]), "-p", str(prompts),
                        "-s", str(tmp_path / "acts"), "--no-index-html"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert len(list((tmp_path / "acts").rglob("activations.npz"))) == 2
    for flag, gallery in (["--no-index-html"], False), ([], True):
        out = tmp_path / f"run{len(flag)}"
        r = _cli("run", "-m", str(models["gpt2"]), "-p", str(prompts), "-s", str(out), "--figure-funcs", "raw",
                 "--jobs", "1", "-q", *flag)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
        assert (out / "index.html").is_file() == gallery


def _hash_of(text: str) -> str:
    return augment_prompt_with_hash({"text": text})["hash"]


def test_run_reports_a_worker_that_dies_and_goes_on(models, tmp_path):
    """a figure function that segfaults its worker on one head: reported, the rest rendered, exit 1;
    the crash costs only that function on that head (issue 18, point 5): `steady` after it, the
    head's preview and its statistics are made, and the summary counts what is on disk"""
    prompts = _prompts_file(tmp_path / "prompts.jsonl", PROMPTS[:2])
    env = child_env("run-segfault", HF_HUB_OFFLINE="1", FAULT_HASH=_hash_of(PROMPTS[0]), FAULTS=json.dumps({"L1/H2": "segfault"}))
    r = subprocess.run([sys.executable, "-m", "pattern_lens.cli", "run", "-m", str(models["gpt2"]), "-p", str(prompts),
                        "-s", str(tmp_path / "out"), "--figure-funcs", "raw,misbehave,steady", "--import", "fault_funcs",
                        "--jobs", "2", "-q", "--no-index-html"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out and "TerminatedWorkerError" not in out, out
    assert "misbehave: 1 heads; first: worker process died (SIGSEGV(-11))" in r.stdout, out
    assert "not run" not in out and "steady:" not in r.stdout, out
    model_dir = tmp_path / "out" / "tiny-gpt2"
    assert len(list(model_dir.rglob("raw.png"))) == 2 * 3 * 4
    assert len(list(model_dir.rglob("misbehave.png"))) == 2 * 3 * 4 - 1
    assert len(list(model_dir.rglob("steady.png"))) == 2 * 3 * 4
    crashed = model_dir / "prompts" / _hash_of(PROMPTS[0])
    assert sorted(p.name for p in (crashed / "L1" / "H2").iterdir()) == ["misbehave.error.txt", "preview.png", "raw.png", "steady.png"]
    assert len(json.loads((crashed / "head_stats.json").read_text())["heads"]) == 3 * 4
    assert ": 24 rendered" in r.stdout and f"{3 * 24 - 1} figures written" in r.stdout and "24 heads summarised" in r.stdout, r.stdout
    for index in (tmp_path / "out" / "figures.jsonl", tmp_path / "out" / "models.jsonl", model_dir / "prompts.jsonl"):
        assert index.is_file()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_interrupted_prints_one_line_writes_indexes_and_exits_128_plus_signal(models, tmp_path, signum):
    prompts = _prompts_file(tmp_path / "prompts.jsonl")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pattern_lens.cli", "run", "-m", str(models["gpt2"]), "-p", str(prompts),
                             "-s", str(out), "--figure-funcs", "slow", "--import", "fault_funcs", "--jobs", "2",
                             "--no-index-html"],
                            cwd=REPO, env=child_env("run-interrupt", HF_HUB_OFFLINE="1"), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = interrupt_when(proc, lambda: len(list(out.rglob("slow.png"))) >= 3, signum)
    assert_one_interrupt_line(proc, signum, stdout, stderr)
    for index in (out / "figures.jsonl", out / "models.jsonl", out / "tiny-gpt2" / "prompts.jsonl"):
        assert index.is_file()
    assert len(list(out.rglob("slow.png"))) < len(PROMPTS) * 12


def test_spill_folders_carry_the_pid_and_dead_ones_are_removed(models, tmp_path, monkeypatch):
    """a SIGKILLed `run` leaves its hand-over folder behind: the next run deletes it, never a live one's"""
    import pattern_lens._input.handover as handover
    import pattern_lens._engine.stream as stream
    from pattern_lens._layout import this_host

    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(handover, "spill_root", lambda: str(spill))
    monkeypatch.setattr(stream, "SMALL_RUN_SECONDS", 0.0)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = spill / f"pattern_lens_layers_{gone.pid}@{this_host()}_abc"
    live = spill / f"pattern_lens_layers_{os.getppid()}@{this_host()}_def"
    elsewhere = spill / f"pattern_lens_layers_{gone.pid}@another-host_ghi"
    for d in (dead, live, elsewhere):
        d.mkdir()
        np.save(d / "0.npy", np.zeros(4))
    seen: set[str] = set()
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            seen.update(p.name for p in spill.iterdir())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        summary = run_main(str(models["gpt2"]), _prompts_file(tmp_path / "p.jsonl", PROMPTS[:2]), tmp_path / "out",
                           figure_funcs_select="raw", n_jobs=2, backend="loky", progress=False, verbose=False)
    finally:
        stop.set()
        sampler.join()
    assert summary.ok, summary.format()
    assert not dead.exists() and live.is_dir() and elsewhere.is_dir()
    ours = [n for n in seen if n.startswith(f"pattern_lens_layers_{os.getpid()}@{this_host()}_")]
    assert ours, seen
    assert not (spill / ours[0]).exists()  # removed at the end of the run


def test_a_prompt_hash_that_is_not_a_folder_name_is_a_bad_prompt(models, tmp_path):
    """a `hash` given in a prompt is checked like one read from prompts.jsonl: never a path"""
    top = tmp_path / "top"
    save = top / "a" / "b" / "save"
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"text": PROMPTS[0], "hash": "../../../escaped"}) + "\n"
                       + json.dumps({"text": PROMPTS[1]}) + "\n")
    summary = run_main(str(models["gpt2"]), prompts, save, figure_funcs_select="raw", n_jobs=1, progress=False, verbose=False)
    assert not summary.ok and summary.n_rendered == 12
    assert [m for m in summary.input_errors if f"{prompts}:1" in m and "'../../../escaped' is not a folder name" in m]
    report = activations_main(str(models["gpt2"]), save, str(prompts), False, None, None, False, None, True, verbose=False)
    assert not report.ok and report.n_computed + report.n_cached == 1
    assert [m for m in report.errors if "is not a folder name" in m]
    from pattern_lens._errors import InputError

    with pytest.raises(InputError, match="is not a folder name"):
        compute_activations({"text": PROMPTS[0], "hash": "../../../escaped"}, load_model(str(models["gpt2"])), save)
    with pytest.raises(InputError, match="is not a folder name"):
        load_activations("tiny-gpt2", {"text": PROMPTS[0], "hash": "../../x"}, save, return_fmt="numpy")
    assert sorted(p.name for p in top.rglob("*") if not p.is_relative_to(save)) == ["a", "b"]


def test_module_cli_and_no_torch_on_render_path(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "pattern_lens.activations", "--help"], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0
    for opt in ["--model", "--prompts", "--save-path", "--min-chars", "--max-chars", "--n-samples", "--batch-size",
                "--compress-level", "--force", "--no-index-html", "--raw-prompts", "--shuffle", "--stacked-heads", "--device"]:
        assert opt in r.stdout
    code = ("import sys, pattern_lens.figures, pattern_lens.cli, pattern_lens.activations, pattern_lens.prompts, "
            "pattern_lens.load_activations; pattern_lens.cli.build_parser(); assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_transformerlens4_bridge(models, tmp_path):
    """a real TransformerLens 4 `TransformerBridge` (not in the test extra: transformer-lens 4.3.0 pulls
    datasets, pyarrow, ...; run with it on PYTHONPATH to check): its hook_pattern equals ours"""
    bridge_mod = pytest.importorskip("transformer_lens.model_bridge", reason="transformer-lens 4 not installed")
    bridge = bridge_mod.TransformerBridge.boot_transformers(str(models["gpt2"]), device="cpu")
    pm = load_model(str(models["gpt2"]), device="cpu")
    prompts = [augment_prompt_with_hash({"text": t}) for t in PROMPTS]
    a = compute_activations_batched([dict(p) for p in prompts], bridge, tmp_path / "bridge")
    b = compute_activations_batched([dict(p) for p in prompts], pm, tmp_path / "hf")
    for x, y in zip(a, b):
        assert x.parent.parent.parent.name == "tiny-gpt2"
        with np.load(x) as zx, np.load(y) as zy:
            assert zx.files == zy.files
            for k in zx.files:
                assert zx[k].shape == zy[k].shape
                np.testing.assert_allclose(zx[k], zy[k], rtol=0, atol=1e-6)


def test_stacked_heads_file(tmp_path):
    tl = make_tiny_tl(n_layers=3, n_heads=2)
    path, stacked = compute_activations({"text": PROMPTS[1]}, model=tl, save_path=tmp_path, return_cache="numpy", stack_heads=True)
    assert path.name == "activations-blocks.-.attn.hook_pattern.npy"
    _, cache = tl.run_with_cache(PROMPTS[1])
    on_disk = np.load(path)
    assert on_disk.shape == stacked.shape == (1, 3, 2, 4, 4)
    for layer in range(3):
        assert on_disk[:, layer].tobytes() == cache[layer_key(layer)].numpy().tobytes()
    with pytest.raises(ValueError, match="every layer"):
        compute_activations({"text": PROMPTS[1]}, model=tl, save_path=tmp_path, names_filter=lambda k: k.startswith("blocks.0."), stack_heads=True)


# ---------------------------------------------------------------------------------------------------
# faults during a run


def test_failed_batch_leaves_no_partial_npz_and_the_rest_goes_on(models, tmp_path, monkeypatch):
    import pattern_lens._model.compute as compute

    real = compute.run_batch
    calls = []

    def flaky(model, batch, layers, sink, times=None):
        calls.append(len(batch))
        if len(calls) == 1:  # the first batch dies after handing over its first layer
            def first_layer_then_fail(p, layer, arr):
                if layer > 0:
                    raise RuntimeError("out of memory (simulated)")
                sink(p, layer, arr)

            return real(model, batch, layers, first_layer_then_fail, times)
        return real(model, batch, layers, sink, times)

    monkeypatch.setattr(compute, "run_batch", flaky)
    prompts = _prompts_file(tmp_path / "p.jsonl")
    summary = run_main(str(models["gpt2"]), prompts, tmp_path / "out", batch_size=3, figure_funcs_select="raw",
                       n_jobs=1, save_activations=True, progress=False, verbose=False)
    assert calls == [3, 2] and not summary.ok
    (msg,) = summary.input_errors
    assert msg.startswith(f"forward pass failed for {prompts}:") and "out of memory (simulated)" in msg
    npz = list((tmp_path / "out").rglob("activations.npz"))
    assert len(npz) == 2  # the second batch's; none (not even a partial one) for the first
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_render_side_error_stops_the_forward_thread(models, tmp_path, monkeypatch):
    import pattern_lens._engine.recovery as recovery  # where `run` reaches `run_all` (`recovery.results_of`)

    def failing_run_all(session, func, tasks, **kwargs):
        it = iter(tasks)
        yield func(next(it))
        raise RuntimeError("worker pool broke (simulated)")

    monkeypatch.setattr(recovery, "run_all", failing_run_all)
    prompts = _prompts_file(tmp_path / "p.jsonl")
    outcome: list = []

    def go():
        try:
            run_main(str(models["gpt2"]), prompts, tmp_path / "out", batch_size=1, figure_funcs_select="raw",
                     n_jobs=1, max_queued_layers=1, progress=False, verbose=False)
        except RuntimeError as e:
            outcome.append(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "run_main hung: the forward thread kept waiting to hand over layers"
    assert outcome and "simulated" in str(outcome[0])
    assert not [th for th in threading.enumerate() if th.name == "pattern_lens-forward"]


def test_get_activations_computes_then_loads(tmp_path):
    from pattern_lens.activations import get_activations

    tl = make_tiny_tl()
    path, first = get_activations({"text": PROMPTS[0]}, tl, tmp_path, return_cache="numpy")
    mtime = path.stat().st_mtime_ns
    path2, second = get_activations({"text": PROMPTS[0]}, tl, tmp_path, return_cache="numpy")
    assert path2 == path and path.stat().st_mtime_ns == mtime  # loaded, not recomputed
    assert {k: v.tobytes() for k, v in first.items()} == {k: v.tobytes() for k, v in second.items()}
    assert get_activations({"text": PROMPTS[0]}, tl, tmp_path, return_cache=None) == (path, None)


def test_load_text_data_as_the_reference(tmp_path):
    from pattern_lens.prompts import PromptsFileError, load_text_data

    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"text": "abcdefghijklmnopqrstuvwxy", "meta": 1}) + "\n" + json.dumps({"text": "short"}) + "\n")
    got = load_text_data(f, min_chars=6, max_chars=10)
    assert [d["text"] for d in got] == ["abcdefghij", "klmnopqrst"]  # "uvwxy" and "short" are under 6
    assert all(d["meta"] == 1 and d["source_fname"] == f.as_posix() for d in got)
    assert [d["text"] for d in load_text_data(f)] == ["abcdefghijklmnopqrstuvwxy", "short"]
    f.write_text(json.dumps({"text": "fine"}) + "\n[1, 2]\n")
    with pytest.raises(PromptsFileError, match=r"p\.jsonl:2: expected a JSON object"):
        load_text_data(f)
