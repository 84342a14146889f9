"""Checks shared by the tests of model files (tests/ is on sys.path through its conftest.py)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import eightbit as eb
from eightbit.model import file_format as ff
from eightbit.model.file_format import ModelFileError
from eightbit.runtime import core as _core


def assert_same_steps(a_plan, b_plan) -> None:
    """Two plans hold the same steps (ops, tensors, attributes, constants with their dtypes) and
    the same tensor specs."""
    assert len(a_plan.steps) == len(b_plan.steps)
    for a, b in zip(a_plan.steps, b_plan.steps):
        assert (a.op, a.inputs, a.output, a.source) == (b.op, b.inputs, b.output, b.source)
        assert a.attrs == b.attrs
        assert a.consts.keys() == b.consts.keys()
        for k in a.consts:
            assert a.consts[k].dtype == b.consts[k].dtype
            np.testing.assert_array_equal(a.consts[k], b.consts[k])
    assert a_plan.tensors == b_plan.tensors


def assert_refused(path, word: str) -> None:
    """eb.load refuses the file, and so does the C++ reader on its own (what the C library runs),
    naming the problem."""
    with pytest.raises(ModelFileError):
        eb.load(path)
    with pytest.raises(ModelFileError, match=re.escape(word)):
        _core.ModelFile.map(str(path)).build()


def file_with_step_changed(path, tree: dict, i: int, change) -> None:
    """Write ``tree`` (file_format's) to ``path`` after ``change(step, tree)`` on copies of step i
    (its consts and lowered record copied too) and of the tree: a hostile file made from a good one."""
    tree = {**tree, "steps": list(tree["steps"])}
    step = dict(tree["steps"][i])
    step["consts"], step["lowered"] = dict(step["consts"]), dict(step["lowered"])
    change(step, tree)
    tree["steps"][i] = step
    path.write_bytes(ff.encode_tree(tree))


def load_tree(path, tree: dict):
    """``tree`` written to ``path`` as it is, loaded by eb.load (returned) and by the C++ reader on
    its own: the good file the hostile cases start from."""
    path.write_bytes(ff.encode_tree(tree))
    _core.ModelFile.map(str(path)).build()
    return eb.load(path)


def put(value, where=0):
    """A hostile-array edit for file_with_step_changed's helpers: a copy with flat element
    ``where`` set to ``value``."""
    def fn(a):
        a = a.copy()
        a.flat[where] = value
        return a
    return fn
