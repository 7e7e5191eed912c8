"""the package's structure, read from its source: no import circle, and stages below the facades

The graph is built with `ast` from every `.py` file under `pattern_lens/`, counting every import
(lazy ones inside functions included: an import that only hides a circle is still a circle), and
checked for strongly connected components. The checker itself is tested on a small package with a
lazy circle, so that a broken checker cannot pass silently.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pattern_lens"

# public modules that run commands or tie stages together: the private stage folders sit below them
FACADES = {"cli", "figures", "head_stats", "server", "bench", "activations", "indexes"}


def module_files(package: Path) -> dict[str, Path]:
    """dotted module name -> file, for every `.py` under `package` (through the `kernels` link too)"""
    out = {}
    # os.walk, not Path.rglob: rglob does not follow a folder's symlink before Python 3.13
    for folder, _, names in os.walk(package, followlinks=True):
        for name in names:
            if name.endswith(".py"):
                f = Path(folder) / name
                parts = f.relative_to(package.parent).with_suffix("").parts
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its source"""
    mods = module_files(package)
    root = package.name
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, f in mods.items():
        here = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]  # `from pkg import module`
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod and t != root and not mod.startswith(t + "."):
                    edges[mod].add(t)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """the strongly connected components with more than one module (iterative Tarjan)"""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_the_package_has_no_import_circle():
    found = circles(import_graph(PACKAGE))
    assert not found, "import circles (lazy imports included): " + "; ".join(" <-> ".join(c) for c in found)


def test_stages_never_import_a_facade():
    """private stage modules (`pattern_lens._*`) do not reach up into the public modules that run commands"""
    root = PACKAGE.name
    facades = {f"{root}.{name}" for name in FACADES}
    bad = sorted(
        f"{mod} imports {target}"
        for mod, targets in import_graph(PACKAGE).items()
        if "." in mod and mod.split(".")[1].startswith("_")
        for target in targets & facades
    )
    assert not bad, bad


def test_the_kernels_are_read_through_their_link_and_import_nothing_else_of_the_package():
    """`pattern_lens/kernels` links to the top-level `kernels/`: its modules are in the graph (checked
    for circles above), and, arrays in and arrays out, they import only each other"""
    graph = import_graph(PACKAGE)
    kernels = {m for m in graph if m == "pattern_lens.kernels" or m.startswith("pattern_lens.kernels.")}
    assert {"pattern_lens.kernels", "pattern_lens.kernels.head_stats", "pattern_lens.kernels._prefetch"} <= kernels
    outside = sorted(f"{m} imports {t}" for m in kernels for t in graph[m] if t not in kernels)
    assert not outside, outside


def test_the_pipeline_folder_reads_like_the_data_flow():
    """reading the input, the engine, writing outputs, summaries: each a folder; no catch-all left"""
    assert not list((PACKAGE / "_pipeline").glob("*.py"))  # (a stale __pycache__ may remain)
    for room in ("_input", "_engine", "_output", "_summaries"):
        assert (PACKAGE / room / "__init__.py").is_file(), room


@pytest.mark.parametrize("lazy", [False, True])
def test_the_checker_finds_a_circle(tmp_path, lazy):
    """a package with a circle (one edge inside a function when `lazy`) is caught; without it, nothing"""
    pkg = tmp_path / "pkg"
    (pkg / "_stage").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_stage" / "__init__.py").write_text("")
    (pkg / "facade.py").write_text("from pkg._stage.work import run\n")
    back = "def f():\n    from pkg import facade\n" if lazy else "from . import helper\nfrom .. import facade\n"
    (pkg / "_stage" / "work.py").write_text(back + "def run():\n    pass\n")
    (pkg / "_stage" / "helper.py").write_text("X = 1\n")
    assert circles(import_graph(pkg)) == [["pkg._stage.work", "pkg.facade"]]
    (pkg / "_stage" / "work.py").write_text("from . import helper\ndef run():\n    pass\n")
    assert circles(import_graph(pkg)) == []
