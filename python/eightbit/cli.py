"""The `eightbit` command (also `python -m eightbit`): argparse over the public API."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import eightbit as eb
from eightbit.calibrate import METHODS


def _cmd_info(args) -> int:
    model_path = args.model or args.model_opt
    if args.model and args.model_opt:
        raise SystemExit("eightbit info: give the model once (MODEL or --model)")
    if args.isa:
        _set_isa(args.isa, "info")
    info = eb.cpu_info()
    print(f"eightbit {eb.__version__}")
    print(f"isa in use:   {info['isa']}")
    print(f"available:    {', '.join(info['available'])}")
    print(f"threads:      {info['num_threads']}")
    flags = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in info["features"].items())
    print(f"cpu features: {flags}")
    if model_path:
        from .accuracy.report import format_table
        from .model.kernels import step_kernels

        model = eb.load(model_path)
        members = model.members if isinstance(model, eb.Ensemble) else [model]
        for k, member in enumerate(members):
            title = f"member {k} ({model.names[k]})" if isinstance(model, eb.Ensemble) else "model"
            print(f"\n{title}: kernels on {info['isa']}")
            rows = [(r["step"], r["op"], r["source"] or "-", r["kernel"]) for r in step_kernels(member, info["isa"])]
            print(format_table(["step", "op", "node", "kernel"], rows))
    return 0


def _set_isa(name: str, command: str) -> None:
    """Force an ISA path, with a clear error for a name this CPU cannot run."""
    from .runtime import ISAS

    available = eb.cpu_info()["available"]
    if name not in ISAS:
        raise SystemExit(f"eightbit {command}: --isa {name!r}: expected one of {', '.join(ISAS)}")
    if name not in available:
        raise SystemExit(f"eightbit {command}: --isa {name!r}: this CPU cannot run it; it runs "
                         f"{', '.join(available)}")
    eb.set_isa(name)


def _cmd_c_flags(args) -> int:
    from .runtime import c_library

    print(c_library()["flags"])
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
    """Run a .eb model (or an ensemble file) on saved inputs: optionally on a forced ISA, a
    thread count and in batches along axis 0 (then with throughput and latency per batch)."""
    path = args.input or args.input_opt
    if not path or (args.input and args.input_opt):
        raise SystemExit("eightbit run: give the input once: INPUT or --input (a .npy, or a .npz of arrays per input)")
    if args.batch is not None and args.batch < 1:
        raise SystemExit(f"eightbit run: --batch must be >= 1, got {args.batch}")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"eightbit run: --threads must be >= 1, got {args.threads}")
    before = eb.cpu_info()
    try:
        if args.isa:
            _set_isa(args.isa, "run")
        if args.threads:
            eb.set_num_threads(args.threads)
        model = eb.load(args.model)
        outputs, times, n = _run_batches(model, _load_inputs(path), args.batch)
    finally:  # main() may be called in-process (tests, notebooks): leave the settings as found
        eb.set_isa(before["isa"])
        eb.set_num_threads(before["num_threads"])
    y = outputs[0] if len(outputs) == 1 else outputs
    if args.output:
        if isinstance(y, dict):
            np.savez(args.output, **y)
        else:
            np.save(args.output, y)
    else:
        print(y)
    if args.batch is not None:
        p50, p90, p99 = np.percentile(np.array(times) * 1e3, [50, 90, 99])
        info = eb.cpu_info() if not args.isa else {"isa": args.isa}
        print(f"{n} samples in {len(times)} batches of up to {args.batch} on {info['isa']}, "
              f"threads {args.threads or before['num_threads']}: {n / sum(times):.0f} samples/s; "
              f"latency per batch p50 {p50:.3f} ms, p90 {p90:.3f} ms, p99 {p99:.3f} ms")
    return 0


def _run_batches(model, x, batch):
    """(outputs: {name: array} or [array], seconds per batch, samples) of the model on x."""
    feeds = x if isinstance(x, dict) else {model.input_names[0]: x}
    if not isinstance(x, dict) and len(model.input_names) != 1:
        raise SystemExit(f"eightbit run: the model has inputs {model.input_names}: give a .npz with one array each")
    n = int(np.shape(next(iter(feeds.values())))[0])
    step = n if batch is None else batch
    parts, times = [], []
    for i in range(0, max(n, 1), max(step, 1)):
        chunk = {k: np.asarray(v)[i:i + step] for k, v in feeds.items()}
        t = time.perf_counter()
        parts.append(model.run(chunk))
        times.append(time.perf_counter() - t)
    names = model.output_names
    joined = {k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in names}
    return ([joined[names[0]]] if len(names) == 1 else [joined]), times, n


def _input_shape(text: str) -> tuple:
    """``name=N,3,224,224`` (N or ? for a free batch) -> (name, shape)."""
    name, sep, dims = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        shape = tuple(None if d.strip() in ("N", "?") else int(d) for d in dims.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected name=d0,d1,... (N for a free batch), got {text!r}") from None
    return name, shape


def _named_dim(text: str) -> tuple:
    """``sequence=128`` -> ("sequence", 128): a dimension the ONNX model names, fixed at import;
    ``sequence=1:128`` -> ("sequence", (1, 128)): every length in that range (one model)."""
    name, sep, size = text.partition("=")
    try:
        bounds = tuple(int(v) for v in size.split(":"))
        if not sep or not name or len(bounds) > 2 or min(bounds) <= 0 or bounds[0] > bounds[-1]:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected name=size or name=lo:hi (positive ints, lo <= hi), "
                                         f"got {text!r}") from None
    return name, bounds[0] if len(bounds) == 1 else bounds


def _sqnr_db(want: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.sum((want.astype(np.float64) - got) ** 2))
    return float("inf") if noise == 0 else 10 * float(np.log10(np.sum(want.astype(np.float64) ** 2) / noise))


def _import_onnx(path, input_shapes=None, dims=None):
    """An ONNX file of either kind: a float model as a Graph (eb.from_onnx), an already quantized
    one as a QuantizedModel (eb.from_onnx_quantized)."""
    from .onnx import is_quantized

    if is_quantized(path):
        return eb.from_onnx_quantized(path)
    return eb.from_onnx(path, input_shapes=dict(input_shapes) if input_shapes else None,
                        dims=dict(dims) if dims else None)


def _cmd_quantize(args) -> int:
    """ONNX (float, or already quantized) -> .eb, and optionally back to ONNX."""
    from .calibrate import CalibrationFiles

    model = _import_onnx(args.model, args.input_shape, args.dim)
    if isinstance(model, eb.QuantizedModel):
        if args.calib or args.dynamic or args.exclude:
            print("note: the model is already quantized; --calib, --dynamic and --exclude are ignored")
        qm, graph = model, None
        print(f"imported a quantized model: {len(qm.plan.steps)} steps")
    else:
        graph = model
        if args.calib is None and not args.dynamic:
            raise SystemExit("eightbit quantize: static quantization needs --calib (or --dynamic)")
        calib = None if args.dynamic else CalibrationFiles(args.calib, graph.inputs, args.batch_size)
        budget = {} if args.dynamic else {"per_token": {"auto": "auto", "on": True, "off": False}[args.per_token]}
        if args.accuracy_budget is not None:
            if args.eval is None:
                raise SystemExit("eightbit quantize: --accuracy-budget needs --eval data.npz")
            budget.update(accuracy_budget=args.accuracy_budget, eval_data=_eval_data(args.eval, graph.inputs),
                          metric=args.metric)
        qm = eb.quantize(graph, calib, method=args.method, percentile=args.percentile,
                         per_channel=not args.per_tensor, activation_dtype=args.activation_dtype,
                         requant=args.requant, exclude=args.exclude, dynamic=args.dynamic,
                         attention=args.attention, embeddings=args.embeddings, **budget)
        for t in qm.tradeoffs:
            print(f"candidate: {len(t.float_nodes)} node(s) kept float32, {args.metric or 'metric'} {t.metric:.4f}, "
                  f"relative drop {t.relative_drop:.2%}, {t.size_bytes} bytes, {t.latency_ms:.2f} ms"
                  + (" (meets the budget)" if t.meets_budget else ""))
        float_bytes = sum(v.nbytes for n in graph.nodes for v in n.consts.values())
        kept = [s.source for s in qm.plan.steps if s.op == "float"]
        print(f"quantized {len(graph.nodes)} nodes into {len(qm.plan.steps)} steps; "
              f"{len(kept)} stay float32" + (f" ({', '.join(kept[:8])}{', ...' if len(kept) > 8 else ''})" if kept else ""))
        print(f"weights: float32 {float_bytes} bytes -> {qm.size_bytes} bytes ({float_bytes / max(qm.size_bytes, 1):.1f}x smaller)")
        if calib is not None:
            feeds = next(iter(calib))
            want, got = graph.run(feeds, return_all=False), qm.run(feeds)
            want = want if isinstance(want, dict) else {graph.outputs[0]: want}
            for name in graph.outputs:
                print(f"output {name!r}: SQNR {_sqnr_db(want[name], got[name]):.1f} dB against float32 "
                      f"on the first calibration batch")
    qm.save(args.output)
    print(f"wrote {args.output}")
    if args.onnx_out:
        eb.to_onnx(qm, args.onnx_out, format=args.onnx_format)
        print(f"wrote {args.onnx_out} (ONNX, {args.onnx_format})")
    return 0


def _eval_data(path, inputs):
    """x or (x, labels) from a .npy (inputs) or a .npz (an array per input name, and optionally
    "labels")."""
    loaded = np.load(path)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return loaded
    with loaded:
        arrays = {k: loaded[k] for k in loaded.files}
    labels = arrays.pop("labels", None)
    x = next(iter(arrays.values())) if len(arrays) == 1 else arrays
    return x if labels is None else (x, labels)


def _random_feeds(shapes: dict, batch: int, rng) -> dict:
    return {name: rng.standard_normal((batch,) + tuple(shape[1:])).astype(np.float32) for name, shape in shapes.items()}


def _timings(fn, seconds: float) -> np.ndarray:
    fn()
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return np.asarray(times)


def _onnx_baseline(args):
    """(label, make_fn(feeds, threads)) for the model as ONNX Runtime runs it, or None without it."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None

    def make(feeds, threads):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, feeds)
    return make


def _cmd_bench(args) -> int:
    """Latency percentiles and throughput by batch size and thread count: a .eb model alone; an
    ONNX model as eightbit int8 beside ONNX Runtime running the ONNX file (fp32, or the same int8
    model when the file is already quantized), with the speed-up."""
    rng = np.random.default_rng(0)
    baseline = None
    if str(args.model).endswith(".onnx"):
        from .calibrate import CalibrationFiles

        model = _import_onnx(args.model, args.input_shape)
        baseline = _onnx_baseline(args)
        if isinstance(model, eb.QuantizedModel):
            qm, base_label = model, "ORT int8"
        else:
            shapes = {n: model.tensors[n].shape for n in model.inputs}
            if args.calib:
                calib = CalibrationFiles(args.calib, model.inputs, 32)
            else:
                print("note: no --calib given: calibrated on random N(0, 1) inputs (timing only, not accuracy)")
                calib = [_random_feeds(shapes, 8, rng) for _ in range(4)]
            qm, base_label = eb.quantize(model, calib), "ORT fp32"
            if baseline is None:
                baseline, base_label = (lambda feeds, threads: lambda: model.run(feeds)), "NumPy fp32"
    else:
        qm = eb.load(args.model)
    shapes = {n: qm.plan.tensors[n].shape for n in qm.plan.inputs}
    before = eb.cpu_info()["num_threads"]
    head = f"{'batch':>5} {'threads':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'samples/s':>10}"
    print(head + (f" {base_label + ' p50 ms':>16} {'speed-up':>8}" if baseline else ""))
    try:
        for threads in args.threads:
            eb.set_num_threads(threads)
            for batch in args.batch:
                feeds = _random_feeds(shapes, batch, rng)
                times = _timings(lambda: qm.run(feeds), args.seconds)
                p50, p90, p99 = np.percentile(times, [50, 90, 99]) * 1e3
                line = f"{batch:>5} {threads:>7} {p50:>8.3f} {p90:>8.3f} {p99:>8.3f} {batch / np.median(times):>10.0f}"
                if baseline:
                    base = np.median(_timings(baseline(feeds, threads), args.seconds)) * 1e3
                    line += f" {base:>16.3f} {base / p50:>7.2f}x"
                print(line)
    finally:
        eb.set_num_threads(before)
    return 0


def _model_names(paths: list) -> list:
    """Names from the file names: the stem, or the whole path where stems repeat."""
    from pathlib import Path

    stems = [Path(p).stem for p in paths]
    return [s if stems.count(s) == 1 else str(p) for s, p in zip(stems, paths)]


def _cmd_evaluate(args) -> int:
    """Models side by side on the same data: metrics, size, peak memory and latency."""
    from pathlib import Path

    models = {}
    for name, path in zip(_model_names(args.models), args.models):
        if name in models:
            raise SystemExit(f"eightbit evaluate: {path} is given twice")
        suffix = Path(path).suffix.lower()
        if suffix == ".onnx":
            models[name] = _import_onnx(path)
        elif suffix == ".eb":
            models[name] = eb.load(path)
        else:
            raise SystemExit(f"eightbit evaluate: {path}: expected a .eb or an .onnx file")
    loaded = np.load(args.data)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            arrays = {k: loaded[k] for k in loaded.files}
        data = next(iter(arrays.values())) if len(arrays) == 1 else arrays
    else:
        data = loaded
    labels = np.load(args.labels) if args.labels else None
    ev = eb.evaluate(models, data, labels, metrics=args.metrics, batch_size=args.batch_size, repeats=args.repeats)
    print(ev.table())
    if args.json:
        ev.to_json(args.json)
        print(f"wrote {args.json}")
    return 0


def _load_inputs(path):
    """A .npy (one input) or a .npz (an array per input; one array: that input) -> array or dict."""
    loaded = np.load(path)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            arrays = {k: loaded[k] for k in loaded.files}
        return next(iter(arrays.values())) if len(arrays) == 1 else arrays
    return loaded


def _cmd_report(args) -> int:
    """A float ONNX model quantized and analysed layer by layer: the table printed, one
    self-contained HTML file (pictures embedded) and optionally JSON."""
    from .calibrate import CalibrationFiles
    from .onnx import is_quantized

    if is_quantized(args.model):
        raise SystemExit("eightbit report: MODEL must be a float ONNX model (this one is already quantized)")
    graph = eb.from_onnx(args.model, input_shapes=dict(args.input_shape) if args.input_shape else None,
                         dims=dict(args.dim) if args.dim else None)
    calib = CalibrationFiles(args.calib, graph.inputs, args.batch_size)
    if args.labels and not args.data:
        raise SystemExit("eightbit report: --labels go with --data")
    x = _load_inputs(args.data) if args.data else None
    labels = np.load(args.labels) if args.labels else None
    data = None if x is None else (x if labels is None else (x, labels))
    metric = args.metric or ("accuracy" if labels is not None else None)
    options = {"method": args.method}
    if args.method == "percentile":
        options["percentile"] = args.percentile
    start = time.perf_counter()
    report = eb.analyze(graph, calib, data, metric=metric, exclude=args.exclude, **options)
    if args.sensitivity:
        if data is None:   # rank on the calibration samples
            batches = list(calib)
            data = {k: np.concatenate([b[k] for b in batches]) for k in graph.inputs}
            data = data[graph.inputs[0]] if len(graph.inputs) == 1 else data
        report.sensitivity = eb.sensitivity(graph, calib, data, metric=metric, exclude=args.exclude, **options)
    print(report.table())
    if report.sensitivity is not None:
        print()
        print(report.sensitivity.table())
    from .accuracy.html import render
    render(report, args.output, max_layer_figures=args.max_figures)
    print(f"wrote {args.output} ({time.perf_counter() - start:.1f} s)")
    if args.json:
        report.to_json(args.json)
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eightbit", description="int8 quantization and inference on CPUs")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="show the CPU features and the kernels in use; with a model, the kernel "
                                       "each step runs")
    info.add_argument("model", nargs="?", help="a .eb model or an ensemble file (optional)")
    info.add_argument("--model", dest="model_opt", help="the same as MODEL")
    info.add_argument("--isa", help="name the kernels of this ISA path (one this CPU runs)")
    info.set_defaults(func=_cmd_info)
    sub.add_parser("c-flags", help="print the flags that compile and link a C program against libeightbit "
                   "(docs/c_api.md)").set_defaults(func=_cmd_c_flags)
    sub.add_parser("demo", help="quantize a digits CNN; print accuracy, size and speed-up").set_defaults(
        func=_cmd_demo)
    inspect = sub.add_parser("inspect", help="print a .eb model's steps, tensors and sizes")
    inspect.add_argument("model")
    inspect.set_defaults(func=_cmd_inspect)
    run = sub.add_parser("run", help="run a .eb model (or an ensemble file) on an input saved with numpy.save")
    run.add_argument("model")
    run.add_argument("input", nargs="?", help="a .npy (the one input) or a .npz (an array per input name)")
    run.add_argument("--input", dest="input_opt", help="the same as INPUT")
    run.add_argument("--output", help="write the output with numpy.save (several outputs: numpy.savez; "
                                      "default: print it)")
    run.add_argument("--isa", help="force an instruction-set path (eightbit info lists those this CPU runs)")
    run.add_argument("--threads", type=int, help="C++ threads (default: all cores or EIGHTBIT_NUM_THREADS)")
    run.add_argument("--batch", type=int, help="run in batches of this many samples along axis 0 and print "
                                               "throughput and latency per batch")
    run.set_defaults(func=_cmd_run)
    quantize = sub.add_parser("quantize", help="quantize an ONNX model (or import a quantized one) to .eb")
    quantize.add_argument("model", help="an ONNX file: float, or already quantized (QDQ / QOperator)")
    quantize.add_argument("--calib", help="calibration data: a .npy (samples of the one input), a .npz (an array "
                                          "per input name) or a folder of them")
    quantize.add_argument("--batch-size", type=int, default=32, help="calibration samples per batch (default 32)")
    quantize.add_argument("--method", default="minmax", choices=list(METHODS))
    quantize.add_argument("--percentile", type=float, default=99.99, help="for --method percentile")
    quantize.add_argument("--per-tensor", action="store_true", help="one weight scale per layer (default: per channel)")
    quantize.add_argument("--activation-dtype", default="uint8", choices=["uint8", "int8"])
    quantize.add_argument("--requant", default="float", choices=["float", "fixed"])
    quantize.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="node names that stay float32")
    quantize.add_argument("--dynamic", action="store_true", help="dynamic quantization (no calibration)")
    quantize.add_argument("--per-token", default="auto", choices=["auto", "on", "off"],
                          help="static: quantize linear layers' inputs per token at run time; auto (default): "
                               "layers over token sequences (rank >= 3 inputs), on: every linear layer, off: none")
    quantize.add_argument("--attention", default="float", choices=["float", "int8"],
                          help="attention's Q K^T, softmax and P V: float32 (default) or int8, quantized at run "
                               "time (docs/numerics.md, 'int8 attention')")
    quantize.add_argument("--embeddings", default="int8", choices=["int8", "float"],
                          help="embedding tables of 64 KiB or more: int8 per row (default) or float32")
    quantize.add_argument("--input-shape", type=_input_shape, action="append", metavar="NAME=D0,D1,...",
                          help="fix an input's symbolic dimensions (N for a free batch)")
    quantize.add_argument("--dim", type=_named_dim, action="append", metavar="NAME=SIZE",
                          help="fix every input dimension the model names so (e.g. sequence=128), or let it "
                               "take every length in a range (sequence=1:128: one model for every length)")
    quantize.add_argument("--accuracy-budget", type=float, metavar="DROP",
                          help="keep the fewest nodes float32 whose relative metric drop on --eval stays within DROP "
                               "(e.g. 0.01)")
    quantize.add_argument("--eval", metavar="DATA", help="evaluation data for --accuracy-budget: a .npy of inputs, or "
                                                         "a .npz with an array per input and optionally 'labels'")
    quantize.add_argument("--metric", choices=["accuracy", "f1", "recall", "precision", "loss", "cosine", "sqnr"],
                          help="for --accuracy-budget (default: accuracy with labels, sqnr without)")
    quantize.add_argument("-o", "--output", required=True, help="the .eb file to write")
    quantize.add_argument("--onnx-out", help="also write the quantized model as ONNX")
    quantize.add_argument("--onnx-format", default="qdq", choices=["qdq", "qoperator"])
    quantize.set_defaults(func=_cmd_quantize)
    bench = sub.add_parser("bench", help="latency and throughput of a .eb model, or of an ONNX model as eightbit int8 "
                                         "beside ONNX Runtime")
    bench.add_argument("model", help="a .eb file or an ONNX file")
    bench.add_argument("--calib", help="calibration data for a float ONNX model (default: random inputs)")
    bench.add_argument("--input-shape", type=_input_shape, action="append", metavar="NAME=D0,D1,...")
    bench.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    bench.add_argument("--threads", type=int, nargs="+", default=[1, eb.cpu_info()["num_threads"]])
    bench.add_argument("--seconds", type=float, default=1.0)
    bench.set_defaults(func=_cmd_bench)
    from .accuracy.evaluate import DEFAULT_METRICS
    from .accuracy.metrics import METRICS as _METRICS

    evaluate = sub.add_parser("evaluate", help="compare models on the same data: metrics, size, memory, latency "
                                               "(the first model is the reference)")
    evaluate.add_argument("models", nargs="+", metavar="MODEL", help=".eb files or float .onnx files")
    evaluate.add_argument("--data", required=True, help="inputs: a .npy (one input) or a .npz (an array per input)")
    evaluate.add_argument("--labels", help="integer class labels (.npy); default: agreement with the first model")
    evaluate.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), choices=list(_METRICS),
                          metavar="NAME", help=f"from {', '.join(_METRICS)} (default: all)")
    evaluate.add_argument("--batch-size", type=int, help="samples per run (default: all at once)")
    evaluate.add_argument("--repeats", type=int, default=20, help="timed calls per model (default 20)")
    evaluate.add_argument("--json", help="also write the results as JSON")
    evaluate.set_defaults(func=_cmd_evaluate)
    report = sub.add_parser("report", help="analyse a float ONNX model's int8 error layer by layer: a table, one "
                                           "self-contained HTML file with pictures, optionally JSON")
    report.add_argument("model", help="a float ONNX file")
    report.add_argument("--calib", required=True, help="calibration data: a .npy, a .npz (an array per input) or a "
                                                       "folder of them")
    report.add_argument("--batch-size", type=int, default=32, help="calibration samples per batch (default 32)")
    report.add_argument("--data", help="analysis inputs (.npy or .npz; default: the calibration samples)")
    report.add_argument("--labels", help="integer class labels of --data (.npy)")
    report.add_argument("--metric", choices=list(_METRICS), help="default: accuracy with --labels, else none "
                                                                 "(SQNR for --sensitivity)")
    report.add_argument("--method", default="minmax", choices=list(METHODS))
    report.add_argument("--percentile", type=float, default=99.99, help="for --method percentile")
    report.add_argument("--exclude", nargs="+", default=[], metavar="NODE", help="node names that stay float32")
    report.add_argument("--sensitivity", action="store_true", help="also rank the nodes, each quantized alone")
    report.add_argument("--input-shape", type=_input_shape, action="append", metavar="NAME=D0,D1,...",
                        help="fix an input's symbolic dimensions (N for a free batch)")
    report.add_argument("--dim", type=_named_dim, action="append", metavar="NAME=SIZE",
                        help="fix every input dimension the model names so (e.g. sequence=128)")
    report.add_argument("--max-figures", type=int, default=12, metavar="N",
                        help="draw the N worst layers (weights, activations; default 12)")
    report.add_argument("-o", "--output", required=True, help="the HTML file to write")
    report.add_argument("--json", help="also write the report as JSON")
    report.set_defaults(func=_cmd_report)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
