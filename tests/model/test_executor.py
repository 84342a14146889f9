"""The C++ plan executor (built from the lowered plan by the C++ model reader): bit-identical to run_plan with eightbit.reference
for every step kind on every ISA; the arena planned once and reused; inputs checked before any
memory is touched."""
import numpy as np
import pytest

import eightbit as eb
from eightbit import reference
from eightbit.model import Plan, QuantizedModel, Step, TensorSpec
from eightbit.model.execute import run_plan
from eightbit.model.quantized_model import build_executor

U8, S8, F32 = np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.float32)


class Builder:
    """A plan from float inputs: quantize them, add steps, dequantize the outputs."""

    def __init__(self, rng, dtype=U8):
        self.rng, self.dtype = rng, np.dtype(dtype)
        self.tensors, self.steps, self.inputs, self.outputs = {}, [], [], []

    def q(self, name, shape, scale=None, zp=None):
        lo, hi = (-128, 127) if self.dtype == S8 else (0, 255)
        scale = float(self.rng.uniform(0.01, 0.05)) if scale is None else scale
        zp = int(self.rng.integers(lo + 40, hi - 40)) if zp is None else zp
        self.tensors[name] = TensorSpec(name, self.dtype, (None, *shape), scale, zp)
        return name

    def f(self, name, shape):
        self.tensors[name] = TensorSpec(name, F32, (None, *shape))
        return name

    def input(self, name, shape_nchw, **qp):
        self.f(name, shape_nchw)
        self.inputs.append(name)
        s = shape_nchw
        nhwc = (s[1], s[2], s[0]) if len(s) == 3 else s
        return self.step("quantize", (name,), self.q(name + "_q", nhwc, **qp))

    def step(self, op, ins, out, attrs=None, consts=None):
        self.steps.append(Step(op, tuple(ins), out, dict(attrs or {}), dict(consts or {}), source=out))
        return out

    def output(self, name):
        spec = self.tensors[name]
        s = spec.shape[1:]
        shape = (s[2], s[0], s[1]) if len(s) == 3 and spec.quantized else s
        out = self.f(name + "_y", shape)
        if spec.quantized:
            self.step("dequantize", (name,), out)
        else:
            out = name
        self.outputs.append(out)

    def conv_consts(self, o, i, kh, kw):
        return dict(w=self.rng.integers(-127, 128, (o, i, kh, kw)).astype(np.int8),
                    w_scale=self.rng.uniform(0.002, 0.01, o).astype(np.float32),
                    bias=self.rng.integers(-3000, 3000, o).astype(np.int32))

    def plan(self):
        return Plan(self.tensors, self.steps, self.inputs, self.outputs).validate()

    def feeds(self, plan, batch):
        return {n: self.rng.uniform(-3, 3, (batch, *plan.tensors[n].shape[1:])).astype(np.float32)
                for n in plan.inputs}


# ----------------------------------------------------------------------------- one step each

def conv_case(b, *, stride=1, pads=(1, 1, 1, 1), dilation=1, group=1, k=3, cin=4, cout=8, activation=None,
              requant="float", hw=(7, 9)):
    x = b.input("x", (cin, *hw))
    attrs = dict(strides=(stride, stride), pads=pads, dilations=(dilation, dilation), group=group,
                 activation=activation, requant=requant)
    oh = (hw[0] + pads[0] + pads[2] - dilation * (k - 1) - 1) // stride + 1
    ow = (hw[1] + pads[1] + pads[3] - dilation * (k - 1) - 1) // stride + 1
    b.output(b.step("conv", (x,), b.q("h", (oh, ow, cout)), attrs, b.conv_consts(cout, cin // group, k, k)))


def linear_case(b, requant="float", activation=None, rows=()):
    x = b.input("x", rows + (24,))
    b.output(b.step("linear", (x,), b.q("h", rows + (10,)), dict(requant=requant, activation=activation),
                    {k: v.reshape(10, 24) if k == "w" else v for k, v in b.conv_consts(10, 24, 1, 1).items()}))


def binary_case(b, op, shape_a, shape_b):
    xa, xb = b.input("a", shape_a), b.input("b", shape_b)
    nhwc = lambda s: (s[1], s[2], s[0]) if len(s) == 3 else s  # noqa: E731
    out = np.broadcast_shapes(nhwc(shape_a), nhwc(shape_b))
    b.output(b.step(op, (xa, xb), b.q("c", out)))


def pool_case(b, op, kernel, strides, pads, **attrs):
    x = b.input("x", (6, 9, 8))
    spatial = []
    for a, n in enumerate((9, 8)):
        span = n + pads[a] + pads[a + 2] - (kernel[a] - 1) * attrs.get("dilations", (1, 1))[a] - 1
        out = -(-span // strides[a]) + 1 if attrs.get("ceil_mode") else span // strides[a] + 1
        if attrs.get("ceil_mode") and (out - 1) * strides[a] >= n + pads[a]:
            out -= 1
        spatial.append(out)
    qp = dict(scale=b.tensors[x].scale, zp=b.tensors[x].zero_point) if op == "max_pool" else {}
    b.output(b.step(op, (x,), b.q("p", (*spatial, 6), **qp), dict(kernel=kernel, strides=strides, pads=pads, **attrs)))


def global_pool_case(b):
    x = b.input("x", (5, 6, 7))
    b.output(b.step("global_avg_pool", (x,), b.q("p", (1, 1, 5))))


def concat_case(b, same_scale=False):
    x1 = b.input("x1", (3, 5, 6))
    qp = dict(scale=b.tensors[x1].scale, zp=b.tensors[x1].zero_point) if same_scale else {}
    x2 = b.input("x2", (4, 5, 6), **qp)
    b.output(b.step("concat", (x1, x2), b.q("c", (5, 6, 7), **qp), dict(axis=3)))


def concat_2d_case(b):
    x1, x2 = b.input("x1", (5,)), b.input("x2", (7,))
    b.output(b.step("concat", (x1, x2), b.q("c", (12,)), dict(axis=1)))


def lut_case(b):
    x = b.input("x", (3, 4, 5))
    table = b.rng.integers(0, 256, 256).astype(np.uint8).view(b.dtype)
    b.output(b.step("lut", (x,), b.q("y", (4, 5, 3)), consts=dict(table=table)))


def reshape_case(b, in_shape, out_shape):
    x = b.input("x", in_shape)
    spec = b.tensors[x]
    nhwc = (out_shape[1], out_shape[2], out_shape[0]) if len(out_shape) == 3 else out_shape
    y = b.step("reshape", (x,), b.q("r", nhwc, scale=spec.scale, zp=spec.zero_point),
               dict(shape=(None, *out_shape)))
    b.output(y)


def softmax_case(b):
    x = b.input("x", (10,))
    d = b.step("dequantize", (x,), b.f("d", (10,)))
    b.output(b.step("softmax", (d,), b.f("s", (10,)), dict(axis=-1)))


def float_step_case(b):
    x = b.input("x", (3, 4, 4))
    d = b.step("dequantize", (x,), b.f("d", (3, 4, 4)))
    # add of a constant with a fused ReLU: a float node left float32 (a C++ float step)
    shift = np.linspace(-2, 2, 16, dtype=np.float32).reshape(4, 4)
    t = b.step("float", (d,), b.f("t", (3, 4, 4)), dict(op="add", attrs={"activation": "relu"}), dict(b=shift))
    b.output(b.step("quantize", (t,), b.q("tq", (4, 4, 3))))


CASES = {
    "conv3x3_relu": lambda b: conv_case(b, activation="relu"),
    "conv_stride2_dilated_relu6_fixed": lambda b: conv_case(b, stride=2, pads=(0, 2, 1, 0), dilation=2,
                                                            activation="relu6", requant="fixed"),
    "conv_pointwise": lambda b: conv_case(b, k=1, pads=(0, 0, 0, 0)),
    "conv_grouped_clip": lambda b: conv_case(b, group=2, activation=("clip", -0.5, 1.0)),
    "conv_depthwise": lambda b: conv_case(b, group=8, cin=8, cout=8, activation="relu"),
    "conv_depthwise_fixed": lambda b: conv_case(b, group=8, cin=8, cout=8, k=5, pads=(2, 2, 2, 2),
                                                requant="fixed"),
    "linear": linear_case,
    "linear_fixed_relu": lambda b: linear_case(b, "fixed", "relu"),
    "linear_3d_tokens": lambda b: linear_case(b, rows=(5,)),
    "linear_3d_fixed_relu": lambda b: linear_case(b, "fixed", "relu", rows=(7,)),
    "add_residual": lambda b: binary_case(b, "add", (5, 4, 6), (5, 4, 6)),
    "add_channel_broadcast": lambda b: binary_case(b, "add", (5, 1, 1), (5, 4, 6)),
    "add_2d_batch_order": lambda b: binary_case(b, "add", (1,), (1,)),
    "add_2d_broadcast": lambda b: binary_case(b, "add", (7,), (1,)),
    "mul_broadcast": lambda b: binary_case(b, "mul", (5, 4, 6), (1, 4, 6)),
    "max_pool": lambda b: pool_case(b, "max_pool", (3, 3), (2, 2), (1, 1, 1, 1)),
    "max_pool_ceil_dilated": lambda b: pool_case(b, "max_pool", (2, 3), (2, 2), (0, 1, 0, 0), ceil_mode=1,
                                                 dilations=(2, 1)),
    "avg_pool_include_pad": lambda b: pool_case(b, "avg_pool", (3, 3), (2, 1), (1, 1, 1, 1)),
    "avg_pool_exclude_pad_ceil": lambda b: pool_case(b, "avg_pool", (3, 2), (2, 2), (1, 0, 1, 1), ceil_mode=1,
                                                     count_include_pad=0),
    "avg_pool_whole_image": lambda b: pool_case(b, "avg_pool", (9, 8), (1, 1), (0, 0, 0, 0)),
    "global_avg_pool": global_pool_case,
    "concat_requant": concat_case,
    "concat_copy": lambda b: concat_case(b, same_scale=True),
    "concat_2d": concat_2d_case,
    "lut": lut_case,
    "reshape_flatten": lambda b: reshape_case(b, (3, 4, 5), (60,)),
    "reshape_unflatten": lambda b: reshape_case(b, (60,), (3, 4, 5)),
    "reshape_4d_4d": lambda b: reshape_case(b, (3, 4, 5), (5, 3, 4)),
    "float_step": float_step_case,
}


@pytest.mark.parametrize("dtype", [U8, S8], ids=["u8", "s8"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_step_kind_matches_reference_on_every_isa(case, dtype, rng):
    b = Builder(rng, dtype)
    CASES[case](b)
    plan = b.plan()
    ex = build_executor(plan)
    for batch in (3, 1):
        feeds = b.feeds(plan, batch)
        want = run_plan(plan, feeds, reference)
        for isa in eb.cpu_info()["available"]:
            before = eb.cpu_info()["isa"]
            eb.set_isa(isa)
            try:
                got = ex.run([feeds[n] for n in plan.inputs])
            finally:
                eb.set_isa(before)
            for name, y in zip(plan.outputs, got):
                np.testing.assert_array_equal(y, want[name], err_msg=f"{case} {isa} batch {batch} {name}")


def test_softmax_is_close_to_numpy(rng):
    b = Builder(rng)
    softmax_case(b)
    plan = b.plan()
    ex = build_executor(plan)
    feeds = b.feeds(plan, 5)
    got = ex.run([feeds["x"]])[0]
    want = run_plan(plan, feeds, reference)[plan.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)


# --------------------------------------------------------------------------- a whole CNN

def resnet_like(rng, dtype=U8, c=8, hw=8):
    """stem conv -> [conv relu -> conv] + residual add -> max pool -> concat(with avg pool) -> lut
    -> depthwise -> global pool -> reshape -> linear -> dequantize -> softmax."""
    b = Builder(rng, dtype)
    x = b.input("x", (3, hw, hw))
    h = b.step("conv", (x,), b.q("h", (hw, hw, c)), dict(pads=(1, 1, 1, 1), activation="relu"),
               b.conv_consts(c, 3, 3, 3))
    r = b.step("conv", (h,), b.q("r1", (hw, hw, c)), dict(pads=(1, 1, 1, 1), activation="relu"),
               b.conv_consts(c, c, 3, 3))
    r = b.step("conv", (r,), b.q("r2", (hw, hw, c)), dict(pads=(1, 1, 1, 1), requant="fixed"),
               b.conv_consts(c, c, 3, 3))
    s = b.step("add", (r, h), b.q("s", (hw, hw, c)))
    h2 = hw // 2
    p = b.step("max_pool", (s,), b.q("p", (h2, h2, c), scale=b.tensors[s].scale, zp=b.tensors[s].zero_point),
               dict(kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0)))
    a = b.step("avg_pool", (s,), b.q("a", (h2, h2, c)), dict(kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1)))
    cat = b.step("concat", (p, a), b.q("cat", (h2, h2, 2 * c)), dict(axis=3))
    table = rng.integers(0, 256, 256).astype(np.uint8).view(b.dtype)
    lut = b.step("lut", (cat,), b.q("lut", (h2, h2, 2 * c)), consts=dict(table=table))
    dw = b.step("conv", (lut,), b.q("dw", (h2, h2, 2 * c)), dict(pads=(1, 1, 1, 1), group=2 * c,
                                                                  activation="relu6"), b.conv_consts(2 * c, 1, 3, 3))
    g = b.step("global_avg_pool", (dw,), b.q("g", (1, 1, 2 * c)))
    f = b.step("reshape", (g,), b.q("f", (2 * c,), scale=b.tensors[g].scale, zp=b.tensors[g].zero_point),
               dict(shape=(None, 2 * c)))
    consts = b.conv_consts(10, 2 * c, 1, 1)
    consts["w"] = consts["w"].reshape(10, 2 * c)
    y = b.step("linear", (f,), b.q("yq", (10,)), {}, consts)
    d = b.step("dequantize", (y,), b.f("logits", (10,)))
    b.outputs.append(d)
    b.outputs.append(b.step("softmax", (d,), b.f("prob", (10,)), dict(axis=1)))
    return b, b.plan()


@pytest.mark.parametrize("dtype", [U8, S8], ids=["u8", "s8"])
def test_cnn_matches_reference_on_every_isa(isa, dtype, rng):
    b, plan = resnet_like(rng, dtype)
    qm = QuantizedModel(plan)
    feeds = b.feeds(plan, 4)
    want = qm.reference_run(feeds)
    got = qm.run(feeds)
    np.testing.assert_array_equal(got["logits"], want["logits"])
    np.testing.assert_allclose(got["prob"], want["prob"], rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(qm.run_steps(feeds)["logits"], want["logits"])


def test_batch_sizes_in_a_row_reuse_the_arena(rng):
    b, plan = resnet_like(rng)
    ex = build_executor(plan)
    per_sample = ex.arena_bytes_per_sample
    assert ex.arena_bytes == 0
    for batch in (4, 1, 7, 4, 2, 7, 0, 3):
        feeds = b.feeds(plan, batch)
        got = ex.run([feeds["x"]])
        assert got[0].shape == (batch, 10)
        if batch:
            np.testing.assert_array_equal(got[0], run_plan(plan, feeds, reference)["logits"])
        assert ex.arena_bytes >= per_sample * max(batch, 1)
    size = ex.arena_bytes
    for _ in range(5):
        ex.run([b.feeds(plan, 7)["x"]])
        assert ex.arena_bytes == size        # the arena of the largest batch so far serves every call


def test_arena_shares_memory_between_dead_tensors(rng):
    b, plan = resnet_like(rng)
    ex = build_executor(plan)
    internal = [s for n, s in plan.tensors.items() if n not in plan.inputs + plan.outputs]
    total = sum(-(-int(np.prod(s.shape[1:])) * s.dtype.itemsize // 64) * 64 for s in internal)
    assert 0 < ex.arena_bytes_per_sample < total


def test_batch_of_one_equals_slice(rng):
    b, plan = resnet_like(rng)
    qm = QuantizedModel(plan)
    x = b.feeds(plan, 5)["x"]
    np.testing.assert_array_equal(qm(x)[0][2:3], qm(x[2:3])[0])


# ------------------------------------------------------------------------------- bad inputs

def tiny(rng):
    b = Builder(rng)
    conv_case(b, activation="relu")
    return b, QuantizedModel(b.plan())


@pytest.mark.parametrize("x, error, match", [
    (np.zeros((2, 4, 7, 8), np.float32), ValueError, r"input 'x': expected shape \(N, 4, 7, 9\), got \(2, 4, 7, 8\)"),
    (np.zeros((2, 4, 7), np.float32), ValueError, "expected shape"),
    (np.zeros((1, 4, 7, 9), np.complex64), TypeError, "input 'x': expected float32"),
    (np.array(["a"]), TypeError, "input 'x'"),
    (None, TypeError, "input 'x'"),
])
def test_bad_inputs(rng, x, error, match):
    _, qm = tiny(rng)
    with pytest.raises(error, match=match):
        qm(x)


def test_inputs_are_converted_like_run_plan(rng):
    b, qm = tiny(rng)
    x = rng.uniform(-3, 3, (2, 4, 9, 7)).astype(np.float64).transpose(0, 1, 3, 2)  # float64, not contiguous
    np.testing.assert_array_equal(qm(x), qm.reference_run({"x": x})["h_y"])
    xi = rng.integers(-3, 4, (2, 4, 7, 9))
    np.testing.assert_array_equal(qm(xi), qm(xi.astype(np.float32)))


def test_inputs_must_share_the_batch(rng):
    b = Builder(rng)
    binary_case(b, "add", (5, 4, 6), (5, 4, 6))
    qm = QuantizedModel(b.plan())
    a, bb = np.zeros((2, 5, 4, 6), np.float32), np.zeros((3, 5, 4, 6), np.float32)
    with pytest.raises(ValueError, match="input 'b': batch size 3 differs"):
        qm.run({"a": a, "b": bb})
    with pytest.raises(ValueError, match="missing input 'b'"):
        qm.run({"a": a})
    with pytest.raises(ValueError, match="unknown input"):
        qm.run({"a": a, "b": a, "c": a})
    with pytest.raises(ValueError, match="expected 2 input"):
        qm._executor.run([a])


def test_inconsistent_plans_are_rejected(rng):
    b = Builder(rng)
    conv_case(b)
    plan = b.plan()
    plan.tensors["h"] = TensorSpec("h", U8, (None, 7, 8, 8), 0.1, 0)  # a conv output of the wrong width
    with pytest.raises(ValueError, match=r"step 1 \(conv, from h\): tensor 'h' has shape"):
        build_executor(plan)
    b = Builder(rng)
    reshape_case(b, (3, 4, 5), (60,))
    plan = b.plan()
    plan.tensors["r"] = TensorSpec("r", U8, (None, 59), 0.1, 0)
    with pytest.raises(ValueError, match="cannot reshape"):
        build_executor(plan)


def test_float_step_errors_propagate(rng, monkeypatch):
    """An exception inside a float step's callback reaches the caller; the executor runs again after."""
    from dataclasses import replace

    from eightbit.graph import Graph
    from eightbit.model import steps

    b = Builder(rng)
    float_step_case(b)
    with monkeypatch.context() as m:  # no C++ form for the float step: it calls back into Python
        m.setitem(steps.REGISTRY, "float", replace(steps.REGISTRY["float"], lower=lambda *args: {"kind": "host"}))
        qm = QuantizedModel(b.plan())
    x = rng.uniform(-3, 3, (2, 3, 4, 4)).astype(np.float32)
    want = qm.reference_run({"x": x})["tq_y"]

    def fail(self, *args, **kwargs):
        raise RuntimeError("float node failed")

    with monkeypatch.context() as m:
        m.setattr(Graph, "run", fail)
        with pytest.raises(RuntimeError, match="float node failed"):
            qm(x)
    np.testing.assert_array_equal(qm(x), want)


def test_invalid_float_step_is_refused(rng):
    b = Builder(rng)
    float_step_case(b)
    plan = b.plan()
    plan.steps[2].attrs["op"] = "softmax"  # needs an axis attribute
    with pytest.raises(ValueError, match="not a valid float node"):
        QuantizedModel(plan)


def test_a_reshape_read_last_shares_its_input_slot():
    """A byte-preserving reshape whose input nothing reads afterwards takes the input's arena slot
    (no copy); one whose input is read again gets its own slot. Both compute the same."""
    rng = np.random.default_rng(5)
    w = rng.normal(size=(64, 64)).astype(np.float32)

    def model(reuse: bool):
        g = eb.Graph()
        x = g.input("x", (None, 4, 64))
        h, k = g.linear(x, w, name="h"), g.linear(x, -w, name="k")     # k lives across the reshape
        r = g.reshape(h, (256,), name="r")
        y = g.add(g.reshape(r, (4, 64), name="back"), k, name="y")
        g.output(g.add(y, h, name="again") if reuse else y)
        return eb.compile(g)

    alias, copy = model(False), model(True)
    tensor = 4 * 64 * 4
    assert alias._executor.arena_bytes_per_sample < 3 * tensor    # h, r and back share one slot beside k
    assert copy._executor.arena_bytes_per_sample >= 3 * tensor    # h is read again: r needs its own
    x = rng.normal(size=(3, 4, 64)).astype(np.float32)
    h = x @ w.T
    np.testing.assert_allclose(alias(x), h - h, atol=1e-3)
    np.testing.assert_allclose(copy(x), h, rtol=1e-4, atol=1e-3)
