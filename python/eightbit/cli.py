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


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def _cmd_demo(args) -> int:
    """Quantize the shipped digits CNN with every calibration method: accuracy, size, speed."""
    from .data import cnn_graph, digits

    d = digits()
    graph = cnn_graph(d.weights)
    calib = [d.calib_images[i:i + 64] for i in range(0, len(d.calib_images), 64)]
    x = d.test_images
    float_logits = graph.run(x)
    float_bytes = sum(v.nbytes for n in graph.nodes for v in n.consts.values())
    print(f"eightbit demo: a CNN trained on the 8x8 digits ({len(x)} test images), static int8 quantization")
    print(f"  kernels: {eb.cpu_info()['isa']} ({eb.cpu_info()['num_threads']} threads)")
    print(f"  float32: accuracy {_accuracy(float_logits, d.test_labels):.2%}, weights {float_bytes} bytes")
    models = {}
    for method in ("minmax", "moving_average", "percentile", "entropy", "mse"):
        qm = eb.quantize(graph, calib, method=method)
        models[method] = qm
        logits = qm(x)
        agree = float((logits.argmax(axis=1) == float_logits.argmax(axis=1)).mean())
        print(f"  int8 {method:<15} accuracy {_accuracy(logits, d.test_labels):.2%} "
              f"(same class as float32 on {agree:.1%}), {qm.size_bytes} bytes "
              f"({float_bytes / qm.size_bytes:.1f}x smaller)")
    qm = models["minmax"]
    t_float = _best_time(lambda: graph.run(x))
    t_int8 = _best_time(lambda: qm(x))
    print(f"  latency for the {len(x)} images: float32 (NumPy) {t_float * 1e3:.2f} ms, int8 {t_int8 * 1e3:.2f} ms "
          f"({t_float / t_int8:.1f}x)")
    return 0


def _cmd_inspect(args) -> int:
    qm = eb.load(args.model)
    print(repr(qm))
    print(qm.summary())
    return 0


def _cmd_run(args) -> int:
    qm = eb.load(args.model)
    y = qm(np.load(args.input))
    if args.output:
        np.save(args.output, y)
    else:
        print(y)
    return 0


def _cmd_bench(args) -> int:
    """Latency percentiles and throughput of a model on random inputs, by batch and threads."""
    qm = eb.load(args.model)
    spec = qm.plan.tensors[qm.plan.inputs[0]]
    rng = np.random.default_rng(0)
    before = eb.cpu_info()["num_threads"]
    print(f"{'batch':>5} {'threads':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'samples/s':>10}")
    try:
        for threads in args.threads:
            eb.set_num_threads(threads)
            for batch in args.batch:
                x = rng.standard_normal((batch,) + tuple(spec.shape[1:])).astype(np.float32)
                qm(x)
                times, start = [], time.perf_counter()
                while time.perf_counter() - start < args.seconds or len(times) < 5:
                    t = time.perf_counter()
                    qm(x)
                    times.append(time.perf_counter() - t)
                p50, p90, p99 = np.percentile(times, [50, 90, 99]) * 1e3
                print(f"{batch:>5} {threads:>7} {p50:>8.3f} {p90:>8.3f} {p99:>8.3f} {batch / np.median(times):>10.0f}")
    finally:
        eb.set_num_threads(before)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eightbit", description="int8 quantization and inference on CPUs")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="show the CPU features and the kernels in use").set_defaults(func=_cmd_info)
    sub.add_parser("demo", help="quantize a digits CNN; print accuracy, size and speed-up").set_defaults(
        func=_cmd_demo)
    inspect = sub.add_parser("inspect", help="print a .eb model's steps, tensors and sizes")
    inspect.add_argument("model")
    inspect.set_defaults(func=_cmd_inspect)
    run = sub.add_parser("run", help="run a .eb model on an input saved with numpy.save")
    run.add_argument("model")
    run.add_argument("--input", required=True)
    run.add_argument("--output", help="write the output with numpy.save (default: print it)")
    run.set_defaults(func=_cmd_run)
    bench = sub.add_parser("bench", help="latency percentiles and throughput of a .eb model")
    bench.add_argument("model")
    bench.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    bench.add_argument("--threads", type=int, nargs="+", default=[1, eb.cpu_info()["num_threads"]])
    bench.add_argument("--seconds", type=float, default=1.0)
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
