"""``Report.to_html``: one self-contained HTML file a browser opens offline.

Pictures are PNGs embedded as base64 ``data:`` URIs, the style is inline, and there are no scripts
and no external references. Sections: summary (output SQNR, metric float32 vs int8, options), the
full per-layer table (every LayerRecord field, names in full, the worst rows highlighted), SQNR
bars, pictures of the worst layers (weight histogram and images for conv / linear, activation
histogram; capped at ``max_layer_figures`` so a 100-layer report stays a few MB), and the
sensitivity ranking and mixed-precision trade-off when the report carries them.
"""
from __future__ import annotations

import base64
import html
import math
import os

import numpy as np

from . import plots

__all__ = ["render", "to_html"]

_WEIGHT_STEPS = ("conv", "linear", "dynamic_linear")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222;
       background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
h3 { font-family: monospace; font-size: 1.05em; overflow-wrap: anywhere; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.name, th.name, td.text { text-align: left; font-family: monospace; }
td.text, td.name { white-space: nowrap; }
td.wrap { text-align: left; font-family: monospace; min-width: 20em; max-width: 32em; overflow-wrap: anywhere; }
tr.worst td { background: #fde2e1; } tr.float td { color: #777; }
td.warn { color: #b00020; font-weight: bold; }
.scroll { overflow-x: auto; max-width: 100%; }
.note { color: #555; font-size: 0.9em; }
.kv td { text-align: left; } .kv td:first-child { font-weight: bold; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; border: 1px solid #eee; }
.layer { margin-bottom: 2em; }
a { color: #1f5fa8; }
"""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v, fmt="{:.4g}") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def _img(fig, alt: str, dpi: int) -> str:
    data = base64.b64encode(plots.to_png(fig, dpi=dpi)).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _sort_key(report) -> str:
    for key in ("isolated_output_sqnr", "isolated_sqnr", "cumulative_sqnr"):
        if any(getattr(r, key) is not None for r in report.layers):
            return key
    return "isolated_output_sqnr"


def _anchor(i: int) -> str:
    return f"layer-{i}"


def _summary(report) -> str:
    rows = []
    for name, v in report.output_sqnr.items():
        rows.append((f"output {name} SQNR", f"{_fmt(v, '{:.2f}')} dB"))
    if report.metric is not None:
        drop = ""
        if report.metric_float is not None and report.metric_int8 is not None:
            drop = f" (difference {report.metric_int8 - report.metric_float:+.4g})"
        rows.append((f"{report.metric}", f"float32 {_fmt(report.metric_float)}, int8 {_fmt(report.metric_int8)}{drop}"))
    n_int8 = sum(r.precision == "int8" for r in report.layers)
    rows.append(("layers", f"{len(report.layers)} ({n_int8} int8, {len(report.layers) - n_int8} float32)"))
    if report.samples:
        rows.append(("samples analysed", str(report.samples)))
    if report.qm is not None and hasattr(report.qm, "size_bytes"):
        rows.append(("int8 model constants", f"{report.qm.size_bytes} bytes"))
    if report.graph is not None:
        fb = sum(int(v.nbytes) for n in report.graph.nodes for v in n.consts.values())
        rows.append(("float32 graph constants", f"{fb} bytes"))
    for k, v in sorted(report.options.items()):
        rows.append((f"option {k}", _fmt(v)))
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


_LAYER_COLUMNS = [
    ("name", "node"), ("op", "op"), ("step", "step"), ("precision", "precision"), ("output", "output tensor"),
    ("dtype", "dtype"), ("scale", "scale"), ("zero_point", "zero point"), ("observed_min", "observed min"),
    ("observed_max", "observed max"), ("saturation", "saturation %"), ("weight_sqnr_min", "weight SQNR min dB"),
    ("weight_sqnr_median", "weight SQNR median dB"), ("cumulative_sqnr", "cumulative dB"),
    ("isolated_sqnr", "isolated dB"), ("isolated_output_sqnr", "isolated at output dB"),
]
_TEXT = {"name", "op", "step", "precision", "output", "dtype"}
_DB = {"weight_sqnr_min", "weight_sqnr_median", "cumulative_sqnr", "isolated_sqnr", "isolated_output_sqnr"}


def _layer_table(report, worst: set, pictured: dict, threshold_db: float) -> str:
    head = "".join(f'<th class="{"name" if k in _TEXT else ""}">{_e(t)}</th>' for k, t in _LAYER_COLUMNS)
    head += "<th>histogram bins</th>"
    rows = []
    for r in report.layers:
        cells = []
        for key, _ in _LAYER_COLUMNS:
            v = getattr(r, key)
            cls = "name" if key == "name" else ("wrap" if key == "output" else ("text" if key in _TEXT else ""))
            if key == "name" and r.name in pictured:
                text = f'<a href="#{pictured[r.name]}">{_e(v)}</a>'
            elif key == "saturation":
                text = _e(_fmt(None if v is None else 100 * v, "{:.3f}"))
                cls += " warn" if v is not None and v > 0.01 else ""
            elif key in _DB:
                text = _e(_fmt(v, "{:.2f}"))
                cls += " warn" if v is not None and v < threshold_db else ""
            else:
                text = _e(_fmt(v))
            cells.append(f'<td class="{cls.strip()}">{text}</td>')
        bins = "-" if r.histogram is None else str(len(r.histogram[0]))
        cells.append(f"<td>{bins}</td>")
        cls = "worst" if r.name in worst else ("float" if r.precision != "int8" else "")
        rows.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _float_weights(graph, name: str, shape: tuple):
    """The float weights of graph node ``name`` in the plan's layout ([O, ...]), or None."""
    if graph is None:
        return None
    try:
        node = graph.node(name)
    except KeyError:
        return None
    if "weight" in node.consts:
        w = np.asarray(node.consts["weight"])
    elif "b" in node.consts and node.op == "matmul":
        w = np.asarray(node.consts["b"]).T
    else:
        return None
    return w if w.shape == tuple(shape) else None


def layer_figures(report, record, step, dpi: int) -> list:
    """(title, <img>) of one layer: weight histogram + images (when its step has weights and the
    graph has the float ones) and the activation histogram."""
    out = []
    if step is not None and "w" in step.consts and "w_scale" in step.consts:
        wq = np.asarray(step.consts["w"])
        scale = np.asarray(step.consts["w_scale"], np.float64).reshape(-1)
        w = _float_weights(report.graph, record.name, wq.shape)
        if w is not None:
            deq = wq.reshape(wq.shape[0], -1) * np.broadcast_to(scale, (wq.shape[0],))[:, None]
            out.append(("weights", _img(plots.weight_histogram(w, wq, scale, record.name),
                                        f"weight histogram of {record.name}", dpi)))
            out.append(("weight images", _img(plots.weight_images(w, deq.reshape(wq.shape), record.name),
                                              f"float vs dequantized weights of {record.name}", dpi)))
    if record.histogram is not None:
        out.append(("activation", _img(plots.activation_histogram(record),
                                       f"activation histogram of {record.name}", dpi)))
    return out


def _sensitivity(sens, dpi: int) -> str:
    parts = [_img(plots.sensitivity_ranking(sens), "sensitivity ranking", dpi)]
    head = ["rank", "node", "op", f"{sens.metric} float32", f"{sens.metric} int8", "drop", "relative drop %"]
    rows = [(i + 1, r.node, r.op, _fmt(r.metric_float), _fmt(r.metric_quant), _fmt(r.drop, "{:+.4g}"),
             _fmt(100 * r.relative_drop, "{:.3f}")) for i, r in enumerate(sens.nodes)]
    parts.append(_simple_table(head, rows, name_col=1))
    if sens.methods:
        mrows = [(r.method, _fmt(r.metric_float), _fmt(r.metric_quant), _fmt(r.drop, "{:+.4g}"),
                  _fmt(100 * r.relative_drop, "{:.3f}")) for r in sens.methods]
        parts.append("<h3>calibration methods (whole model int8)</h3>")
        parts.append(_simple_table(["method", f"{sens.metric} float32", f"{sens.metric} int8", "drop",
                                    "relative drop %"], mrows, name_col=0))
    if sens.seconds:
        parts.append(f'<p class="note">computed in {sens.seconds:.1f} s</p>')
    return "".join(parts)


def _tradeoffs(report, dpi: int) -> str:
    ts = report.tradeoffs
    budget = report.options.get("accuracy_budget")
    try:
        budget = None if budget is None else float(budget)
    except (TypeError, ValueError):
        budget = None
    parts = [_img(plots.tradeoff_curve(ts, budget=budget, metric=report.metric or "metric"),
                  "mixed-precision trade-off", dpi)]
    rows = [(i + 1, ", ".join(t.float_nodes) or "(none)", t.size_bytes, _fmt(t.latency_ms, "{:.3f}"),
             _fmt(t.metric), _fmt(100 * t.relative_drop, "{:.3f}"), "yes" if t.meets_budget else "no")
            for i, t in enumerate(ts)]
    parts.append(_simple_table(["#", "nodes kept float32", "size bytes", "latency ms", "metric",
                                "relative drop %", "within budget"], rows, name_col=1))
    return "".join(parts)


def _simple_table(head: list, rows: list, name_col: int) -> str:
    th = "".join(f'<th class="{"name" if i == name_col else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"name" if i == name_col else ""}">{_e(c)}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def to_html(report, *, max_layer_figures: int = 12, worst_rows: int = 5, dpi: int = 72,
            threshold_db: float = 20.0, title: str = "eightbit quantization report") -> str:
    """The report as one HTML document (a str); ``render`` writes it to a file."""
    plots._matplotlib()  # a clear ImportError before any work
    key = _sort_key(report)
    ranked = report.worst(len(report.layers), key=key)
    worst = {r.name for r in ranked[:min(worst_rows, max(1, len(ranked) // 3))]}
    steps = {}
    if report.qm is not None:
        for s in report.qm.plan.steps:
            if s.op in _WEIGHT_STEPS and s.source:
                steps.setdefault(s.source, s)
    candidates = [r for r in ranked if r.precision == "int8"
                  and (r.histogram is not None or r.name in steps)]
    chosen = candidates[:max(0, max_layer_figures)]
    pictured = {r.name: _anchor(i) for i, r in enumerate(chosen)}

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{_e(title)}</h1>"]
    from .. import __version__
    out.append(f'<p class="note">eightbit {_e(__version__)}; SQNR is 10·log10(signal / noise) against the float32 '
               f"graph, in dB (higher is better; below {threshold_db:g} dB is marked).</p>")
    out.append('<h2 id="summary">Summary</h2>' + _summary(report))
    out.append('<h2 id="layers">Layers</h2>')
    out.append(f'<p class="note">{len(report.layers)} rows in plan order; highlighted: the {len(worst)} worst by '
               f"{_e(key.replace('_', ' '))}. cumulative: this node's output with the whole model int8; isolated: "
               "with only this node int8; isolated at output: the model's output with only this node int8. "
               "saturation: share of float values outside the representable range.</p>")
    out.append(_layer_table(report, worst, pictured, threshold_db))
    out.append('<h2 id="sqnr">SQNR per layer</h2>')
    out.append(_img(plots.sqnr_bars(report, threshold_db=threshold_db), "SQNR per layer", dpi))

    out.append('<h2 id="worst-layers">Worst layers</h2>')
    n_int8 = sum(r.precision == "int8" for r in report.layers)
    if chosen:
        capped = len(candidates) > len(chosen)
        out.append(f'<p class="note">Pictures for the {len(chosen)} worst of {n_int8} int8 layers by '
                   f"{_e(key.replace('_', ' '))}" + (" (capped to keep this file small; the table above lists "
                                                      "every layer)" if capped else "") + ".</p>")
    else:
        out.append('<p class="note">No int8 layer with weights or a histogram to draw.</p>')
    for r in chosen:
        figs = layer_figures(report, r, steps.get(r.name), dpi)
        out.append(f'<div class="layer"><h3 id="{pictured[r.name]}">{_e(r.name)}</h3>'
                   f'<p class="note">{_e(r.op)} → {_e(r.step)}, {_e(key.replace("_", " "))} '
                   f"{_e(_fmt(getattr(r, key), '{:.2f}'))} dB, saturation "
                   f"{_e(_fmt(None if r.saturation is None else 100 * r.saturation, '{:.3f}'))} %</p>")
        out += [img for _, img in figs]
        out.append("</div>")

    if report.sensitivity is not None:
        out.append('<h2 id="sensitivity">Sensitivity</h2>')
        out.append(f'<p class="note">Each node quantized alone (all others float32), ranked by the relative '
                   f"drop in {_e(report.sensitivity.metric)}.</p>")
        out.append(_sensitivity(report.sensitivity, dpi))
    if report.tradeoffs:
        out.append('<h2 id="tradeoffs">Mixed precision</h2>')
        out.append(_tradeoffs(report, dpi))
    out.append("</body></html>")
    return "\n".join(out)


def render(report, path, **options) -> None:
    """Write ``report`` as one self-contained HTML file at ``path`` (see ``to_html`` for options)."""
    text = to_html(report, **options)
    with open(os.fspath(path), "w", encoding="utf-8") as f:
        f.write(text)
