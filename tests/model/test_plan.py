"""A hand-built quantized plan run by eightbit.ops (every ISA) and by eightbit.reference: identical
bits; and close to the float computation the plan quantizes."""
import numpy as np
import pytest

from eightbit.model import QuantizedModel, Step


def test_ops_equal_reference_on_every_isa(isa, rng, tiny_cnn_plan):
    plan, _ = tiny_cnn_plan(rng)
    qm = QuantizedModel(plan)
    x = rng.uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)
    want = qm.reference_run({"x": x})["y"]
    np.testing.assert_array_equal(qm(x), want)


def test_plan_approximates_the_float_model(rng, tiny_cnn_plan, tiny_float_forward):
    plan, weights = tiny_cnn_plan(rng)
    x = rng.uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)
    y = QuantizedModel(plan)(x)
    ref = tiny_float_forward(x.astype(np.float64), *weights)
    # a few output quantization steps (0.05) plus propagated input / weight rounding
    np.testing.assert_allclose(y, ref, atol=0.25)
    assert np.abs(y - ref).mean() < 0.06


def test_batch_dimension_is_free(rng, tiny_cnn_plan):
    qm = QuantizedModel(tiny_cnn_plan(rng)[0])
    x = rng.uniform(-1, 1, (5, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(qm(x)[2:3], qm(x[2:3]))


def test_summary_and_size(rng, tiny_cnn_plan):
    qm = QuantizedModel(tiny_cnn_plan(rng)[0])
    text = qm.summary()
    assert "conv1" in text and "fc" in text
    assert qm.size_bytes == 8 * 27 + 8 * 4 + 8 * 4 + 1280 + 10 * 4 + 10 * 4


@pytest.mark.parametrize("x, error, match", [
    (np.zeros((2, 3, 8, 7), np.float32), ValueError, "expected shape"),
    (np.zeros((2, 3, 8), np.float32), ValueError, "expected shape"),
    (np.zeros((1, 3, 8, 8), np.complex64), TypeError, "float32"),
])
def test_bad_inputs(rng, x, error, match, tiny_cnn_plan):
    qm = QuantizedModel(tiny_cnn_plan(rng)[0])
    with pytest.raises(error, match=match):
        qm(x)


def test_run_names_missing_and_unknown_inputs(rng, tiny_cnn_plan):
    qm = QuantizedModel(tiny_cnn_plan(rng)[0])
    with pytest.raises(ValueError, match="missing input 'x'"):
        qm.run({})
    with pytest.raises(ValueError, match="unknown input"):
        qm.run({"x": np.zeros((1, 3, 8, 8), np.float32), "z": 1})


def test_validate_names_the_bad_step(rng, tiny_cnn_plan):
    plan, _ = tiny_cnn_plan(rng)
    plan.steps[1].consts.pop("bias")
    with pytest.raises(ValueError, match=r"step 1 \(conv, from conv1\): missing constant"):
        QuantizedModel(plan)
    plan, _ = tiny_cnn_plan(rng)
    plan.steps[2], plan.steps[3] = plan.steps[3], plan.steps[2]
    with pytest.raises(ValueError, match="is not computed before"):
        QuantizedModel(plan)
    plan, _ = tiny_cnn_plan(rng)
    plan.steps[0] = Step("gemm", ("x",), "xq")
    with pytest.raises(ValueError, match="unknown op 'gemm'"):
        QuantizedModel(plan)


def test_copying_steps_keep_the_quantization(rng, tiny_cnn_plan):
    from dataclasses import replace

    plan, _ = tiny_cnn_plan(rng)
    plan.tensors["p"] = replace(plan.tensors["p"], scale=0.03)
    with pytest.raises(ValueError, match=r"step 2 \(max_pool.*keep the input's scale"):
        QuantizedModel(plan)
