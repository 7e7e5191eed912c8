"""synthetic attention patterns: proper causal distributions, deterministic, streamed into the reference layout"""

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pattern_lens._layout import layer_key
from pattern_lens._input.npz import ActivationsFile
from pattern_lens.synthetic import (
    DEFAULT_SHAPE,
    HEAD_KINDS,
    SHAPES,
    head_kinds,
    synthetic_layer,
    synthetic_patterns,
    synthetic_prompt,
    write_synthetic_model,
)


@settings(max_examples=25, deadline=None)
@given(
    n_layers=st.integers(1, 6),
    n_heads=st.integers(1, 5),
    n_ctx=st.integers(1, 48),
    seed=st.integers(0, 2**32 - 1),
    prompt=st.integers(0, 50),
)
def test_rows_are_causal_distributions(n_layers, n_heads, n_ctx, seed, prompt):
    layer = seed % n_layers
    pats = synthetic_layer(layer, n_layers, n_heads, n_ctx, seed, prompt)
    assert pats.dtype == np.float32 and pats.shape == (n_heads, n_ctx, n_ctx)
    assert np.isfinite(pats).all() and (pats >= 0).all()
    assert not np.triu(pats, k=1).any(), "attention must be causal (lower-triangular)"
    np.testing.assert_allclose(pats.sum(axis=-1), 1.0, atol=2e-6)
    assert (pats[:, 0, 0] == 1.0).all()


def test_deterministic_and_varied():
    a = synthetic_patterns(3, 4, 40, seed=11, prompt_index=2)
    b = synthetic_patterns(3, 4, 40, seed=11, prompt_index=2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, synthetic_patterns(3, 4, 40, seed=12, prompt_index=2))
    assert not np.array_equal(a, synthetic_patterns(3, 4, 40, seed=11, prompt_index=3))
    assert np.array_equal(a[1], synthetic_layer(1, 3, 4, 40, seed=11, prompt_index=2))
    # the heads are not all alike
    flat = a.reshape(12, -1)
    assert len({row.tobytes() for row in flat}) == 12


def test_head_kinds_cover_every_kind_and_stay_fixed_across_prompts():
    kinds = head_kinds(32, 32, seed=0)
    assert {k for layer in kinds for k in layer} == set(HEAD_KINDS)
    assert head_kinds(32, 32, seed=0) == kinds
    # early layers lean local, late ones toward induction
    early = sum(k in {"previous_token", "local_window"} for layer in kinds[:8] for k in layer)
    late = sum(k in {"previous_token", "local_window"} for layer in kinds[-8:] for k in layer)
    assert early > late


def test_kind_signatures():
    """previous-token heads peak on the diagonal below the main one; sinks on column 0"""
    kinds = head_kinds(12, 12, seed=0)
    pats = synthetic_patterns(12, 12, 64, seed=0)
    for layer in range(12):
        for head, kind in enumerate(kinds[layer]):
            p = pats[layer, head]
            if kind == "previous_token":
                assert np.mean(np.argmax(p[1:], axis=1) == np.arange(63)) > 0.8
            elif kind == "first_token":
                assert p[8:, 0].mean() > 0.2
            elif kind == "uniform":
                assert p[40, :41].std() < 0.05


def test_shapes():
    assert SHAPES[DEFAULT_SHAPE].n_layers == 12 and SHAPES[DEFAULT_SHAPE].n_heads == 12
    assert SHAPES[DEFAULT_SHAPE].n_ctx == 256
    assert max(s.n_heads for s in SHAPES.values()) == 32 and max(s.n_layers for s in SHAPES.values()) == 32


def test_prompt_records():
    p = synthetic_prompt(3, 20, seed=1)
    assert p == synthetic_prompt(3, 20, seed=1) and p["hash"] != synthetic_prompt(4, 20, seed=1)["hash"]
    assert len(p["hash"]) == 22 and p["n_tokens"] == 20 and len(p["tokens"]) == 20 and "".join(p["tokens"]) == p["text"]


@pytest.mark.parametrize("compress", [True, False])
def test_written_layout_matches_memory(tmp_path, compress):
    model = write_synthetic_model(tmp_path, n_layers=3, n_heads=2, n_ctx=24, n_prompts=2, seed=4, compress=compress)
    assert model == tmp_path / "synthetic-3x2-ctx24"
    cfg = json.loads((model / "model_cfg.json").read_text())
    assert (cfg["model_name"], cfg["n_layers"], cfg["n_heads"]) == (model.name, 3, 2)
    prompts = [json.loads(x) for x in (model / "prompts.jsonl").read_text().splitlines()]
    assert len(prompts) == 2
    for k, prompt in enumerate(prompts):
        d = model / "prompts" / prompt["hash"]
        assert json.loads((d / "prompt.json").read_text()) == prompt
        with zipfile.ZipFile(d / "activations.npz") as zf:
            kinds = {i.compress_type for i in zf.infolist()}
        assert kinds == {zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED}
        with np.load(d / "activations.npz") as npz:
            assert sorted(npz.files) == [layer_key(L) for L in range(3)]
            stored = np.stack([npz[layer_key(L)][0] for L in range(3)])
            assert npz[layer_key(0)].shape == (1, 2, 24, 24) and npz[layer_key(0)].dtype == np.float32
        assert np.array_equal(stored, synthetic_patterns(3, 2, 24, seed=4, prompt_index=k))
        with ActivationsFile(d / "activations.npz", n_heads=2) as acts:
            assert np.array_equal(acts.read_layer(2), stored[2])
    # writing again keeps the files, and leaves no temporary ones
    mtimes = {p: p.stat().st_mtime_ns for p in model.rglob("*") if p.is_file()}
    write_synthetic_model(tmp_path, n_layers=3, n_heads=2, n_ctx=24, n_prompts=2, seed=4, compress=compress)
    assert {p: p.stat().st_mtime_ns for p in model.rglob("*") if p.is_file()} == mtimes
    assert not list(tmp_path.rglob("*.tmp"))
