"""activation_symmetric=True: int8 activations with zero point 0, bit-exact on every ISA."""
import numpy as np
import pytest

import eightbit as eb
from eightbit.data import cnn_graph, digits
from eightbit.graph.passes import prepare_for_quantization


@pytest.fixture(scope="module")
def cnn():
    d = digits()
    return cnn_graph(d.weights), [d.calib_images[:128], d.calib_images[128:256]], d.test_images[:64]


def test_zero_points_are_zero_and_scales_symmetric(cnn):
    g, calib, x = cnn
    qm = eb.quantize(g, calib, activation_symmetric=True)
    quantized = [t for t in qm.plan.tensors.values() if t.quantized]
    assert quantized and all(t.dtype == np.int8 and t.zero_point == 0 for t in quantized)
    # minmax calibration: scale = max|x| / 127 over the calibration batches (float32 division)
    prepared = prepare_for_quantization(g)
    values = [prepared.run(b, return_all=True) for b in calib]
    layers = [s for s in qm.plan.steps if s.op in ("conv", "linear")]
    assert len(layers) == 3
    for step in layers:
        name = prepared.node(step.source).output
        amax = max(float(np.abs(v[name]).max()) for v in values)
        assert qm.plan.tensors[step.output].scale == pytest.approx(float(np.float32(amax) / np.float32(127)), rel=1e-6)


def test_bit_exact_on_every_isa(cnn):
    g, calib, x = cnn
    qm = eb.quantize(g, calib, activation_symmetric=True)
    want = qm.reference_run({"x": x})["logits"]
    default = eb.cpu_info()["isa"]
    try:
        for isa in eb.cpu_info()["available"]:
            eb.set_isa(isa)
            np.testing.assert_array_equal(qm(x), want, err_msg=isa)
    finally:
        eb.set_isa(default)
    accuracy = np.mean(qm(x).argmax(1) == digits().test_labels[:64])
    assert accuracy >= np.mean(g.run(x).argmax(1) == digits().test_labels[:64]) - 0.02


def test_contradictory_dtype(cnn):
    g, calib, _ = cnn
    with pytest.raises(ValueError, match="activation_symmetric"):
        eb.quantize(g, calib, activation_symmetric=True, activation_dtype="uint8")
