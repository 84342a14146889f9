"""The package's import structure (DESIGN.md, "Layers"): read from the sources with ast, so a
lazy import inside a function counts as much as one at the top of a module.

* one module, eightbit.runtime, imports the C++ core; every other module takes it from there;
* no module imports a private name (``_x``) or private module of another layer;
* numerics imports only numerics, reference only numerics and reference;
* no import cycle runs through the low layers or the ONNX importer and the plan modules.
"""
from __future__ import annotations

import ast
import pathlib

import eightbit

ROOT = pathlib.Path(eightbit.__file__).parent


def _modules() -> dict:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


class _Imports(ast.NodeVisitor):
    """Every relative ``from ... import ...`` of a module, outside ``if TYPE_CHECKING:`` blocks."""

    def __init__(self):
        self.found = []

    def visit_If(self, node):
        if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            self.generic_visit(node)

    def visit_ImportFrom(self, node):
        if node.level:
            self.found.append(node)


def _imports() -> dict:
    """{module: [(imported dotted name, resolved module or None)]}."""
    mods = _modules()
    out = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        visitor = _Imports()
        visitor.visit(ast.parse(path.read_text()))
        found = []
        for node in visitor.found:
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.append((full, full if full in mods else target if target in mods else None))
        out[name] = found
    return out


IMPORTS = _imports()


def _layer(name: str) -> str:
    return name.split(".")[1] if name.count(".") else ""


def test_only_runtime_imports_the_core():
    importers = sorted(m for m, found in IMPORTS.items() if any(full == "eightbit._core" for full, _ in found))
    assert importers == ["eightbit.runtime"]


def test_no_private_name_crosses_a_layer():
    bad = []
    for module, found in IMPORTS.items():
        for full, _ in found:
            parts = full.split(".")
            private = [i for i, p in enumerate(parts[1:], 1) if p.startswith("_") and not p.startswith("__")
                       and p not in ("_version", "_core")]
            if private and _layer(".".join(parts[:private[0] + 1])) != _layer(module):
                bad.append(f"{module} imports {full}")
    assert not bad, bad


def test_low_layers_import_only_downward():
    allowed = {"numerics": {"numerics"}, "reference": {"numerics", "reference"}}
    bad = [f"{m} imports {full}" for m, found in IMPORTS.items() if _layer(m) in allowed
           for full, _ in found if _layer(full) not in allowed[_layer(m)]]
    assert not bad, bad


def _cycles() -> list:
    """The import cycles (strongly connected components of more than one module)."""
    edges = {m: {t for _, t in found if t and t != "eightbit"} for m, found in IMPORTS.items()}
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return comps


def test_no_cycle_through_the_low_layers_the_importer_or_the_plan():
    guarded = {"numerics", "reference", "graph", "onnx", "calibrate", "ops", "cnn_ops", "conv", "runtime", "linear"}
    named = {"eightbit.model.plan", "eightbit.model.execute", "eightbit.model.lowering"}
    bad = [sorted(c) for c in _cycles() if any(_layer(m) in guarded or m in named for m in c)]
    assert not bad, bad
