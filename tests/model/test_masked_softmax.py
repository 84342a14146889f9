"""Attention's softmax(scores * scale + mask) as one node and one C++ step (graph.passes.
fuse_masked_softmax): the float graph's roundings, every ISA the same bits, exported to ONNX."""
import numpy as np
import pytest

import eightbit as eb
from eightbit.graph.passes import fuse_masked_softmax, prepare_for_quantization
from eightbit.models import bert_encoder, synthetic_bert_weights, synthetic_encoder_inputs


def _scores_graph(t=9, heads=3, mask_shape=(1, 1, 9), scale=0.125):
    g = eb.Graph()
    s = g.input("s", (None, heads, t, t))
    m = g.input("mask", (None,) + mask_shape)
    x = s if scale is None else g.mul(s, np.float32(scale), name="scale")
    g.output(g.softmax(g.add(x, m, name="mask_add"), -1, name="softmax"))
    return g


def _feeds(rng, n=4, t=9, heads=3, mask_shape=(1, 1, 9)):
    mask = np.where(rng.random((n,) + mask_shape) < 0.3, np.float32(np.finfo(np.float32).min), np.float32(0))
    mask[..., 0] = 0
    return {"s": (rng.standard_normal((n, heads, t, t)) * 8).astype(np.float32), "mask": mask.astype(np.float32)}


@pytest.mark.parametrize("scale", [0.125, None])
@pytest.mark.parametrize("mask_shape", [(1, 1, 9), (1, 9, 9), (3, 9, 9), (1, 1, 1)])
def test_the_fused_node_computes_what_the_three_did(rng, scale, mask_shape):
    g = _scores_graph(mask_shape=mask_shape, scale=scale)
    fused = fuse_masked_softmax(g)
    assert [n.op for n in fused.nodes] == ["softmax"]
    assert fused.nodes[0].inputs == ["s", "mask"] and fused.nodes[0].attrs["scale"] == scale
    feeds = _feeds(rng, mask_shape=mask_shape)
    np.testing.assert_array_equal(fused.run(feeds), g.run(feeds))


def test_what_does_not_fuse(rng):
    g = eb.Graph()
    s = g.input("s", (None, 2, 5, 5))
    m = g.input("mask", (None, 1, 1, 5))
    a = g.add(s, m, name="mask_add")
    g.output(g.softmax(a, 2, name="not_last_axis"))       # softmax over another axis
    g.output(g.softmax(g.add(s, m, name="reused"), -1, name="sm"))
    g.output(g.identity(g.tensors["reused"], name="reused_out"))  # the add's value is also an output
    assert [n.op for n in fuse_masked_softmax(g).nodes] == [n.op for n in g.nodes]


@pytest.mark.parametrize("mask_shape", [(1, 1, 9), (3, 9, 9)])
def test_the_executor_matches_the_float_graph_on_every_isa(rng, mask_shape):
    g = _scores_graph(mask_shape=mask_shape)
    feeds = _feeds(rng, mask_shape=mask_shape)
    want = g.run(feeds)
    outs, best = {}, eb.cpu_info()["isa"]
    for isa in eb.cpu_info()["available"]:
        eb.set_isa(isa)
        try:
            outs[isa] = eb.compile(g).run(feeds)["softmax"]
        finally:
            eb.set_isa(best)
    first = next(iter(outs.values()))
    for isa, y in outs.items():
        np.testing.assert_array_equal(y, first, err_msg=isa)
    np.testing.assert_allclose(first, want, rtol=2e-6, atol=1e-7)


def test_the_encoder_runs_one_softmax_step_per_layer(rng):
    w = synthetic_bert_weights(layers=2, hidden=48, heads=4, ffn=96, seed=1)
    g = bert_encoder(w, layers=2, heads=4, seq_len=12, hidden=48, ffn=96)
    prepared = prepare_for_quantization(g)
    assert not [n for n in prepared.nodes if n.name.endswith((".mask_add", ".scale"))]
    x, mask = synthetic_encoder_inputs(w, 6, 12, seed=2)
    feeds = {"x": x, "mask": mask}
    np.testing.assert_array_equal(prepared.run(feeds)["pooled"], g.run(feeds)["pooled"])
    for qm in (eb.compile(g), eb.quantize(g, dynamic=True)):
        softmaxes = [s for s in qm.plan.steps if s.source.endswith(".softmax")]
        assert len(softmaxes) == 2 and all(len(s.inputs) == 2 for s in softmaxes)


def test_exported_models_run_in_onnx_runtime(rng):
    ort = pytest.importorskip("onnxruntime")
    g = _scores_graph()
    feeds = _feeds(rng)
    fused = fuse_masked_softmax(g)
    for model, want in ((eb.to_onnx(fused), fused.run(feeds)), (eb.to_onnx(eb.compile(g)), eb.compile(g).run(feeds)["softmax"])):
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, feeds)[0], want, rtol=2e-6, atol=1e-7)


def test_bad_masks_are_refused():
    g = eb.Graph()
    s = g.input("s", (None, 2, 5, 5))
    with pytest.raises(ValueError, match="broadcast"):
        g.softmax(s, -1, mask=g.input("m", (None, 1, 1, 4)))
    with pytest.raises(ValueError, match="finite"):
        g.softmax(s, -1, scale=float("inf"))
