"""The `eightbit` command (also `python -m eightbit`): argparse over the public API."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import eightbit as eb


def _cmd_info(args) -> int:
    info = eb.cpu_info()
    print(f"eightbit {eb.__version__}")
    print(f"isa in use:   {info['isa']}")
    print(f"available:    {', '.join(info['available'])}")
    print(f"threads:      {info['num_threads']}")
    flags = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in info["features"].items())
    print(f"cpu features: {flags}")
    return 0


def _best_time(fn, min_seconds: float = 0.3) -> float:
    """Best wall time of repeated calls (seconds)."""
    fn()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _cmd_demo(args) -> int:
    rng = np.random.default_rng(0)
    batch, d_in, d_out = args.batch, args.in_features, args.out_features
    # A transformer feed-forward layer's shape, with weights of a trained layer's scale.
    w = (rng.standard_normal((d_out, d_in)) / np.sqrt(d_in)).astype(np.float32)
    b = (0.02 * rng.standard_normal(d_out)).astype(np.float32)
    x = rng.standard_normal((batch, d_in)).astype(np.float32)

    layer = eb.QuantizedLinear(w, b, activation="relu")
    y_int8 = layer(x)
    y_float = np.maximum(x @ w.T + b, 0)
    err = y_int8 - y_float
    sqnr = 10 * np.log10(np.sum(y_float**2) / max(np.sum(err**2), 1e-30))
    rel = np.linalg.norm(err) / np.linalg.norm(y_float)

    t_float = _best_time(lambda: np.maximum(x @ w.T + b, 0))
    t_int8 = _best_time(lambda: layer(x))
    t_ort = _ort_float_gemm_time(x, w, b)
    float_bytes = w.nbytes + b.nbytes

    print(f"eightbit demo: dynamic int8 linear layer {d_in} -> {d_out} + ReLU, batch {batch}")
    print(f"  kernels:        {eb.cpu_info()['isa']} ({eb.cpu_info()['num_threads']} threads)")
    print(f"  error:          SQNR {sqnr:.1f} dB, relative L2 {rel:.2e}, max abs {np.abs(err).max():.2e}")
    print(f"  size:           float32 {float_bytes / 1e6:.2f} MB -> int8 {layer.nbytes / 1e6:.2f} MB "
          f"({float_bytes / layer.nbytes:.1f}x smaller)")
    print(f"  latency:        eightbit int8 {t_int8 * 1e6:.0f} us; NumPy float32 {t_float * 1e6:.0f} us "
          f"(int8 speed-up {t_float / t_int8:.1f}x)")
    if t_ort is not None:
        print(f"                  ONNX Runtime float32 Gemm+Relu {t_ort * 1e6:.0f} us (int8 speed-up {t_ort / t_int8:.1f}x)")
    return 0


def _ort_float_gemm_time(x, w, b):
    """Latency of the same float layer in ONNX Runtime (same thread count), or None without it."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["y"])],
        "demo",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x.shape[0], w.shape[0]])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = eb.cpu_info()["num_threads"]
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return _best_time(lambda: session.run(None, {"x": x}))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eightbit", description="int8 quantization and inference on CPUs")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="show the CPU features and the kernels in use").set_defaults(func=_cmd_info)
    demo = sub.add_parser("demo", help="quantize a linear layer; print error, size and speed-up")
    demo.add_argument("--batch", type=int, default=32)
    demo.add_argument("--in-features", type=int, default=768)
    demo.add_argument("--out-features", type=int, default=3072)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
