"""write `pattern_lens/data/model_table.csv` (and its `.meta.json`): the model table shipped in the wheel

Run by hand when the snapshot should be renewed (nothing runs it at build or run time):

    pip download --no-deps transformer-lens==2.17.0 -d /tmp/tl && unzip -q /tmp/tl/*.whl -d /tmp/tl/src
    python tools/make_model_table_snapshot.py /tmp/tl/src/transformer_lens/loading_from_pretrained.py

Names come from TransformerLens's own table (`OFFICIAL_MODEL_NAMES`, `MODEL_ALIASES`), read with
`ast` from the file given (TransformerLens is not imported, nor installed). The default alias is the
first alias, as TransformerLens's `DEFAULT_MODEL_ALIASES`; models without an alias are their own.
Parameter counts (`n_params.as_int`: TransformerLens's `cfg.n_params`, attention and MLP weights)
come from the table the reference downloads (mivanit/transformerlens-model-table,
docs/model_table.csv, read on 2026-12-02, commit 04141466): only the models listed below, as read
there; the others are left empty until `python -m pattern_lens.model_table -f` fetches the full table.
"""

from __future__ import annotations

import ast
import csv
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "pattern_lens" / "data" / "model_table.csv"

# default alias -> n_params.as_int, from the reference's table (see the docstring)
N_PARAMS: dict[str, int] = {
    "gpt2-small": 84934656, "gpt2-medium": 301989888, "gpt2-large": 707788800, "gpt2-xl": 1474560000,
    "distillgpt2": 42467328,
    "opt-125m": 84934656, "opt-1.3b": 1207959552, "opt-2.7b": 2516582400, "opt-6.7b": 6442450944,
    "opt-13b": 12582912000, "opt-30b": 29595009024, "opt-66b": 65229815808,
    "gpt-neo-125M": 84934656, "gpt-neo-1.3B": 1207959552, "gpt-neo-2.7B": 2516582400,
    "gpt-j-6B": 5637144576, "gpt-neox-20b": 19931332608,
    "stanford-gpt2-small-a": 84934656, "stanford-gpt2-small-b": 84934656, "stanford-gpt2-small-c": 84934656,
    "stanford-gpt2-small-d": 84934656, "stanford-gpt2-small-e": 84934656,
    "stanford-gpt2-medium-a": 301989888, "stanford-gpt2-medium-b": 301989888, "stanford-gpt2-medium-c": 301989888,
    "stanford-gpt2-medium-d": 301989888, "stanford-gpt2-medium-e": 301989888,
    "pythia-14m": 1179648, "pythia-31m": 4718592, "pythia-70m": 18874368, "pythia-160m": 84934656,
    "pythia-410m": 301989888, "pythia-1b": 805306368, "pythia-1.4b": 1207959552, "pythia-2.8b": 2516582400,
    "pythia-6.9b": 6442450944, "pythia-12b": 11324620800,
    "pythia-70m-deduped": 18874368, "pythia-160m-deduped": 84934656, "pythia-410m-deduped": 301989888,
    "pythia-1b-deduped": 805306368, "pythia-1.4b-deduped": 1207959552, "pythia-2.8b-deduped": 2516582400,
    "pythia-6.9b-deduped": 6442450944, "pythia-12b-deduped": 11324620800,
    "pythia-70m-v0": 18874368, "pythia-160m-v0": 84934656, "pythia-410m-v0": 301989888, "pythia-1b-v0": 805306368,
    "pythia-1.4b-v0": 1207959552, "pythia-2.8b-v0": 2516582400, "pythia-6.9b-v0": 6442450944,
    "pythia-12b-v0": 11324620800,
    "pythia-70m-deduped-v0": 18874368, "pythia-160m-deduped-v0": 84934656, "pythia-410m-deduped-v0": 301989888,
    "pythia-1b-deduped-v0": 805306368, "pythia-1.4b-deduped-v0": 1207959552, "pythia-2.8b-deduped-v0": 2516582400,
    "pythia-6.9b-deduped-v0": 6442450944, "pythia-12b-deduped-v0": 11324620800,
    "pythia-160m-seed1": 84934656, "pythia-160m-seed2": 84934656, "pythia-160m-seed3": 84934656,
    "solu-1l-pile": 12582912, "solu-2l-pile": 12812288, "solu-4l-pile": 12582912, "solu-6l-pile": 42467328,
    "solu-8l-pile": 100663296, "solu-10l-pile": 196608000, "solu-12l-pile": 339738624,
    "solu-1l": 3145728, "solu-2l": 6291456, "solu-3l": 9437184,
}


def _literal(tree: ast.Module, name: str) -> object:
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if getattr(target, "id", None) == name:
            return ast.literal_eval(node.value)
    raise SystemExit(f"{name} not found")


def main(source: str) -> None:
    tree = ast.parse(Path(source).read_text(encoding="utf-8"))
    official: list[str] = _literal(tree, "OFFICIAL_MODEL_NAMES")  # type: ignore[assignment]
    aliases: dict[str, list[str]] = _literal(tree, "MODEL_ALIASES")  # type: ignore[assignment]
    rows = []
    for hf in official:
        names = aliases.get(hf, [hf])
        default = names[0]
        n = N_PARAMS.get(default)
        rows.append({
            "name.default_alias": default,
            "name.huggingface": hf,
            "name.aliases": " ".join(names),
            "n_params.as_int": "" if n is None else str(n),
        })
    missing = sorted(set(N_PARAMS) - {r["name.default_alias"] for r in rows})
    if missing:
        raise SystemExit(f"parameter counts for models not in the table: {missing}")
    with OUT.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    meta = {
        "format": "pattern_lens.model_table_snapshot",
        "date": "2026-12-02",
        "names_source": "TransformerLens 2.17.0 (PyPI wheel), transformer_lens/loading_from_pretrained.py: "
        "OFFICIAL_MODEL_NAMES, MODEL_ALIASES",
        "n_params_source": "https://raw.githubusercontent.com/mivanit/transformerlens-model-table/main/docs/model_table.csv "
        "(commit 04141466, read 2026-12-02), for the models listed in tools/make_model_table_snapshot.py",
        "n_models": len(rows),
        "n_with_n_params": sum(1 for r in rows if r["n_params.as_int"]),
        "refresh": "python -m pattern_lens.model_table -f (downloads the full table into the cache)",
    }
    OUT.with_suffix(".meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(rows)} models, {meta['n_with_n_params']} with n_params)")


if __name__ == "__main__":
    main(sys.argv[1])
