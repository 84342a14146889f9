"""Float ONNX test models, built with onnx.helper the way torch.onnx.export (opset 17) writes them.

Each builder returns ``(model, inputs)``: an ``onnx.ModelProto`` and ``inputs(rng, batch)`` making
a realistic ``{input name: float32 array}`` feed. Weights are small, seeded and scaled like a trained
net (He init; depthwise kernels with a dominant centre tap; BatchNorm statistics measured on a probe
batch, then perturbed), and images are photo-like (each pixel N(0, 1), neighbours and colours
correlated), so an int8 model of each reaches >= 30 dB SQNR against the float one (33-38 dB with
eb.quantize's defaults and 8 x 32 calibration samples; the MobileNet's seed was picked among ones
giving 26-40 dB: per-tensor uint8 through its 14 quantization points is seed-sensitive).

PyTorch's conventions are kept: ``/scope/Op`` node names and ``/scope/Op_output_0`` tensors,
``module.weight`` initializers (``onnx::Conv_N`` once Conv+BN is folded), scalars as Constant nodes,
nn.Linear as Gemm(transB=1) on 2-D input and MatMul + Add(bias, .) on 3-D input, exact GELU as
Div/Erf/Add/Mul/Mul, ``x.view(x.size(0), -1)`` as Shape/Gather/Unsqueeze/Concat/Reshape, a symbolic
batch ``N``. ``MODELS`` maps a name to a zero-argument builder.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
BN_EPS = 1e-5
BN_GAMMA = (0.6, 1.4)
DW_NOISE = 0.5
IMAGE_BLUR = 1.5
MOBILENET_DS, MOBILENET_EXPAND = [(16, 24, 1), (24, 32, 2)], 64
_IR_VERSION = {17: 8, 20: 9}  # what torch writes for opset 17; opset 20 needs IR 9


class _Builder:
    """Emits PyTorch-style nodes and, for CNNs, evaluates a probe batch alongside in NumPy so
    BatchNorm statistics can be set to what the layer actually sees (as training would)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.used: set[str] = set()
        self.value: dict[str, np.ndarray] = {}  # probe values by tensor name (CNNs only)
        self.anon = 100  # counter for onnx::Op_N initializer names
        self.bn_beta = 0.2  # spread of BatchNorm shifts

    # ---- emission ------------------------------------------------------------------------------
    def node(self, op, inputs, scope="", n_out=1, **attrs):
        base = f"{scope}/{op}"
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        outs = [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def anon_init(self, op, arr):
        self.anon += 1
        return self.init(f"onnx::{op}_{self.anon}", arr)

    def constant(self, arr, scope=""):
        return self.node("Constant", [], scope, value=numpy_helper.from_array(np.asarray(arr)))

    # ---- weights -------------------------------------------------------------------------------
    def he(self, shape, fan_in):
        return (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def bias(self, n, fan_in):
        bound = 1.0 / np.sqrt(fan_in)  # nn.Linear / nn.Conv2d default bias init
        return self.rng.uniform(-bound, bound, n).astype(np.float32)

    # ---- layers (conv_bn and the activations after it also evaluate the probe batch) ------------
    def conv_bn(self, x, cin, cout, k, stride, scope, bn_scope, *, groups=1, fold=False):
        """nn.Conv2d(bias=False) + nn.BatchNorm2d, kept as two nodes or folded into one Conv."""
        w = self.he((cout, cin // groups, k, k), (cin // groups) * k * k)
        if groups == cin and k > 1:  # depthwise: a dominant centre tap, as trained filters have
            w = w * DW_NOISE + self.rng.uniform(0.5, 1.0, (cout, 1, 1, 1)).astype(np.float32) * _centre(k)
        pad = k // 2
        attrs = dict(dilations=[1, 1], group=groups, kernel_shape=[k, k], pads=[pad] * 4, strides=[stride] * 2)
        y = _conv(self.value[x], w, stride, pad, groups)
        gamma = self.rng.uniform(*BN_GAMMA, cout).astype(np.float32)
        beta = self.rng.normal(0, self.bn_beta, cout).astype(np.float32)
        # running statistics: what the layer sees on the probe batch, off by a few percent
        mean = (y.mean(axis=(0, 2, 3)) + 0.05 * y.std(axis=(0, 2, 3)) * self.rng.standard_normal(cout))
        var = y.var(axis=(0, 2, 3)) * self.rng.uniform(0.85, 1.15, cout)
        mean, var = mean.astype(np.float32), var.astype(np.float32)
        s = gamma / np.sqrt(var + np.float32(BN_EPS))
        out_value = (y - mean[None, :, None, None]) * s[None, :, None, None] + beta[None, :, None, None]
        if fold:
            wf = (w * s[:, None, None, None]).astype(np.float32)
            bf = (beta - mean * s).astype(np.float32)
            out = self.node("Conv", [x, self.anon_init("Conv", wf), self.anon_init("Conv", bf)], scope, **attrs)
        else:
            mod, bn = _qualname(scope), _qualname(bn_scope)
            c = self.node("Conv", [x, self.init(f"{mod}.weight", w)], scope, **attrs)
            self.value[c] = y
            out = self.node("BatchNormalization",
                            [c, self.init(f"{bn}.weight", gamma), self.init(f"{bn}.bias", beta),
                             self.init(f"{bn}.running_mean", mean), self.init(f"{bn}.running_var", var)],
                            bn_scope, epsilon=BN_EPS, momentum=0.9, training_mode=0)
        self.value[out] = out_value.astype(np.float32)
        return out

    def relu(self, x, scope):
        y = self.node("Relu", [x], scope)
        self.value[y] = np.maximum(self.value[x], 0)
        return y

    def hardswish(self, x, scope, form="op"):
        v = self.value[x]
        hs = v * np.clip(v / 6 + 0.5, 0, 1)
        if form == "op":
            y = self.node("HardSwish", [x], scope)
        else:  # x * HardSigmoid(x), as nn.Hardswish was written out before opset 14
            h = self.node("HardSigmoid", [x], scope, alpha=1.0 / 6, beta=0.5)
            y = self.node("Mul", [x, h], scope)
        self.value[y] = hs.astype(np.float32)
        return y

    def add(self, a, b, scope):
        y = self.node("Add", [a, b], scope)
        self.value[y] = self.value[a] + self.value[b]
        return y

    def head(self, x, cin, ncls, *, flatten="Flatten"):
        """AdaptiveAvgPool2d(1) -> flatten -> nn.Linear: GlobalAveragePool, Flatten, Gemm(transB=1)."""
        p = self.node("GlobalAveragePool", [x], "/avgpool")
        if flatten == "Flatten":
            f = self.node("Flatten", [p], "", axis=1)
        else:
            f = self.view_flatten(p)
        w = (self.rng.standard_normal((ncls, cin)) / np.sqrt(cin)).astype(np.float32)
        b = self.bias(ncls, cin)
        return self.node("Gemm", [f, self.init("fc.weight", w), self.init("fc.bias", b)], "/fc",
                         alpha=1.0, beta=1.0, transB=1)

    def view_flatten(self, x, scope=""):
        """x.view(x.size(0), -1) as torch.onnx.export writes it at opset 17."""
        shape = self.node("Shape", [x], scope)
        idx = self.constant(np.array(0, np.int64), scope)
        n = self.node("Gather", [shape, idx], scope, axis=0)
        # torch leaves this one unscoped: node "Constant_N" writing "onnx::Unsqueeze_M"
        self.anon += 1
        axes = f"onnx::Unsqueeze_{self.anon}"
        self.nodes.append(helper.make_node("Constant", [], [axes], name=f"Constant_{self.anon - 5}",
                                           value=numpy_helper.from_array(np.array([0], np.int64))))
        n1 = self.node("Unsqueeze", [n, axes], scope)
        minus1 = self.constant(np.array([-1], np.int64), scope)
        target = self.node("Concat", [n1, minus1], scope, axis=0)
        return self.node("Reshape", [x, target], scope, allowzero=0)

    # ---- the model -----------------------------------------------------------------------------
    def model(self, name, inputs, output, out_shape, opset=OPSET):
        in_vis = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs]
        # the last node writes the graph output "y" directly, as torch names outputs
        last = self.nodes[-1]
        for i, o in enumerate(last.output):
            if o == output:
                last.output[i] = "y"
        graph = helper.make_graph(self.nodes, name, in_vis,
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                                  initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="pytorch", producer_version="2.13.0")
        m.ir_version = _IR_VERSION[opset]
        onnx.checker.check_model(m, full_check=True)
        return m


def _centre(k):
    c = np.zeros((k, k), np.float32)
    c[k // 2, k // 2] = 1
    return c


def _qualname(scope):
    """Torch scope "/layer1/layer1.0/conv1" -> module name "layer1.0.conv1"."""
    acc = []
    for p in scope.strip("/").split("/"):
        if acc and p.startswith(acc[-1] + "."):
            acc[-1] = p
        else:
            acc.append(p)
    return ".".join(acc)


def _conv(x, w, stride, pad, groups):
    """NCHW conv (OIHW weights, symmetric pads) in NumPy, for the probe batch."""
    from numpy.lib.stride_tricks import sliding_window_view

    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]  # n c oh ow kh kw
    oh, ow = win.shape[2:4]
    win = win.reshape(n, groups, cg, oh, ow, kh, kw)
    wg = w.reshape(groups, o // groups, cg, kh, kw)
    y = np.einsum("ngchwij,gocij->ngohw", win, wg, optimize=True)
    return y.reshape(n, o, oh, ow).astype(np.float32)


def images(rng, batch, shape=(3, 32, 32), blur=IMAGE_BLUR, colour=0.7):
    """Photo-like normalized images: every pixel N(0, 1), as after ImageNet mean/std
    normalization, with neighbouring pixels correlated (a Gaussian blur of white noise, rescaled to
    unit variance) and the colour channels correlated (``colour``: the shared luminance's share)."""
    c, h, w = shape
    r = max(1, int(3 * blur))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / blur) ** 2) if blur > 0 else np.eye(1, 2 * r + 1, r)[0]
    k /= np.sqrt((k ** 2).sum())  # white noise keeps unit variance
    z = rng.standard_normal((batch, c + 1, h + 2 * r, w + 2 * r))
    z = sum(k[i] * z[:, :, i:i + h, :] for i in range(2 * r + 1))
    z = sum(k[j] * z[:, :, :, j:j + w] for j in range(2 * r + 1))
    x = np.sqrt(colour) * z[:, :1] + np.sqrt(1 - colour) * z[:, 1:]
    return x.astype(np.float32)


def _image_inputs(name="x", shape=(3, 32, 32)):
    def inputs(rng, batch):
        return {name: images(rng, batch, shape)}
    return inputs


def _token_inputs(seed, t=16, d=64):
    """Tokens as a LayerNorm leaves them: each standardized, then a fixed per-feature scale
    (``seed`` picks it) and shift."""
    ln = np.random.default_rng(seed)
    gamma = ln.uniform(0.7, 1.3, d).astype(np.float32)
    beta = ln.normal(0, 0.1, d).astype(np.float32)

    def inputs(rng, batch):
        z = rng.standard_normal((batch, t, d))
        z = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5)
        return {"x": (z * gamma + beta).astype(np.float32)}
    return inputs


def _gaussian_inputs(n):
    def inputs(rng, batch):
        return {"x": rng.standard_normal((batch, n)).astype(np.float32)}
    return inputs


def _probe_builder(seed, shape=(3, 32, 32), bn_beta=0.2):
    b = _Builder(seed)
    b.bn_beta = bn_beta
    b.value["x"] = images(np.random.default_rng(seed + 1), 32, shape)
    return b


# ---- ResNet -------------------------------------------------------------------------------------
def _basic_block(b, x, cin, cout, stride, prefix, fold):
    h = b.conv_bn(x, cin, cout, 3, stride, f"/{prefix}/conv1", f"/{prefix}/bn1", fold=fold)
    h = b.relu(h, f"/{prefix}/relu")
    h = b.conv_bn(h, cout, cout, 3, 1, f"/{prefix}/conv2", f"/{prefix}/bn2", fold=fold)
    if stride != 1 or cin != cout:
        x = b.conv_bn(x, cin, cout, 1, stride, f"/{prefix}/downsample/downsample.0",
                      f"/{prefix}/downsample/downsample.1", fold=fold)
    s = b.add(h, x, f"/{prefix}")
    return b.relu(s, f"/{prefix}/relu_1")


def resnet_block(fold_bn: bool = False, seed: int = 1234):
    """Stem conv 3->16 + BN + ReLU, basic block 16->16, basic block 16->32 (stride 2, 1x1
    downsample), GlobalAveragePool, Flatten, Gemm -> 10. ``fold_bn``: Conv+BN already folded,
    as torch's eval-mode export writes it; otherwise BatchNormalization nodes are kept."""
    b = _probe_builder(seed)
    h = b.conv_bn("x", 3, 16, 3, 1, "/conv1", "/bn1", fold=fold_bn)
    h = b.relu(h, "/relu")
    h = _basic_block(b, h, 16, 16, 1, "layer1/layer1.0", fold_bn)
    h = _basic_block(b, h, 16, 32, 2, "layer2/layer2.0", fold_bn)
    y = b.head(h, 32, 10)
    m = b.model("resnet_block", [("x", ["N", 3, 32, 32])], y, ["N", 10])
    return m, _image_inputs()


def resnet_block_folded():
    return resnet_block(fold_bn=True)


# ---- MobileNet ----------------------------------------------------------------------------------
def mobilenet_block(hardswish: str = "op", seed: int = 4322):
    """MobileNetV3-style: stem conv 3->16 s2 + BN + HardSwish; depthwise-separable 16->24 and
    24->32 (stride 2) blocks (depthwise 3x3 + BN + HardSwish, pointwise 1x1 + BN); an inverted
    residual 32->64->32 with Add; GlobalAveragePool, Flatten, Gemm -> 10. ``hardswish``: "op" (the
    opset-14 HardSwish node) or "hardsigmoid" (x * HardSigmoid(x), alpha=1/6, beta=0.5)."""
    b = _probe_builder(seed, bn_beta=1.0)  # trained MobileNets' BN shifts are O(1)
    hs = lambda t, scope: b.hardswish(t, scope, hardswish)  # noqa: E731
    h = hs(b.conv_bn("x", 3, 16, 3, 2, "/stem/stem.0", "/stem/stem.1"), "/stem/stem.2")
    for i, (cin, cout, stride) in enumerate(MOBILENET_DS):
        p = f"/blocks/blocks.{i}"
        h = b.conv_bn(h, cin, cin, 3, stride, f"{p}/dw", f"{p}/dw_bn", groups=cin)
        h = hs(h, f"{p}/dw_act")
        h = b.conv_bn(h, cin, cout, 1, 1, f"{p}/pw", f"{p}/pw_bn")
    p = f"/blocks/blocks.{len(MOBILENET_DS)}"
    c, e = MOBILENET_DS[-1][1], MOBILENET_EXPAND
    r = hs(b.conv_bn(h, c, e, 1, 1, f"{p}/expand", f"{p}/expand_bn"), f"{p}/expand_act")
    r = hs(b.conv_bn(r, e, e, 3, 1, f"{p}/dw", f"{p}/dw_bn", groups=e), f"{p}/dw_act")
    r = b.conv_bn(r, e, c, 1, 1, f"{p}/project", f"{p}/project_bn")
    h = b.add(h, r, p)
    y = b.head(h, c, 10)
    m = b.model("mobilenet_block", [("x", ["N", 3, 32, 32])], y, ["N", 10])
    return m, _image_inputs()


def mobilenet_block_hardsigmoid():
    return mobilenet_block(hardswish="hardsigmoid")


# ---- MLP ----------------------------------------------------------------------------------------
def mlp(seed: int = 77):
    """nn.Sequential(Linear 64->128, ReLU, Linear 128->64, ReLU, Linear 64->10) on [N, 64]."""
    b = _Builder(seed)
    h = "x"
    sizes = [64, 128, 64, 10]
    for i, (cin, cout) in enumerate(zip(sizes, sizes[1:])):
        w = b.he((cout, cin), cin)
        h = b.node("Gemm", [h, b.init(f"{2 * i}.weight", w), b.init(f"{2 * i}.bias", b.bias(cout, cin))],
                   f"/{2 * i}", alpha=1.0, beta=1.0, transB=1)
        if cout != 10:
            h = b.node("Relu", [h], f"/{2 * i + 1}")
    m = b.model("mlp", [("x", ["N", 64])], h, ["N", 10])
    return m, _gaussian_inputs(64)


# ---- Transformer feed-forward -------------------------------------------------------------------
def transformer_ffn(opset: int = OPSET, seed: int = 2024):
    """x [N, 16, 64] -> Linear 64->256 -> GELU (exact) -> Linear 256->64 -> + x. nn.Linear on 3-D
    input is MatMul(x, W^T) then Add(bias, .); GELU as torch writes it at opset 17 (Div by sqrt 2,
    Erf, Add 1, Mul x, Mul 0.5), or the opset-20 Gelu node with ``opset=20``. Inputs look like a
    LayerNorm's output (each token standardized, then a fixed per-feature scale and shift)."""
    b = _Builder(seed)
    d, f = 64, 256
    w1 = b.he((f, d), d)                                        # nn.Linear weights [out, in]
    b1 = b.bias(f, d)
    w2 = (b.rng.standard_normal((d, f)) * np.sqrt(1.0 / f)).astype(np.float32)
    b2 = b.bias(d, f)
    m1 = b.node("MatMul", ["x", b.anon_init("MatMul", np.ascontiguousarray(w1.T))], "/linear1")
    h = b.node("Add", [b.init("linear1.bias", b1), m1], "/linear1")
    if opset >= 20:
        g = b.node("Gelu", [h], "/activation", approximate="none")
    else:
        sc = "/activation"
        dv = b.node("Div", [h, b.constant(np.array(1.4142135, np.float32), sc)], sc)
        e = b.node("Erf", [dv], sc)
        a = b.node("Add", [e, b.constant(np.array(1.0, np.float32), sc)], sc)
        mx = b.node("Mul", [h, a], sc)
        g = b.node("Mul", [mx, b.constant(np.array(0.5, np.float32), sc)], sc)
    m2 = b.node("MatMul", [g, b.anon_init("MatMul", np.ascontiguousarray(w2.T))], "/linear2")
    o = b.node("Add", [b.init("linear2.bias", b2), m2], "/linear2")
    y = b.node("Add", ["x", o], "")
    m = b.model("transformer_ffn", [("x", ["N", 16, d])], y, ["N", 16, d], opset=opset)
    return m, _token_inputs(seed + 1)


def transformer_ffn_gelu20():
    return transformer_ffn(opset=20)


# ---- attention encoder layer ----------------------------------------------------------------------
def attention_block(seed: int = 3030, d: int = 64, heads: int = 4, f: int = 128):
    """A post-LN transformer encoder layer with hand-written multi-head self-attention on [N, 16, 64]
    tokens, as torch.onnx.export (opset 17) writes tools/export_torch_models.py's AttentionBlock:
    ``n, t, d = x.shape`` as Shape / Gather (d // heads as Div and two Casts), q / k / v nn.Linear
    (MatMul + Add) split into heads by Reshape to a Concat of Unsqueezed dims and Transpose
    (k's ``transpose(-2, -1)`` merged into it: perm [0, 2, 3, 1]), MatMul of q and k, Div by
    sqrt(d / heads), Softmax, MatMul with v, Transpose back, Reshape to [N, T, D], the output
    projection, residual Add, LayerNormalization, then Linear -> exact GELU (Div / Erf / Add / Mul /
    Mul) -> Linear, residual Add, LayerNormalization. Linear layers feeding no GELU have unit gain
    (Xavier-like), linear1 He."""
    b = _Builder(seed)
    hd = d // heads

    def unit(shape, fan_in):
        return (b.rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)).astype(np.float32)

    def linear(x, w, mod):
        m = b.node("MatMul", [x, b.anon_init("MatMul", np.ascontiguousarray(w.T))], f"/{mod.replace('.', '/')}")
        return b.node("Add", [b.init(f"{mod}.bias", b.bias(w.shape[0], w.shape[1])), m], f"/{mod.replace('.', '/')}")

    def unsqueeze(t):
        return b.node("Unsqueeze", [t, b.constant(np.array([0], np.int64))])

    def layer_norm(x, mod):
        gamma = b.rng.uniform(0.7, 1.3, d).astype(np.float32)
        beta = b.rng.normal(0, 0.1, d).astype(np.float32)
        return b.node("LayerNormalization", [x, b.init(f"{mod}.weight", gamma), b.init(f"{mod}.bias", beta)],
                      f"/{mod}", axis=-1, epsilon=1e-5)

    n, t, dd = (b.node("Gather", [b.node("Shape", ["x"]), b.constant(np.array(i, np.int64))], axis=0)
                for i in range(3))
    hdv = b.node("Div", [dd, b.constant(np.array(heads, np.int64))])
    hdv = b.node("Cast", [b.node("Cast", [hdv], to=TensorProto.INT64)], to=TensorProto.INT64)

    def split(h, perm):
        target = b.node("Concat", [unsqueeze(n), unsqueeze(t), b.constant(np.array([heads], np.int64)),
                                   unsqueeze(hdv)], axis=0)
        return b.node("Transpose", [b.node("Reshape", [h, target], allowzero=0)], perm=perm)

    q = split(linear("x", unit((d, d), d), "q_proj"), [0, 2, 1, 3])
    k = split(linear("x", unit((d, d), d), "k_proj"), [0, 2, 3, 1])       # k.transpose(-2, -1) merged in
    v = split(linear("x", unit((d, d), d), "v_proj"), [0, 2, 1, 3])
    scores = b.node("Div", [b.node("MatMul", [q, k]), b.constant(np.array(np.sqrt(hd), np.float32))])
    a = b.node("MatMul", [b.node("Softmax", [scores], axis=-1), v])
    a = b.node("Transpose", [a], perm=[0, 2, 1, 3])
    target = b.node("Concat", [unsqueeze(n), unsqueeze(t), unsqueeze(dd)], axis=0)
    a = b.node("Reshape", [a, target], allowzero=0)
    h = layer_norm(b.node("Add", ["x", linear(a, unit((d, d), d), "out_proj")]), "norm1")
    g = linear(h, b.he((f, d), d), "ffn.linear1")
    sc = "/ffn/activation"
    e = b.node("Erf", [b.node("Div", [g, b.constant(np.array(1.4142135, np.float32), sc)], sc)], sc)
    g = b.node("Mul", [g, b.node("Add", [e, b.constant(np.array(1.0, np.float32), sc)], sc)], sc)
    g = b.node("Mul", [g, b.constant(np.array(0.5, np.float32), sc)], sc)
    o = linear(g, unit((d, f), f), "ffn.linear2")
    y = layer_norm(b.node("Add", [h, o], "/ffn"), "norm2")
    m = b.model("attention_block", [("x", ["N", 16, d])], y, ["N", 16, d])
    return m, _token_inputs(seed + 1)


# ---- flatten by x.view(x.size(0), -1) --------------------------------------------------------------
def flatten_by_shape(seed: int = 99):
    """Conv 3->8 3x3 s2 + ReLU, conv 8->16 3x3 s2 + ReLU on [N, 3, 16, 16], flattened with
    x.view(x.size(0), -1) (Shape, Gather 0, Unsqueeze, Concat with [-1], Reshape), Gemm 256 -> 10."""
    b = _Builder(seed)
    h = "x"
    for i, (cin, cout) in enumerate([(3, 8), (8, 16)]):
        w = b.he((cout, cin, 3, 3), cin * 9)
        bias = b.bias(cout, cin * 9)
        h = b.node("Conv", [h, b.init(f"conv{i + 1}.weight", w), b.init(f"conv{i + 1}.bias", bias)],
                   f"/conv{i + 1}", dilations=[1, 1], group=1, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                   strides=[2, 2])
        h = b.node("Relu", [h], f"/relu{i + 1}" if i else "/relu")
    f = b.view_flatten(h)
    w = (b.rng.standard_normal((10, 256)) / np.sqrt(256)).astype(np.float32)
    y = b.node("Gemm", [f, b.init("fc.weight", w), b.init("fc.bias", b.bias(10, 256))], "/fc",
               alpha=1.0, beta=1.0, transB=1)
    m = b.model("flatten_by_shape", [("x", ["N", 3, 16, 16])], y, ["N", 10])
    return m, _image_inputs(shape=(3, 16, 16))


MODELS = {
    "resnet_block": resnet_block,
    "resnet_block_folded": resnet_block_folded,
    "mobilenet_block": mobilenet_block,
    "mobilenet_block_hardsigmoid": mobilenet_block_hardsigmoid,
    "mlp": mlp,
    "transformer_ffn": transformer_ffn,
    "transformer_ffn_gelu20": transformer_ffn_gelu20,
    "flatten_by_shape": flatten_by_shape,
    "attention_block": attention_block,
}

# Inputs for the PyTorch-exported files of tests/data/onnx (tools/export_torch_models.py draws its
# batches from these too, so calibration in the tests sees what the BatchNorm statistics saw).
EXPORTED_INPUTS = {
    "resnet_block": _image_inputs(),
    "resnet_block_bn": _image_inputs(),
    "mobilenet_block": _image_inputs(),
    "mlp": _gaussian_inputs(64),
    "transformer_ffn": _token_inputs(7),
    "transformer_block": _token_inputs(7),
    "flatten_by_shape": _image_inputs(shape=(3, 16, 16)),
    "attention_block": _token_inputs(8),
}


def ort_outputs(model, feeds: dict) -> dict:
    """{output name: array} of ``model`` (a ModelProto or a path) run by ONNX Runtime on one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    s = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))
