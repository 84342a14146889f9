"""Accuracy tools: see where quantization error enters, explain it and repair it (docs/accuracy.md).

    report = eb.analyze(graph, calib, data)          # per-layer report (analyze.py, report.py)
    sens = eb.sensitivity(graph, calib, (x, y))      # each node quantized alone, ranked
    qm = eb.quantize(graph, calib, accuracy_budget=0.01, eval_data=(x, y))   # mixed precision
"""
from .metrics import METRICS, Metric, cosine_similarity, resolve as resolve_metric, sqnr_db
from .report import LayerRecord, MethodRow, Report, Sensitivity, SensitivityRow, Tradeoff

__all__ = ["METRICS", "Metric", "resolve_metric", "sqnr_db", "cosine_similarity", "LayerRecord", "Report",
           "Sensitivity", "SensitivityRow", "MethodRow", "Tradeoff"]
