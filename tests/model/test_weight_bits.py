"""Weights on a 2-7-bit grid computed on the int8 kernels (eb.quantize(weight_bits=b)), stored
packed in the .eb file (consts.w_packed, b bits a code): codes on the grid, the executors equal,
files b/8 of the int8 weights' bytes, exact round trips, hostile packed records refused."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import eightbit as eb
from eightbit.model import file_format as ff
from _plans import assert_refused, assert_same_steps, file_with_step_changed

F = np.float32


def _cnn():
    rng = np.random.default_rng(3)
    g = eb.Graph()
    x = g.input("x", (None, 3, 12, 12))
    h = g.relu(g.conv2d(x, rng.standard_normal((16, 3, 3, 3)).astype(F) * 0.3, np.zeros(16, F), padding=1, name="c1"))
    h = g.relu(g.conv2d(h, rng.standard_normal((24, 16, 3, 3)).astype(F) * 0.1, None, padding=1, stride=2, name="c2"))
    h = g.flatten(g.global_avg_pool2d(h))
    g.output(g.linear(h, rng.standard_normal((10, 24)).astype(F) * 0.2, None, name="fc"))   # K = 24: no block fits
    return g


CAL = [np.random.default_rng(i).standard_normal((4, 3, 12, 12)).astype(F) for i in range(3)]
X = np.random.default_rng(9).standard_normal((3, 3, 12, 12)).astype(F)


def _quantize(bits, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return eb.quantize(_cnn(), CAL, weight_bits=bits, block_size=16, min_sqnr=None, **kw)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7])
def test_codes_lie_on_the_grid_and_executors_agree(bits, isa):
    qm = _quantize(bits)
    qmax = 2 ** (bits - 1) - 1
    weighted = [s for s in qm.plan.steps if s.op in ("conv", "linear")]
    assert len(weighted) == 3
    for s in weighted:
        assert s.attrs["w_bits"] == bits
        w = s.consts["w"]
        assert w.dtype == np.int8 and np.abs(w).max() == qmax       # per channel: each row reaches the grid's end
    y = qm(X)
    out = qm.plan.outputs[0]
    assert np.array_equal(y, qm.run_steps({"x": X})[out])
    assert np.array_equal(y, qm.reference_run({"x": X})[out])
    assert all(r[8] == str(bits) for r in [line.split() for line in qm.summary().splitlines()[2:-1]]
               if r[1] in ("conv", "linear"))


@pytest.mark.parametrize("bits", [2, 3, 5, 7])
def test_files_hold_b_bits_a_weight_and_round_trip(tmp_path, bits):
    qm8, qmb = _quantize(8), _quantize(bits)
    p8, pb = tmp_path / "w8.eb", tmp_path / "wb.eb"
    qm8.save(p8)
    qmb.save(pb)
    assert pb.stat().st_size < p8.stat().st_size
    tree = ff._plan_tree(qmb.plan, "test")            # what the file holds: each row's codes, b bits each
    for step, plan_step in zip(tree["steps"], qmb.plan.steps):
        if plan_step.op in ("conv", "linear"):
            w = plan_step.consts["w"]
            assert "w" not in step["consts"]
            assert step["consts"]["w_packed"].nbytes == w.shape[0] * -(-(w[0].size * bits) // 8)
    loaded = eb.load(pb)
    assert_same_steps(qmb.plan, loaded.plan)
    assert np.array_equal(loaded(X), qmb(X))
    loaded.save(tmp_path / "again.eb")
    assert (tmp_path / "again.eb").read_bytes()[64:] == pb.read_bytes()[64:]


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7])
def test_pack_codes_round_trips_every_code(bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    rng = np.random.default_rng(bits)
    for shape in ((3, 1), (2, 7), (5, 3, 3, 3), (1, 64)):
        w = rng.integers(lo, hi + 1, shape).astype(np.int8)
        packed = ff.pack_codes(w, bits)
        assert packed.shape == (shape[0], -(-int(np.prod(shape[1:])) * bits // 8))
        assert np.array_equal(ff.unpack_codes(packed, bits, shape), w)
    # bit order: the first code in the lowest bits
    assert ff.pack_codes(np.array([[1, 0]], np.int8), bits)[0, 0] == 1


def test_dynamic_layers_take_the_grid_too():
    rng = np.random.default_rng(5)
    g = eb.Graph()
    x = g.input("x", (None, 24))
    g.output(g.linear(g.relu(g.linear(x, rng.standard_normal((40, 24)).astype(F), None, name="a")),
                      rng.standard_normal((8, 40)).astype(F), None, name="b"))
    qm = eb.quantize(g, dynamic=True, weight_bits=6)
    steps = [s for s in qm.plan.steps if s.op == "dynamic_linear"]
    assert len(steps) == 2 and all(s.attrs["w_bits"] == 6 and np.abs(s.consts["w"]).max() == 31 for s in steps)
    x = rng.standard_normal((3, 24)).astype(F)
    assert np.array_equal(qm(x), qm.reference_run({"x": x})[qm.plan.outputs[0]])


@pytest.mark.parametrize("bad", [1, 9, True, 4.0])
def test_weight_bits_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="weight_bits"):
        _quantize(bad)


def _hostile(tmp_path, change):
    tree = ff._plan_tree(_quantize(5).plan, "test")
    path = tmp_path / "bad.eb"
    i = next(i for i, s in enumerate(tree["steps"]) if s["op"] == "conv")
    file_with_step_changed(path, tree, i, lambda step, _: change(step))
    return path


HOSTILE = {
    "bits 8": (lambda s: s["lowered"].update(w_bits=8), "w_bits"),
    "bits 1": (lambda s: s["lowered"].update(w_bits=1), "w_bits"),
    "short rows": (lambda s: s["consts"].update(w_packed=s["consts"]["w_packed"][:, :-1].copy()), "w_packed"),
    "int8 packed": (lambda s: s["consts"].update(w_packed=s["consts"]["w_packed"].view(np.int8)), "w_packed"),
    "shape product": (lambda s: s["lowered"].update(w_shape=[s["lowered"]["w_shape"][0], 3, 3, 5]), "w_packed"),
    "shape rank": (lambda s: s["lowered"].update(w_shape=[16, 27, 1]), "w_shape"),
    "padding bits": (lambda s: s["consts"]["w_packed"].__setitem__((0, -1), 0xFF), "past"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_packed_weights_are_refused(tmp_path, case):
    change, word = HOSTILE[case]
    if case == "padding bits":
        qm = _quantize(5)
        w = next(s for s in qm.plan.steps if s.op == "conv").consts["w"]
        if (w[0].size * 5) % 8 == 0:
            pytest.skip("no padding bits in this row")   # 27 codes x 5 bits = 135: 1 padding bit
    assert_refused(_hostile(tmp_path, change), word)


def test_bits_per_node():
    """weight_bits={node: bits}: the named layers on their grids (c2 and fc at 4 bits: c2 a conv on
    the int8 kernels, fc a linear whose K = 24 the block of 16 does not divide), the others int8."""
    qm = _quantize({"c2": 4, "fc": 3})
    steps = {s.source: s for s in qm.plan.steps if s.op in ("conv", "linear")}
    assert "w_bits" not in steps["c1"].attrs and np.abs(steps["c1"].consts["w"]).max() == 127
    assert steps["c2"].attrs["w_bits"] == 4 and np.abs(steps["c2"].consts["w"]).max() == 7
    assert steps["fc"].attrs["w_bits"] == 3 and np.abs(steps["fc"].consts["w"]).max() == 3
    assert np.array_equal(qm(X), qm.reference_run({"x": X})[qm.plan.outputs[0]])


@pytest.mark.parametrize("bad, word", [({"nope": 4}, "no node named"), ({"c1": 9}, "weight_bits['c1']"),
                                       ({"c1": 4.5}, "weight_bits['c1']")])
def test_bad_bits_per_node_are_refused(bad, word):
    with pytest.raises(ValueError, match=re.escape(word)):
        _quantize(bad)


@pytest.mark.parametrize("levels, qmax, bits", [(3, 1, 2), (5, 2, 3), (15, 7, 4), (21, 10, 5), (255, 127, 8)])
def test_an_explicit_level_count(tmp_path, levels, qmax, bits):
    """weight_levels=L: every layer on the int8 kernels, codes in [-(L-1)/2, (L-1)/2], stored in the
    fewest bits that hold them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = eb.quantize(_cnn(), CAL, weight_levels=levels, min_sqnr=None)
    steps = [s for s in qm.plan.steps if s.op in ("conv", "linear")]
    assert len(steps) == 3
    for s in steps:
        assert np.abs(s.consts["w"]).max() == qmax and s.attrs.get("w_bits", 8) == bits
    assert np.array_equal(qm(X), qm.reference_run({"x": X})[qm.plan.outputs[0]])
    qm.save(tmp_path / "m.eb")
    assert np.array_equal(eb.load(tmp_path / "m.eb")(X), qm(X))


@pytest.mark.parametrize("kw", [{"weight_levels": 4}, {"weight_levels": 1}, {"weight_levels": 257},
                                {"weight_levels": 5, "weight_bits": 4}])
def test_bad_level_counts_are_refused(kw):
    with pytest.raises(ValueError, match="weight_levels"):
        eb.quantize(_cnn(), CAL, min_sqnr=None, **kw)
