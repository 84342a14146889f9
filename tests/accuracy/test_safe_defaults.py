"""eb.quantize's safe defaults: adds among float neighbours stay float32; a model whose output SQNR
falls below the threshold is not returned silently."""
import warnings

import numpy as np
import pytest

import eightbit as eb
from eightbit.data import cnn_graph, digits
from eightbit.quantizer import calibrate, float_neighbourhood


def _attention(rng, t=8, d=16):
    """linear q, k -> bmm -> add(mask) -> softmax -> bmm(v) -> linear: the mask add sits between two
    float32 steps (bmm and softmax have no int8 form)."""
    g = eb.Graph("attn")
    x = g.input("x", (None, t, d))
    mask = g.input("mask", (None, 1, t))
    w = lambda: (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    q, k, v = (g.linear(x, w(), None, name=n) for n in ("q", "k", "v"))
    scores = g.bmm(q, g.transpose(k, (0, 2, 1)), name="scores")
    p = g.softmax(g.add(scores, mask, name="mask_add"), axis=2, name="softmax")
    out = g.linear(g.bmm(p, v, name="context"), w(), None, name="out")
    g.output(g.add(out, x, name="residual"))
    return g


def _feeds(rng, n, t=8, d=16):
    m = np.where(rng.random((n, 1, t)) < 0.3, -1e4, 0.0).astype(np.float32)
    m[:, :, 0] = 0
    return {"x": rng.standard_normal((n, t, d)).astype(np.float32), "mask": m}


def test_mask_add_between_float_steps_stays_float():
    rng = np.random.default_rng(0)
    g = _attention(rng)
    calib = [_feeds(rng, 16) for _ in range(3)]
    assert float_neighbourhood(g) == {"mask_add"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", eb.QuantizationWarning)
        qm = eb.quantize(g, calib, per_token=False)   # int8 linears: the residual add has int8 neighbours
    assert "mask_add" in qm.float_nodes and "residual" not in qm.float_nodes
    x = _feeds(rng, 32)
    y = g.run(x)
    noise = np.sum((qm.run(x)["residual"] - y) ** 2)
    assert 10 * np.log10(np.sum(y ** 2) / noise) > 30
    # Lowered with the add quantized (the old default), the mask wipes out the scores.
    broken = calibrate(g, calib).lower()
    assert "mask_add" not in broken.float_nodes
    noise = np.sum((broken.run(x)["residual"] - y) ** 2)
    assert 10 * np.log10(np.sum(y ** 2) / noise) < 15


def test_an_add_next_to_an_int8_node_is_quantized():
    rng = np.random.default_rng(1)
    g = eb.Graph()
    a, b = g.input("a", (None, 8)), g.input("b", (None, 8))
    s = g.add(a, b, name="sum")                      # inputs float, reader int8: quantized
    g.output(g.linear(s, rng.standard_normal((4, 8)).astype(np.float32), None, name="fc"))
    assert float_neighbourhood(g) == set()
    h = eb.Graph()
    a, b = h.input("a", (None, 8)), h.input("b", (None, 8))
    h.output(h.mul(h.add(a, b, name="sum"), b, name="prod"))   # a chain of float neighbours: both float
    assert float_neighbourhood(h) == {"sum", "prod"}
    assert float_neighbourhood(h, exclude={"prod"}) == {"sum"}


def test_warning_names_the_fragile_node():
    rng = np.random.default_rng(2)
    g = eb.Graph("outlier")
    x = g.input("x", (None, 32))
    w1 = (rng.standard_normal((32, 32)) / np.sqrt(32)).astype(np.float32)
    w1[5] *= 300.0                                   # one output channel 300x the others
    h = g.linear(x, w1, None, name="fc1")
    w2 = (rng.standard_normal((16, 32)) / np.sqrt(32)).astype(np.float32)
    w2[:, 5] = 0.0                                   # ... which the next layer ignores
    h = g.linear(h, w2, None, name="fc2")
    g.output(g.linear(g.relu(h), (rng.standard_normal((10, 16)) / 4).astype(np.float32), None, name="fc3"))
    calib = [rng.standard_normal((32, 32)).astype(np.float32) for _ in range(3)]
    with pytest.warns(eb.QuantizationWarning, match=r"fc1|fc2") as record:
        eb.quantize(g, calib)
    message = str(record[0].message)
    first = message.split("hurt the output most: ")[1].split(" (")[0]
    assert first in ("fc1", "fc2")
    with warnings.catch_warnings():
        warnings.simplefilter("error", eb.QuantizationWarning)
        eb.quantize(g, calib, exclude=["fc1", "fc2"])           # repaired: no warning
        eb.quantize(g, calib, min_sqnr=None)                    # check off


def test_no_warning_on_a_healthy_model():
    d = digits()
    with warnings.catch_warnings():
        warnings.simplefilter("error", eb.QuantizationWarning)
        eb.quantize(cnn_graph(d.weights), [d.calib_images[:128]])


def test_static_options_refuse_dynamic():
    d = digits()
    for option in ({"accuracy_budget": 0.01}, {"smooth": 0.5}, {"equalize": True}, {"bias_correction": True}):
        with pytest.raises(ValueError, match="static quantization only"):
            eb.quantize(cnn_graph(d.weights), None, dynamic=True, **option)
