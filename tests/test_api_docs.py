"""The API reference (mkdocs.yml, docs/api/) covers the whole public surface.

A public name (in a module's ``__all__``) or a C function without an entry on the API pages fails
here, in the normal suite, without mkdocs; the strict mkdocs build itself runs where mkdocs and
mkdocstrings are installed (the dev and docs extras).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api"
HEADER = ROOT / "include" / "eightbit" / "eightbit.h"
PYTHON_MODULES = ["eightbit", "eightbit.ops", "eightbit.reference", "eightbit.numerics", "eightbit.torch"]


def _public_names(module: str) -> list[str]:
    """``module.__all__``, read from the source: eightbit.torch is checked without PyTorch too."""
    init = ROOT / "python" / Path(*module.split(".")) / "__init__.py"
    if module == "eightbit.torch":
        for node in ast.parse(init.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                return list(ast.literal_eval(node.value))
        raise AssertionError(f"{init}: no literal __all__")
    return list(importlib.import_module(module).__all__)


def _entries() -> list[tuple[str, str, str]]:
    """Every ``::: path`` on the API pages: (page, path, the name it documents: its ``heading``
    option where one is given, else the path)."""
    found = []
    for page in sorted(API.glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            m = re.match(r":::\s+([\w.]+)\s*$", line)
            if not m:
                continue
            documented = m.group(1)
            for option in lines[i + 1:]:
                if not option.startswith("    "):
                    break
                h = re.match(r'\s+heading:\s*"([\w.]+)"\s*$', option)
                if h:
                    documented = h.group(1)
            found.append((page.name, m.group(1), documented))
    return found


def _resolve_as_griffe(path: str):
    """What an entry's path names as mkdocstrings reads it: the longest module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def _resolve_as_user(path: str):
    """What a user reaches by that dotted name: attributes first (``eightbit.torch.convert`` is the
    function the package exports, not the submodule of the same name), importing where needed."""
    parts = path.split(".")
    obj = importlib.import_module(parts[0])
    for i, attr in enumerate(parts[1:], 2):
        obj = getattr(obj, attr) if hasattr(obj, attr) else importlib.import_module(".".join(parts[:i]))
    return obj


def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


@pytest.mark.parametrize("module", PYTHON_MODULES)
def test_every_public_name_has_an_entry(module):
    documented = {name for _, _, name in _entries()}
    missing = [f"{module}.{n}" for n in _public_names(module) if f"{module}.{n}" not in documented]
    assert not missing, f"public names without an API reference entry (`::: name` in docs/api/*.md): {missing}"


def test_entries_name_the_public_objects():
    """Each entry documents the object users reach by its documented name. Where a function shares
    its name with a submodule (``eightbit.torch.convert``), mkdocstrings would document the module:
    the entry must give the function's own path and the public name as its ``heading``."""
    problems = []
    for page, path, name in _entries():
        if path.startswith("eightbit.torch") and not _torch_available():
            continue                               # without PyTorch: names are still checked above
        obj = _resolve_as_user(name)
        if _resolve_as_griffe(path) is not obj:
            own = f"{obj.__module__}.{obj.__qualname__}" if hasattr(obj, "__qualname__") else "its own path"
            problems.append(f'{page}: `::: {path}` does not document {name}: write `::: {own}` with heading "{name}"')
    assert not problems, "\n".join(problems)


def _header_declarations() -> dict[str, list[str]]:
    """What eightbit.h declares, by a scan independent of tools/gen_c_api_docs.py."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(encoding="utf-8"), flags=re.S)
    return {
        "function": re.findall(r"^EB_API\b[^;(]*?\b(\w+)\s*\(", text, re.M),
        "type": re.findall(r"^typedef\s+(?:struct|enum)\s+\w+\s*(?:\{[^}]*\})?\s*(\w+)\s*;", text, re.M),
        "enum constant": re.findall(r"^\s*(EB_[A-Z_]+)\s*(?:=[^,}]*)?,?\s*$", text, re.M),
        "macro": [m for m in re.findall(r"^#define\s+(\w+)", text, re.M) if m not in ("EB_API", "EIGHTBIT_EIGHTBIT_H_")],
    }


def test_header_scan_finds_the_c_api():
    declared = _header_declarations()
    assert {"eb_model_load_file", "eb_model_run", "eb_model_run_sequence", "eb_set_isa", "eb_version"} <= set(
        declared["function"])
    assert {"eb_status", "eb_error", "eb_load_options", "eb_model"} <= set(declared["type"])
    assert {"EB_OK", "EB_INVALID_MODEL", "EB_INTERNAL"} <= set(declared["enum constant"])
    assert declared["macro"] == ["EB_SEQUENCE_DIM"]


def test_every_c_declaration_is_on_the_c_api_page():
    page = (API / "c_api.md").read_text(encoding="utf-8")
    headings = "\n".join(line for line in page.splitlines() if line.startswith("### "))
    missing = []
    for kind, names in _header_declarations().items():
        for name in names:
            # Functions, types and macros have a heading; enum constants appear in their type's code.
            where = page if kind == "enum constant" else headings
            if not re.search(rf"`{name}`" if kind != "enum constant" else rf"\b{name}\b", where):
                missing.append(f"{kind} {name}")
    assert not missing, f"docs/api/c_api.md lacks {missing}: run python tools/gen_c_api_docs.py"


def test_c_api_page_is_generated_from_the_header(monkeypatch):
    spec = importlib.util.spec_from_file_location("gen_c_api_docs", ROOT / "tools" / "gen_c_api_docs.py")
    gen = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, gen)     # dataclasses look their module up there
    spec.loader.exec_module(gen)
    expected = gen.render(HEADER.read_text(encoding="utf-8"))
    assert (API / "c_api.md").read_text(encoding="utf-8") == expected, \
        "docs/api/c_api.md is stale: run python tools/gen_c_api_docs.py"
    # Every header comment reaches the page (as Markdown: names in backticks, '*' escaped).
    assert "memory-mapped while loading" in expected and "Process-wide settings" in expected
    assert r"\*model is set only on success" in expected


def _mkdocs_build(tmp_path: Path, docs_dir: Path | None = None) -> Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    site = tmp_path / "site"
    overrides = {"site_dir": str(site), "strict": True}
    if docs_dir is not None:
        overrides["docs_dir"] = str(docs_dir)
    build(load_config(str(ROOT / "mkdocs.yml"), **overrides))
    return site


def test_mkdocs_strict_build(tmp_path, monkeypatch):
    """`mkdocs build --strict` (mkdocs.yml) passes, and the pages hold the objects' documentation."""
    monkeypatch.chdir(ROOT)                        # the griffe extension's path is relative to the root
    site = _mkdocs_build(tmp_path)
    eightbit_page = (site / "api" / "eightbit" / "index.html").read_text(encoding="utf-8")
    for anchor in ("eightbit.quantize", "eightbit.Graph.run", "eightbit.PackedWeights"):
        assert f'id="{anchor}"' in eightbit_page
    assert "packed once for the int8 GEMM kernels" in eightbit_page   # the pybind11 class's docstring
    torch_page = (site / "api" / "torch" / "index.html").read_text(encoding="utf-8")
    assert 'id="eightbit.torch.prepare_qat"' in torch_page
    c_page = (site / "api" / "c_api" / "index.html").read_text(encoding="utf-8")
    assert 'id="eb_model_run"' in c_page


def test_mkdocs_strict_build_fails_on_a_missing_object(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(ROOT)
    pytest.importorskip("mkdocs")
    from mkdocs.exceptions import MkDocsException

    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    with open(docs / "api" / "eightbit.md", "a", encoding="utf-8") as f:
        f.write("\n::: eightbit.no_such_function\n")
    with pytest.raises(MkDocsException):
        _mkdocs_build(tmp_path, docs)
    assert "Could not collect 'eightbit.no_such_function'" in caplog.text
