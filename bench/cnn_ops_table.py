"""eightbit.ops' CNN companion operators against ONNX Runtime, single-threaded, in one run.

    python bench/cnn_ops_table.py            # every case, ~0.5 s of timing per side
    python bench/cnn_ops_table.py -k pool -t 1

Each row runs one ORT node (com.microsoft QLinear* ops, MaxPool / com.microsoft NhwcMaxPool)
with scales and zero points as initializers (so ORT builds its tables once, at session creation)
and the same call through ``eightbit.ops``; both on one thread, both timed as Python calls
(median of repeated calls), and their outputs are compared bit for bit first.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import eightbit as eb
from eightbit import ops

F = np.float32
MS = "com.microsoft"
TP = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8}


def ort_session(op, inputs, consts, out_dtype, domain="", opset=21, **attrs):
    """One-node model: `inputs` (name -> array) are graph inputs, `consts` initializers, in `order`."""
    names = list(inputs) + list(consts)
    order = attrs.pop("order", names)
    node = helper.make_node(op, order, ["y"], domain=domain or None, **attrs)
    graph = helper.make_graph(
        [node], op, [helper.make_tensor_value_info(n, TP[v.dtype], None) for n, v in inputs.items()],
        [helper.make_tensor_value_info("y", TP[np.dtype(out_dtype)], None)],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in consts.items()])
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS, 1)] if domain else [])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=imports).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, inputs)[0]


def median_time(fn, seconds):
    fn()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def cases(rng):
    u8 = lambda *s: rng.integers(0, 256, s, dtype=np.uint8)  # noqa: E731
    q = dict(a_s=F(0.02), a_zp=np.uint8(120), b_s=F(0.03), b_zp=np.uint8(130), c_s=F(0.04), c_zp=np.uint8(125))
    a, b = u8(1, 56, 56, 128), u8(1, 56, 56, 128)
    for op, fn in [("QLinearAdd", ops.qlinear_add), ("QLinearMul", ops.qlinear_mul)]:
        for label, bb in [("", b), (" + (128,)", u8(128))]:
            c_s = q["c_s"] if op == "QLinearAdd" else F(0.5)
            consts = dict(a_s=q["a_s"], a_zp=q["a_zp"], b_s=q["b_s"], b_zp=q["b_zp"], c_s=c_s, c_zp=q["c_zp"])
            yield (f"{op} 1x56x56x128{label}",
                   ort_session(op, dict(a=a, b=bb), consts, np.uint8, domain=MS,
                               order=["a", "a_s", "a_zp", "b", "b_s", "b_zp", "c_s", "c_zp"]),
                   lambda fn=fn, bb=bb, c_s=c_s: fn(a, q["a_s"], q["a_zp"], bb, q["b_s"], q["b_zp"], c_s, q["c_zp"]))
    x = u8(1, 64, 112, 112)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    pool = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    yield ("MaxPool 3x3 s2 1x64x112x112 NCHW", ort_session("MaxPool", dict(x=x), {}, np.uint8, opset=12, **pool),
           lambda: ops.max_pool(x, **pool))
    yield ("NhwcMaxPool 3x3 s2 1x112x112x64", ort_session("NhwcMaxPool", dict(x=x_nhwc), {}, np.uint8, domain=MS,
                                                          **pool),
           lambda: ops.max_pool(x_nhwc, layout="NHWC", **pool))
    xa = u8(1, 128, 56, 56)
    xa_nhwc = np.ascontiguousarray(xa.transpose(0, 2, 3, 1))
    pq = dict(x_s=F(0.02), x_zp=np.uint8(120), y_s=F(0.03), y_zp=np.uint8(128))
    avg = dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    order = ["x", "x_s", "x_zp", "y_s", "y_zp"]
    for layout, xin in [("NCHW", xa), ("NHWC", xa_nhwc)]:
        yield (f"QLinearAveragePool 3x3 s1 1x128x56x56 {layout}",
               ort_session("QLinearAveragePool", dict(x=xin), pq, np.uint8, domain=MS, order=order,
                           channels_last=int(layout == "NHWC"), **avg),
               lambda xin=xin, layout=layout: ops.qlinear_average_pool(xin, *pq.values(), layout=layout, **avg))
    xg = u8(1, 2048, 7, 7)
    for layout, xin in [("NCHW", xg), ("NHWC", np.ascontiguousarray(xg.transpose(0, 2, 3, 1)))]:
        yield (f"QLinearGlobalAveragePool 1x2048x7x7 {layout}",
               ort_session("QLinearGlobalAveragePool", dict(x=xin), pq, np.uint8, domain=MS, order=order,
                           channels_last=int(layout == "NHWC")),
               lambda xin=xin, layout=layout: ops.qlinear_global_average_pool(xin, *pq.values(), layout=layout))
    xl = u8(1, 128, 56, 56)
    yield ("QLinearLeakyRelu 1x128x56x56",
           ort_session("QLinearLeakyRelu", dict(x=xl), pq, np.uint8, domain=MS, order=order, alpha=0.1),
           lambda: ops.qlinear_leaky_relu(xl, *pq.values(), alpha=F(0.1)))
    sq = dict(pq, y_s=F(1 / 256), y_zp=np.uint8(0))
    yield ("QLinearSigmoid 1x128x56x56", ort_session("QLinearSigmoid", dict(x=xl), sq, np.uint8, domain=MS, order=order),
           lambda: ops.qlinear_sigmoid(xl, *sq.values()))
    c1, c2 = u8(1, 64, 56, 56), u8(1, 64, 56, 56)
    cq = dict(y_s=F(0.05), y_zp=np.uint8(128), s1=F(0.04), z1=np.uint8(120), s2=F(0.05), z2=np.uint8(128))
    yield ("QLinearConcat 2x 1x64x56x56 axis 1",
           ort_session("QLinearConcat", dict(c1=c1, c2=c2), cq, np.uint8, domain=MS, axis=1,
                       order=["y_s", "y_zp", "c1", "s1", "z1", "c2", "s2", "z2"]),
           lambda: ops.qlinear_concat(cq["y_s"], cq["y_zp"], [(c1, cq["s1"], cq["z1"]), (c2, cq["s2"], cq["z2"])],
                                      axis=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only rows whose name contains this")
    ap.add_argument("-t", type=float, default=0.5, help="seconds of timing per side and row")
    args = ap.parse_args()
    eb.set_num_threads(1)
    print(f"eightbit isa={eb.cpu_info()['isa']}, 1 thread; onnxruntime {ort.__version__}, 1 thread")
    print(f"{'case':44s} {'ORT us':>9s} {'eightbit us':>12s} {'speedup':>8s}")
    for name, ort_fn, eb_fn in cases(np.random.default_rng(0)):
        if args.k.lower() not in name.lower():
            continue
        np.testing.assert_array_equal(eb_fn(), ort_fn(), err_msg=name)
        t_ort, t_eb = median_time(ort_fn, args.t), median_time(eb_fn, args.t)
        print(f"{name:44s} {t_ort * 1e6:9.1f} {t_eb * 1e6:12.1f} {t_ort / t_eb:7.2f}x")


if __name__ == "__main__":
    main()
