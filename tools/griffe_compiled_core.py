"""A griffe extension for the API reference (mkdocs.yml): the pybind11 classes of ``eightbit._core``.

mkdocstrings reads the Python sources without importing them, so a class that only exists in the
compiled module (``PackedWeights = _core.PackedWeights`` in ``eightbit.ops``) would be documented
as a bare assignment. This extension imports ``eightbit._core`` (the installed package's build),
adds it to the loaded package by inspection, and turns each module-level ``X = _core.X`` into an
alias of the compiled class, so ``::: eightbit.PackedWeights`` shows its docstring and properties.
"""

from __future__ import annotations

from typing import Any

import griffe


class CompiledCore(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "eightbit":
            return
        core = griffe.inspect("_core", parent=pkg, docstring_parser=loader.docstring_parser,
                              docstring_options=loader.docstring_options)
        pkg.set_member("_core", core)
        for module in _modules(pkg):
            for name, member in list(module.members.items()):
                if (not member.is_alias and member.is_attribute and str(member.value) == f"_core.{name}"
                        and name in core.members):
                    module.set_member(name, griffe.Alias(name, core[name], parent=module))


def _modules(module: griffe.Module):
    yield module
    for member in module.modules.values():
        if not member.is_alias:
            yield from _modules(member)
