"""eb.compile: a float32 graph as a C++ plan (no calibration, no int8): every node a C++ float32
step, outputs within float32 rounding of graph.run (NumPy), no call back into Python for the ops
the C++ float steps cover; the result saves, loads and runs from the C library like any model."""
import numpy as np
import pytest

import eightbit as eb
from eightbit.model import quantized_model
from eightbit.models import encoder


def _no_host(*args, **kwargs):
    raise AssertionError("a float step called back into Python")


def _cnn(rng):
    g = eb.Graph()
    x = g.input("x", (None, 3, 16, 16))
    h = g.conv2d(x, rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, None, padding=1)
    h = g.relu(g.batch_norm2d(h, rng.standard_normal(8).astype(np.float32), rng.uniform(0.5, 2, 8).astype(np.float32),
                              rng.uniform(0.5, 1.5, 8).astype(np.float32), rng.standard_normal(8).astype(np.float32)))
    h = g.max_pool2d(h, 2)
    d = g.conv2d(h, rng.standard_normal((8, 1, 3, 3)).astype(np.float32), rng.standard_normal(8).astype(np.float32),
                 padding=1, groups=8)
    h = g.add(g.hardswish(d), h)
    h = g.avg_pool2d(h, 2)
    h = g.concat([h, g.sigmoid(h)], axis=1)
    h = g.flatten(g.global_avg_pool2d(h))
    y = g.linear(h, rng.standard_normal((10, 16)).astype(np.float32), rng.standard_normal(10).astype(np.float32))
    g.output(g.softmax(g.gelu(y), axis=1))
    return g, {"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)}


def _encoder(rng):
    w = encoder.synthetic_bert_weights(layers=2, hidden=32, heads=4, ffn=64)
    g = encoder.bert_encoder(w, layers=2, heads=4, seq_len=12, hidden=32, ffn=64)
    x, mask = encoder.synthetic_encoder_inputs(w, 3, 12)
    return g, {"x": x, "mask": mask}


@pytest.mark.parametrize("make", [_cnn, _encoder], ids=["cnn", "encoder"])
def test_compiled_graph_matches_the_float_graph(make, isa, monkeypatch, tmp_path):
    g, feeds = make(np.random.default_rng(6))
    monkeypatch.setattr(quantized_model, "_host_function", _no_host)
    m = eb.compile(g)
    assert {s.op for s in m.plan.steps} == {"float"}          # no int8 step anywhere
    want = g.run(feeds)
    want = want if isinstance(want, dict) else {g.outputs[0]: want}
    got = m.run(feeds)
    for name, w in want.items():
        scale = float(np.abs(w).max()) or 1.0
        np.testing.assert_allclose(got[name], w, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
    m.save(tmp_path / "f.eb")
    again = eb.load(tmp_path / "f.eb").run(feeds)
    for name in want:
        np.testing.assert_array_equal(again[name], got[name])


def test_compile_wants_a_graph():
    with pytest.raises(TypeError, match="Graph"):
        eb.compile("model.onnx")
