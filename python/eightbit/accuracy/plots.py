"""Pictures of quantization error (matplotlib, the optional ``report`` extra).

Every function returns a ``matplotlib.figure.Figure`` drawn on its own Agg canvas: nothing touches
pyplot's global state, so they are safe in scripts, tests and servers (``fig.savefig(path)``), and
Jupyter shows them inline. ``to_png(fig)`` gives the PNG bytes (the HTML report embeds those).

    weight_histogram(w, w_q, scales, name)   float weights, the int8 grid and the clip range
    weight_images(w, w_dequant, name)        float / dequantized / difference as [O, rest] images
    activation_histogram(record)             a LayerRecord's values and its representable range
    sqnr_bars(report)                        isolated vs cumulative SQNR per int8 layer
    sensitivity_ranking(sensitivity)         relative metric drop per node, worst first
    tradeoff_curve(tradeoffs)                metric vs size and latency of mixed-precision candidates
"""
from __future__ import annotations

import io
import math

import numpy as np

__all__ = ["weight_histogram", "weight_images", "activation_histogram", "sqnr_bars", "sensitivity_ranking",
           "tradeoff_curve", "to_png"]

_FLOAT = "#4c72b0"     # float32 values
_QUANT = "#dd8452"     # int8 / dequantized values
_CLIP = "#c44e52"      # clip ranges, saturation
_OK = "#55a868"
INSTALL_HINT = 'pip install "eightbit[report]"'


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"eightbit's pictures need matplotlib: {INSTALL_HINT}") from e
    return Figure, FigureCanvasAgg


def _figure(width: float, height: float):
    """A Figure on its own Agg canvas (no pyplot), with constrained layout."""
    Figure, Canvas = _matplotlib()
    fig = Figure(figsize=(width, height), layout="constrained")
    Canvas(fig)
    return fig


def _message(text: str, title: str = ""):
    fig = _figure(6, 1.6)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def to_png(fig, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (tight bounding box: long titles and labels are never cut)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _sqnr(ref: np.ndarray, test: np.ndarray) -> float:
    noise = float(np.sum((test - ref) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0:
        return math.inf
    return -math.inf if signal == 0 else 10 * math.log10(signal / noise)


def _db(v) -> str:
    if v is None:
        return "-"
    return ("inf" if v > 0 else "-inf") if math.isinf(v) else f"{v:.1f}"


def _channel_scales(scales, channels: int) -> np.ndarray:
    s = np.asarray(scales, np.float64).reshape(-1)
    if s.size not in (1, channels):
        raise ValueError(f"scales: expected 1 or {channels} values (one per output channel), got {s.size}")
    return np.broadcast_to(s, (channels,)).copy()


def weight_histogram(w, w_q, scales, name: str, *, bins: int | None = None):
    """Histogram of the float weights ``w`` [O, ...] with the int8 grid overlaid: the dequantized
    levels ``k * scale`` (ticks along the bottom; per-channel scales: the grid of the widest
    channel) and the clip range ``±qmax * scale``. With per-channel scales a second panel shows
    each channel's clip range beside its float min / max."""
    w = np.asarray(w, np.float64)
    wq = np.asarray(w_q)
    if w.shape != wq.shape:
        raise ValueError(f"w and w_q differ in shape: {w.shape} vs {wq.shape}")
    channels = w.shape[0] if w.ndim else 1
    w2, q2 = w.reshape(channels, -1), wq.reshape(channels, -1).astype(np.float64)
    s = _channel_scales(scales, channels)
    per_channel = not np.all(s == s[0])
    deq = q2 * s[:, None]
    qmax = max(127, int(np.abs(q2).max(initial=0)))
    widest = int(np.argmax(s))

    fig = _figure(7.5, 5.2 if per_channel else 3.4)
    if per_channel:
        ax, axc = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 2]})
    else:
        ax, axc = fig.add_subplot(), None
    values = w2.ravel()
    nbins = bins or int(np.clip(np.sqrt(values.size), 20, 160))
    ax.hist(values, bins=nbins, color=_FLOAT, alpha=0.8, label="float32 weights")
    lo, hi = -qmax * s[widest], qmax * s[widest]
    grid = s[widest] * np.arange(-qmax, qmax + 1)
    ax.vlines(grid, 0, 0.06, transform=ax.get_xaxis_transform(), colors="k", linewidth=0.5, alpha=0.7,
              label=f"int8 grid ({2 * qmax + 1} levels, step {s[widest]:.3g}"
                    + (f", widest channel {widest})" if per_channel else ")"))
    ax.axvline(lo, color=_CLIP, linestyle="--", linewidth=1)
    ax.axvline(hi, color=_CLIP, linestyle="--", linewidth=1, label=f"clip range ±{hi:.3g}")
    if per_channel:
        narrow = float(s.min()) * qmax
        ax.axvspan(-narrow, narrow, color=_QUANT, alpha=0.12, label=f"narrowest channel's range ±{narrow:.3g}")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.legend(fontsize=7, loc="upper right")
    kind = "per-channel" if per_channel else "per-tensor"
    sqnr = _sqnr(w2, deq)
    ax.set_title(f"{_wrap(name)}\nweights {list(w.shape)}, {kind} symmetric int8, SQNR {_db(sqnr)} dB", fontsize=9)
    if axc is not None:
        c = np.arange(channels)
        clip = qmax * s
        axc.fill_between(c, -clip, clip, step="mid", color=_QUANT, alpha=0.25, label="clip range ±qmax·scale[c]")
        style = dict(s=6) if channels <= 256 else dict(s=1)
        axc.scatter(c, w2.max(axis=1), color=_FLOAT, marker="^", label="float max", **style)
        axc.scatter(c, w2.min(axis=1), color=_FLOAT, marker="v", label="float min", **style)
        axc.set_xlabel("output channel")
        axc.set_ylabel("weight value")
        axc.set_xlim(-0.5, channels - 0.5)
        axc.legend(fontsize=7, loc="upper right", ncol=3)
    return fig


def weight_images(w, w_dequant, name: str):
    """Float weights, dequantized weights and their difference as images, each reshaped to
    [O, rest] (output channels down, input x kernel across); a shared colour scale for the first
    two, its own for the difference."""
    w = np.asarray(w, np.float64)
    d = np.asarray(w_dequant, np.float64)
    if w.shape != d.shape:
        raise ValueError(f"w and w_dequant differ in shape: {w.shape} vs {d.shape}")
    rows = w.shape[0] if w.ndim > 1 else 1
    w2, d2 = w.reshape(rows, -1), d.reshape(rows, -1)
    diff = d2 - w2
    fig = _figure(11, 3.6)
    axes = fig.subplots(1, 3)
    vmax = float(np.abs(w2).max(initial=0)) or 1.0
    dmax = float(np.abs(diff).max(initial=0)) or vmax * 1e-3
    panels = [(w2, "float32", vmax), (d2, "dequantized int8", vmax),
              (diff, f"difference (max |Δ| {dmax:.3g}, SQNR {_db(_sqnr(w2, d2))} dB)", dmax)]
    for ax, (img, title, lim) in zip(axes, panels):
        im = ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(f"input × kernel ({img.shape[1]})", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=ax, shrink=0.85)
    axes[0].set_ylabel(f"output channel ({rows})", fontsize=8)
    fig.suptitle(_wrap(f"{name}: weights {list(w.shape)} as [O, rest]", 120), fontsize=9)
    return fig


def activation_histogram(record):
    """A LayerRecord's output histogram (float32 values on the analysis data) with the range its
    quantization represents (``record.representable_range``) marked, the observed range dotted and
    the saturated share (values clipped to qmin / qmax) annotated."""
    title = _wrap(f"{record.name} ({record.op} → {record.output}, {record.dtype})", 80)
    if record.scale is not None:
        title += f"\nscale {record.scale:.4g}, zero point {record.zero_point}"
    if record.histogram is None:
        return _message("no histogram recorded for this tensor", title)
    counts, edges = (np.asarray(a, np.float64) for a in record.histogram)
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    ax.stairs(counts, edges, fill=True, color=_FLOAT, alpha=0.8, label="float32 values")
    positive = counts[counts > 0]
    if positive.size and positive.max() / positive.min() > 100:
        ax.set_yscale("log")
    left, right = float(edges[0]), float(edges[-1])
    rng = record.representable_range
    if rng is not None:
        lo, hi = rng
        ax.axvline(lo, color=_CLIP, linestyle="--", linewidth=1.2)
        ax.axvline(hi, color=_CLIP, linestyle="--", linewidth=1.2,
                   label=f"representable [{lo:.4g}, {hi:.4g}]")
        if left < lo:
            ax.axvspan(left, lo, color=_CLIP, alpha=0.15)
        if right > hi:
            ax.axvspan(hi, right, color=_CLIP, alpha=0.15)
        span = max(right, hi) - min(left, lo)
        ax.set_xlim(min(left, lo) - 0.03 * span, max(right, hi) + 0.03 * span)
    if record.observed_min is not None:
        ax.axvline(record.observed_min, color="k", linestyle=":", linewidth=1)
        ax.axvline(record.observed_max, color="k", linestyle=":", linewidth=1,
                   label=f"calibrated [{record.observed_min:.4g}, {record.observed_max:.4g}]")
    if record.saturation is not None:
        color = _CLIP if record.saturation > 0.001 else "k"
        ax.text(0.02, 0.95, f"saturated: {100 * record.saturation:.3f} % of values", transform=ax.transAxes,
                ha="left", va="top", fontsize=8, color=color,
                bbox=dict(boxstyle="round", facecolor="white", alpha=0.8, edgecolor=color))
    ax.set_xlabel("value")
    ax.set_ylabel("count")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title, fontsize=9)
    return fig


def _finite_or_cap(values: list, cap: float) -> tuple:
    """(bar lengths, which were infinite): None -> nan, +-inf -> +-cap."""
    out, inf = [], []
    for v in values:
        if v is None:
            out.append(np.nan)
            inf.append(False)
        elif math.isinf(v):
            out.append(cap if v > 0 else -cap)
            inf.append(True)
        else:
            out.append(float(v))
            inf.append(False)
    return np.asarray(out), np.asarray(inf)


def _label_height(n: int) -> float:
    """Figure height (inches) for n horizontal bars of readable labels."""
    return max(2.4, 0.3 * n + 1.4)


def _label_width(labels: list, plot_inches: float = 6.0) -> float:
    """Figure width (inches) that fits the longest 8-point label beside a plot_inches-wide plot."""
    longest = max((len(line) for s in labels for line in s.split("\n")), default=0)
    return min(plot_inches + 0.075 * longest + 0.6, 40.0)


def _wrap(text: str, width: int = 90) -> str:
    """Break a long name into lines of ``width`` characters (titles: never cut, never overflowing)."""
    lines = []
    for line in str(text).split("\n"):
        lines += [line[i:i + width] for i in range(0, max(len(line), 1), width)]
    return "\n".join(lines)


def sqnr_bars(report, *, threshold_db: float = 20.0):
    """Isolated and cumulative SQNR (dB) of every int8 layer, in plan order, as horizontal bars with
    the full node names on the axis; the figure grows with the number of layers. Infinite SQNRs
    (exact) are drawn to the edge and hatched; ``threshold_db`` is a dotted guide line."""
    recs = [r for r in report.layers if r.precision == "int8"
            and (r.isolated_sqnr is not None or r.cumulative_sqnr is not None)]
    if not recs:
        return _message("no int8 layer has an SQNR in this report", "SQNR per layer")
    finite = [v for r in recs for v in (r.isolated_sqnr, r.cumulative_sqnr) if v is not None and math.isfinite(v)]
    cap = max(max(finite, default=threshold_db) * 1.15, threshold_db * 1.5, 1.0)
    iso, iso_inf = _finite_or_cap([r.isolated_sqnr for r in recs], cap)
    cum, cum_inf = _finite_or_cap([r.cumulative_sqnr for r in recs], cap)
    n = len(recs)
    labels = [_wrap(f"{r.name} ({r.op})", 160) for r in recs]
    fig = _figure(_label_width(labels), _label_height(n) + 0.3)
    ax = fig.add_subplot()
    y = np.arange(n)
    h = 0.4
    ax.barh(y - h / 2, iso, height=h, color=_FLOAT, label="isolated (only this layer int8)")
    ax.barh(y + h / 2, cum, height=h, color=_QUANT, label="cumulative (whole model int8)")
    for yy, vals, infs in ((y - h / 2, iso, iso_inf), (y + h / 2, cum, cum_inf)):
        if infs.any():
            ax.barh(yy[infs], vals[infs], height=h, fill=False, hatch="//", edgecolor="k", linewidth=0)
    ax.axvline(threshold_db, color=_CLIP, linestyle=":", linewidth=1, label=f"{threshold_db:g} dB")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(n - 0.5, -0.5)           # plan order, first layer on top
    ax.set_xlabel("SQNR against float32 (dB, higher is better; hatched: exact)")
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    if n > 30:
        ax.tick_params(axis="x", labeltop=True)   # a scale at both ends of a tall figure
    fig.suptitle(f"SQNR of the {n} int8 layers", fontsize=10)
    return fig


def sensitivity_ranking(sensitivity):
    """The relative metric drop (%) of each node quantized alone, worst first (on top); with
    ``sensitivity.methods`` a second panel compares the calibration methods."""
    nodes = sorted(sensitivity.nodes, key=lambda r: -r.relative_drop)
    if not nodes and not sensitivity.methods:
        return _message("the sensitivity analysis ranked no node", "sensitivity")
    methods = list(sensitivity.methods)
    rows = len(nodes) + (len(methods) + 2 if methods else 0)
    labels = [_wrap(f"{r.node} ({r.op})", 160) for r in nodes] + [r.method for r in methods]
    fig = _figure(_label_width(labels), _label_height(rows))
    if methods:
        ax, axm = fig.subplots(2, 1, gridspec_kw={"height_ratios": [max(len(nodes), 1), len(methods) + 1]})
    else:
        ax, axm = fig.add_subplot(), None
    for a, rows_, labels, color in (
            (ax, nodes, labels[:len(nodes)], _CLIP),
            (axm, methods, [r.method for r in methods], _FLOAT)):
        if a is None:
            continue
        y = np.arange(len(rows_))
        drops = np.array([100 * r.relative_drop for r in rows_], np.float64)
        a.barh(y, drops, color=[color if d > 0 else _OK for d in drops], height=0.7)
        a.set_yticks(y, labels, fontsize=8)
        a.set_ylim(len(rows_) - 0.5, -0.5)
        a.axvline(0, color="k", linewidth=0.6)
        a.grid(axis="x", alpha=0.3)
        for yy, d, r in zip(y, drops, rows_):
            a.annotate(f" {d:.2f}% ({r.metric_quant:.4g})", (max(d, 0), yy), va="center", fontsize=7)
        a.margins(x=0.2)
    ax.set_xlabel(f"relative drop in {sensitivity.metric} with only this node int8 (%)")
    ax.set_title(f"sensitivity: {len(nodes)} nodes, worst first", fontsize=10)
    if axm is not None:
        axm.set_xlabel(f"relative drop in {sensitivity.metric}, whole model int8, by calibration method (%)")
    return fig


def _chosen(tradeoffs: list, chosen):
    if chosen is None:
        ok = [t for t in tradeoffs if t.meets_budget]
        return min(ok, key=lambda t: (len(t.float_nodes), t.size_bytes, t.latency_ms)) if ok else None
    return tradeoffs[chosen] if isinstance(chosen, int) else chosen


def _budget_metric(tradeoffs: list, budget: float):
    """The metric value at relative drop == budget: metric is affine in the relative drop
    (m = m_float -+ |m_float| * drop), so two candidates with different drops fix it."""
    pts = {(t.relative_drop, t.metric) for t in tradeoffs if math.isfinite(t.relative_drop) and math.isfinite(t.metric)}
    pts = sorted(pts)
    if len(pts) < 2 or pts[0][0] == pts[-1][0]:
        return None
    (d0, m0), (d1, m1) = pts[0], pts[-1]
    return m0 + (m1 - m0) * (budget - d0) / (d1 - d0)


def tradeoff_curve(tradeoffs, *, chosen=None, budget: float | None = None, metric: str = "metric"):
    """Metric against size (KiB) and against latency (ms) of every mixed-precision candidate;
    candidates within the budget in green, the others red, the chosen one starred (by default the
    one keeping the fewest nodes float32 within the budget, as eb.quantize picks), each point
    labelled with how many nodes stay float32. ``budget`` (a relative drop) draws its threshold."""
    tradeoffs = list(tradeoffs)
    if not tradeoffs:
        return _message("no mixed-precision candidates", "trade-off")
    pick = _chosen(tradeoffs, chosen)
    fig = _figure(11, 4)
    axes = fig.subplots(1, 2, sharey=True)
    threshold = _budget_metric(tradeoffs, budget) if budget is not None else None
    for ax, attr, xlabel, scale in ((axes[0], "size_bytes", "size (KiB)", 1 / 1024),
                                    (axes[1], "latency_ms", "latency (ms)", 1.0)):
        xs = np.array([getattr(t, attr) * scale for t in tradeoffs], np.float64)
        ys = np.array([t.metric for t in tradeoffs], np.float64)
        ok = np.array([t.meets_budget for t in tradeoffs])
        order = np.argsort(xs)
        ax.plot(xs[order], ys[order], color="0.6", linewidth=0.8, zorder=1)
        ax.scatter(xs[ok], ys[ok], color=_OK, zorder=2, label="within budget")
        ax.scatter(xs[~ok], ys[~ok], color=_CLIP, zorder=2, label="over budget")
        for x_, y_, t in zip(xs, ys, tradeoffs):
            ax.annotate(f"{len(t.float_nodes)} fp32", (x_, y_), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if pick is not None:
            ax.scatter([getattr(pick, attr) * scale], [pick.metric], marker="*", s=260, facecolor="none",
                       edgecolor="k", linewidth=1.2, zorder=3, label="chosen")
        if threshold is not None:
            ax.axhline(threshold, color=_CLIP, linestyle=":", linewidth=1, label=f"budget {100 * budget:g}% drop")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    axes[0].legend(fontsize=7, loc="best")
    title = f"mixed precision: {len(tradeoffs)} candidates"
    if pick is not None:
        kept = ", ".join(pick.float_nodes) if pick.float_nodes else "none"
        title += f"; chosen keeps float32: {kept}"
    fig.suptitle(_wrap(title, 130), fontsize=9)
    return fig
