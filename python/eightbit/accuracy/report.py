"""The records the accuracy tools return: a per-layer Report (eb.analyze), a Sensitivity ranking
(eb.sensitivity) and the Tradeoff candidates of mixed precision (eb.quantize(accuracy_budget=)).

They are plain data: ``dataclasses.asdict`` gives what ``to_json`` writes; ``table()`` gives text
with full node names (never cut); ``to_html`` writes one self-contained file (accuracy/html.py).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["LayerRecord", "Report", "SensitivityRow", "MethodRow", "Sensitivity", "Tradeoff", "format_table"]


@dataclass
class LayerRecord:
    """One node of the quantized plan (or a graph input the plan quantizes: op "input").

    ``precision`` is "int8" (any 8-bit step, uint8 or int8 activations: ``dtype`` says which) or
    "float32". SQNRs are in dB against the float graph on the analysis data: ``cumulative_sqnr``
    at this node's output with the whole model quantized; ``isolated_sqnr`` at this node's output
    with only this node quantized (its inputs quantized from the float values); and
    ``isolated_output_sqnr`` at the model's (first) output with only this node quantized.
    ``saturation`` is the share of the float graph's values of the output that fall outside the
    range the output's scale and zero point can represent (clipped to qmin / qmax).
    ``histogram`` is (counts, bin edges) of those float values, for pictures.
    """

    name: str
    op: str
    step: str
    precision: str
    output: str
    dtype: str
    scale: Optional[float] = None
    zero_point: Optional[int] = None
    observed_min: Optional[float] = None
    observed_max: Optional[float] = None
    saturation: Optional[float] = None
    weight_sqnr_min: Optional[float] = None
    weight_sqnr_median: Optional[float] = None
    cumulative_sqnr: Optional[float] = None
    isolated_sqnr: Optional[float] = None
    isolated_output_sqnr: Optional[float] = None
    histogram: Optional[tuple] = field(default=None, repr=False)
    weight_bits: Optional[int] = None   # bits per weight of the step (8, 4, 1, ...; None: no weights)

    @property
    def representable_range(self) -> Optional[tuple]:
        """(lowest, highest) real value the output's quantization represents, or None (float)."""
        if self.scale is None:
            return None
        qmin, qmax = (0, 255) if self.dtype == "uint8" else (-128, 127)
        return self.scale * (qmin - self.zero_point), self.scale * (qmax - self.zero_point)


def _num(v, fmt="{:.1f}") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return fmt.format(v)


def _drop(v) -> str:
    """A metric drop; "-" where it is infinite (SQNR against float, whose own value is infinite)."""
    return _num(v, "{:+.4f}") if v is not None and math.isfinite(v) else "-"


def format_table(header: list, rows: list) -> str:
    """Left-aligned text columns sized to their widest cell (no cell is ever cut)."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _plain(value):
    """JSON-safe: infinities as strings, tuples as lists, NumPy scalars as Python ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_json(data: dict, path=None) -> str:
    """``data`` (JSON-safe, see _plain) as indented JSON text, also written to ``path`` if given."""
    text = json.dumps(data, indent=1)
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return text


@dataclass
class SensitivityRow:
    """One quantizable node quantized alone (every other node float32)."""

    node: str
    op: str
    metric_float: float
    metric_quant: float
    drop: float
    relative_drop: float


@dataclass
class MethodRow:
    """The whole model quantized with one calibration method."""

    method: str
    metric_float: float
    metric_quant: float
    drop: float
    relative_drop: float


@dataclass
class Sensitivity:
    """eb.sensitivity's result: ``nodes`` ranked worst first, ``methods`` in the order given."""

    metric: str
    nodes: list
    methods: list = field(default_factory=list)
    seconds: float = 0.0

    def ranking(self) -> list:
        """Node names, worst first."""
        return [r.node for r in self.nodes]

    def table(self) -> str:
        rows = [(i + 1, r.node, r.op, _num(r.metric_quant, "{:.4f}"), _drop(r.drop),
                 _num(100 * r.relative_drop, "{:.2f}%")) for i, r in enumerate(self.nodes)]
        text = format_table(["rank", "node", "op", self.metric, "drop", "relative drop"], rows)
        if self.methods:
            mrows = [(r.method, _num(r.metric_quant, "{:.4f}"), _drop(r.drop),
                      _num(100 * r.relative_drop, "{:.2f}%")) for r in self.methods]
            text += "\n\n" + format_table(["method", self.metric, "drop", "relative drop"], mrows)
        return text

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def to_json(self, path=None) -> str:
        return write_json(self.to_dict(), path)

    def __str__(self) -> str:
        return self.table()


@dataclass
class Tradeoff:
    """A mixed-precision candidate: the nodes kept float32 and what it measured."""

    float_nodes: tuple
    size_bytes: int
    latency_ms: float
    metric: float
    relative_drop: float
    meets_budget: bool


@dataclass
class Report:
    """eb.analyze's result. ``layers`` in plan order; ``output_sqnr`` per model output (dB);
    ``metric`` / ``metric_float`` / ``metric_int8`` when a metric was given. ``qm`` is the
    quantized model analysed and ``graph`` the prepared float graph it came from (for pictures);
    ``sensitivity`` and ``tradeoffs`` are attached by the tools that computed them."""

    layers: list
    output_sqnr: dict
    metric: Optional[str] = None
    metric_float: Optional[float] = None
    metric_int8: Optional[float] = None
    options: dict = field(default_factory=dict)
    samples: int = 0
    qm: object = field(default=None, repr=False)
    graph: object = field(default=None, repr=False)
    sensitivity: Optional[Sensitivity] = None
    tradeoffs: list = field(default_factory=list)

    def layer(self, name: str) -> LayerRecord:
        for r in self.layers:
            if r.name == name:
                return r
        raise KeyError(f"no layer named {name!r} in the report")

    def worst(self, n: int = 5, key: str = "isolated_output_sqnr") -> list:
        """The n int8 layers with the lowest ``key`` (an SQNR field)."""
        rows = [r for r in self.layers if getattr(r, key) is not None]
        return sorted(rows, key=lambda r: getattr(r, key))[:n]

    def table(self) -> str:
        header = ["node", "op", "step", "prec", "w bits", "scale", "zp", "observed range", "sat %", "w SQNR min/med",
                  "cum dB", "iso dB", "iso out dB"]
        rows = []
        for r in self.layers:
            rng = "-" if r.observed_min is None else f"[{r.observed_min:.4g}, {r.observed_max:.4g}]"
            wq = "-" if r.weight_sqnr_min is None else f"{_num(r.weight_sqnr_min)}/{_num(r.weight_sqnr_median)}"
            rows.append((r.name, r.op, r.step, r.dtype if r.precision == "int8" else "fp32", _num(r.weight_bits, "{}"),
                         _num(r.scale, "{:.4g}"), _num(r.zero_point, "{}"), rng, _num(
                             None if r.saturation is None else 100 * r.saturation, "{:.3f}"),
                         wq, _num(r.cumulative_sqnr), _num(r.isolated_sqnr), _num(r.isolated_output_sqnr)))
        lines = [format_table(header, rows), ""]
        lines += [f"output {name}: SQNR {_num(v)} dB" for name, v in self.output_sqnr.items()]
        if self.metric is not None:
            lines.append(f"{self.metric}: float32 {self.metric_float:.4f}, int8 {self.metric_int8:.4f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("qm", "graph")}
        d["layers"] = [dataclasses.asdict(r) for r in self.layers]
        d["sensitivity"] = None if self.sensitivity is None else dataclasses.asdict(self.sensitivity)
        d["tradeoffs"] = [dataclasses.asdict(t) for t in self.tradeoffs]
        return _plain(d)

    def to_json(self, path=None) -> str:
        """The report as JSON (written to ``path`` when given); infinities as "inf" / "-inf"."""
        return write_json(self.to_dict(), path)

    def to_html(self, path, **options) -> None:
        """One self-contained HTML file: the table and the pictures embedded (needs matplotlib);
        ``options`` go to accuracy.html.render (e.g. max_layer_figures)."""
        from .html import render
        render(self, path, **options)
