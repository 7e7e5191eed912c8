"""stage 1's inputs without a model: the `model` extra missing, data folders the reference's releases
wrote, prompts as the reference reads them, the command line's values

Nothing here needs torch: the tests run on a core install too (where the missing-extra messages are
real, not simulated).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pattern_lens._errors import InputError
from pattern_lens._output.indexes import find_model_dir, raw_model_dir, sanitize_model_name
from pattern_lens._input.inputs import model_folder
from pattern_lens.figures import figures_main
from pattern_lens.load_activations import InvalidPromptError, activations_exist, augment_prompt_with_hash, load_activations
from pattern_lens.synthetic import write_synthetic_model

REPO = Path(__file__).resolve().parents[1]

# what a core install looks like to Python: `import torch` fails, find_spec finds nothing
NO_MODEL_EXTRA = "import sys\nsys.modules['torch'] = None\nsys.modules['transformers'] = None\n"


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-c", NO_MODEL_EXTRA + code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------------------
# the `model` extra missing: one line saying what to install, no traceback


@pytest.mark.parametrize("entry", [
    "from pattern_lens.activations import main; sys.exit(main(ARGS))",
    "from pattern_lens.cli import main; sys.exit(main(['activations'] + ARGS))",
    "from pattern_lens.cli import main; sys.exit(main(['run'] + ARGS))",
])
def test_activations_without_torch_says_what_to_install(tmp_path, entry):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"text": "one two three"}) + "\n")
    args = ["-m", "gpt2", "-p", str(prompts), "-s", str(tmp_path / "out")]
    r = _python(f"ARGS = {args!r}\n{entry}", tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and "missing: torch, transformers" in line
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in line  # CPU
    assert "https://download.pytorch.org/whl/cu" in line  # and CUDA, as the README says
    assert "pip install 'pattern_lens[model]'" in line
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_python_api_without_torch(tmp_path):
    """computing raises ModelLoadError with the advice; loading saved patterns as numpy needs no torch"""
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=1, n_ctx=6, n_prompts=1, seed=0)
    saved = json.loads(next(model_dir.rglob("prompt.json")).read_text())
    code = f"""
from pathlib import Path
from pattern_lens._model.load import ModelLoadError, load_model
from pattern_lens.activations import compute_activations, compute_activations_batched, get_activations
calls = [
    lambda: compute_activations({{"text": "a b"}}, model="gpt2", save_path=Path("o")),
    lambda: compute_activations_batched([{{"text": "a b", "hash": "h"}}], "gpt2", Path("o")),
    lambda: get_activations({{"text": "a b"}}, "gpt2", Path("o")),
    lambda: load_model("gpt2"),
]
for call in calls:
    try:
        call()
    except ModelLoadError as e:
        assert "needs the `model` extra" in str(e) and "\\n" not in str(e), e
    else:
        raise SystemExit("no ModelLoadError")
path, cache = get_activations({{"text": {saved["text"]!r}, "hash": {saved["hash"]!r}}}, {model_dir.name!r}, Path({str(tmp_path)!r}), return_cache="numpy")
assert path.name == "activations.npz" and cache, cache
assert "torch" not in sys.modules or sys.modules["torch"] is None
print("ok")
"""
    r = _python(code, tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------------
# data folders written by the reference's releases


def test_reference_release_nested_model_folder_found(tmp_path):
    """before its HEAD the reference wrote `save_path / model_name`: `EleutherAI/pythia-14m/`, nested"""
    model_dir = write_synthetic_model(tmp_path, n_layers=1, n_heads=1, n_ctx=8, n_prompts=1, seed=0)
    (tmp_path / "EleutherAI").mkdir()
    nested = model_dir.rename(tmp_path / "EleutherAI" / "pythia-14m")
    assert find_model_dir(tmp_path, "EleutherAI/pythia-14m") == nested
    summary = figures_main("EleutherAI/pythia-14m", tmp_path, None, False, "raw", n_jobs=1, progress=False, verbose=False)
    assert summary.ok and summary.n_rendered == 1
    assert list(nested.glob("prompts/*/L0/H0/raw.png"))
    saved = json.loads(next(nested.rglob("prompt.json")).read_text())
    path, cache = load_activations("EleutherAI/pythia-14m", {"text": saved["text"], "hash": saved["hash"]}, tmp_path, return_fmt="numpy")
    assert path.parent.parent.parent == nested and cache["blocks.0.attn.hook_pattern"].shape == (1, 1, 8, 8)


def test_reference_release_folder_must_stay_inside_the_save_path(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    outside = write_synthetic_model(tmp_path, n_layers=1, n_heads=1, n_ctx=8, n_prompts=1, seed=0)  # tmp_path/<model>
    for name in [f"../{outside.name}", f"x/../../{outside.name}", str(outside), "", ".", "a//b", "a\\..\\b"]:
        assert raw_model_dir(root, name) is None, name
        assert find_model_dir(root, name) == root / sanitize_model_name(name), name  # the new name, never the raw path
    with pytest.raises(InputError):
        model_folder(root, "..")
    # a nested folder that is a symbolic link out of the save path is refused, not followed
    (root / "org").mkdir()
    (root / "org" / "m").symlink_to(outside)
    assert find_model_dir(root, "org/m") == root / "org" / "m"
    with pytest.raises(InputError, match="outside the save path"):
        model_folder(root, "org/m")


# ---------------------------------------------------------------------------------------------------
# load_activations and prompts as the reference's HEAD


def test_activations_exist_needs_a_hash(tmp_path):
    prompt = {"text": "no hash here"}
    with pytest.raises(InvalidPromptError, match="must have 'hash' key"):
        activations_exist("test-model", prompt, tmp_path)
    assert prompt == {"text": "no hash here"}  # not hashed on the way
    assert activations_exist("test-model", augment_prompt_with_hash(prompt), tmp_path) is False


def test_load_text_data_keeps_empty_texts_as_the_reference(tmp_path):
    from pattern_lens.prompts import load_text_data, read_prompts_file

    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["", "   ", "some text"]))
    assert [d["text"] for d in load_text_data(f)] == ["", "   ", "some text"]
    assert [d["text"] for d in load_text_data(f, max_chars=4)] == ["", "   ", "some", " tex", "t"]
    assert [d["text"] for d in load_text_data(f, min_chars=1)] == ["   ", "some text"]
    # run / activations still refuse them, naming the line
    prompts, errors = read_prompts_file(f)
    assert [p["text"] for _, p in prompts] == ["some text"]
    assert [str(e) for e in errors] == [f"{f}:1: empty prompt: 'text' has no characters to tokenize",
                                         f"{f}:2: empty prompt: 'text' has no characters to tokenize"]


# ---------------------------------------------------------------------------------------------------
# command line values


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_batch_size_must_be_positive(value, capsys):
    from pattern_lens.activations import add_activations_arguments

    p = argparse.ArgumentParser(prog="activations")
    add_activations_arguments(p)
    with pytest.raises(SystemExit) as e:
        p.parse_args(["-m", "gpt2", "-b", value])
    assert e.value.code == 2
    assert "--batch-size/-b: expected a positive integer" in capsys.readouterr().err
    assert p.parse_args(["-m", "gpt2", "-b", "1"]).batch_size == 1


def test_activations_help_mentions_the_gallery():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "pattern_lens.activations", "--help"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    help_text = " ".join(r.stdout.split())
    assert "(no index.html is written)" not in help_text and "gallery" in help_text

