"""Metrics that compare a model's predictions with a target: labels, or a float model's outputs.

Every metric is ``fn(pred, target) -> float`` on the first output of a model (``pred`` float32,
[N, ...]); ``target`` is either integer class labels [N] or a reference model's outputs of the same
shape as ``pred`` (then class metrics compare the two argmaxes: "agreement with float").

    metric = resolve("accuracy")          # a name, a Metric, or a callable (higher is better)
    metric(pred, target)                  # the value
    metric.drop(m_float, m_quant)         # (absolute drop, relative drop)

``relative drop`` is (m_fp - m_q) / |m_fp| for a metric where higher is better (accuracy, f1,
recall, precision, cosine), (m_q - m_fp) / |m_fp| for one where lower is better (loss). SQNR
against the float model itself is infinite in float, so its relative drop is defined as the
noise-to-signal power ratio 10^(-SQNR/10): an accuracy budget of 0.01 means SQNR >= 20 dB.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Metric", "METRICS", "resolve", "sqnr_db", "cosine_similarity"]


def sqnr_db(reference, test) -> float:
    """10 log10(sum(ref^2) / sum((test - ref)^2)) in float64; inf for an exact match, -inf (or
    nan-free 0-signal handling: -inf) when the reference is all zeros and the test is not."""
    r = np.asarray(reference, np.float64)
    t = np.asarray(test, np.float64)
    if r.shape != t.shape:
        raise ValueError(f"sqnr: shapes differ: reference {r.shape}, test {t.shape}")
    noise = float(np.sum((t - r) ** 2))
    signal = float(np.sum(r ** 2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def cosine_similarity(pred, target) -> float:
    """Mean over samples of the cosine between each sample's flattened prediction and target."""
    p = np.asarray(pred, np.float64).reshape(len(pred), -1)
    t = np.asarray(target, np.float64).reshape(len(target), -1)
    if p.shape != t.shape:
        raise ValueError(f"cosine: shapes differ: pred {p.shape}, target {t.shape}")
    num = np.sum(p * t, axis=1)
    den = np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1)
    cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(np.all(p == t, axis=1), 1.0, 0.0))
    return float(np.mean(cos))


def _labels(pred: np.ndarray, target) -> tuple:
    """(predicted classes, target classes): target labels as given, or a reference's argmax."""
    p = np.asarray(pred)
    if p.ndim < 2:
        raise ValueError(f"class metrics need scores [N, classes], got pred of shape {p.shape}")
    t = np.asarray(target)
    if t.shape == p.shape and t.dtype.kind == "f":
        t = t.argmax(axis=-1)
    elif t.shape != p.shape[:-1]:
        raise ValueError(f"labels: expected shape {p.shape[:-1]} (or a reference of shape {p.shape}), got {t.shape}")
    elif t.dtype.kind not in "iub" and not np.all(np.mod(t, 1) == 0):
        raise ValueError("labels: expected integer class labels")
    return p.argmax(axis=-1).ravel(), t.astype(np.int64).ravel()


def _accuracy(pred, target) -> float:
    p, t = _labels(pred, target)
    return float(np.mean(p == t))


def _per_class(pred, target):
    p, t = _labels(pred, target)
    classes = np.union1d(p, t)
    tp = np.array([np.sum((p == c) & (t == c)) for c in classes], np.float64)
    fp = np.array([np.sum((p == c) & (t != c)) for c in classes], np.float64)
    fn = np.array([np.sum((p != c) & (t == c)) for c in classes], np.float64)
    return tp, fp, fn


def _safe_div(a, b):
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


def _precision(pred, target) -> float:
    """Macro-averaged precision (scikit-learn's average="macro", zero_division=0)."""
    tp, fp, _ = _per_class(pred, target)
    return float(np.mean(_safe_div(tp, tp + fp)))


def _recall(pred, target) -> float:
    """Macro-averaged recall (scikit-learn's average="macro", zero_division=0)."""
    tp, _, fn = _per_class(pred, target)
    return float(np.mean(_safe_div(tp, tp + fn)))


def _f1(pred, target) -> float:
    """Macro-averaged F1 (scikit-learn's average="macro", zero_division=0)."""
    tp, fp, fn = _per_class(pred, target)
    return float(np.mean(_safe_div(2 * tp, 2 * tp + fp + fn)))


def _loss(pred, target) -> float:
    """Cross-entropy of softmax(pred) against integer labels, or the mean squared error against
    a reference model's outputs."""
    p = np.asarray(pred, np.float64)
    t = np.asarray(target)
    if t.shape == p.shape and t.dtype.kind == "f":
        return float(np.mean((p - t) ** 2))
    pc, tc = _labels(p, t)
    z = p.reshape(-1, p.shape[-1])
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(tc)), tc]))


def _sqnr(pred, target) -> float:
    return sqnr_db(target, pred)


@dataclass(frozen=True)
class Metric:
    """A named metric ``fn(pred, target)`` and which way is better."""

    name: str
    fn: Callable
    higher_is_better: bool = True

    def __call__(self, pred, target) -> float:
        return float(self.fn(pred, target))

    def drop(self, m_float: float, m_quant: float) -> tuple:
        """(drop, relative drop): positive when the quantized model is worse."""
        if self.name == "sqnr":
            return m_float - m_quant if np.isfinite(m_float) else float("inf"), 10.0 ** (-m_quant / 10.0)
        d = (m_float - m_quant) if self.higher_is_better else (m_quant - m_float)
        return float(d), float(d / abs(m_float)) if m_float != 0 else (0.0 if d == 0 else float("inf"))


METRICS = {m.name: m for m in (
    Metric("accuracy", _accuracy), Metric("f1", _f1), Metric("recall", _recall), Metric("precision", _precision),
    Metric("loss", _loss, higher_is_better=False), Metric("cosine", cosine_similarity), Metric("sqnr", _sqnr),
)}


def resolve(metric) -> Metric:
    """A Metric from a name in METRICS, a Metric, or a callable ``fn(pred, target)`` where higher
    is better (wrap it in ``Metric(name, fn, higher_is_better=False)`` otherwise)."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(f"metric: expected one of {sorted(METRICS)} or a callable, got {metric!r}")
        return METRICS[metric]
    if callable(metric):
        return Metric(getattr(metric, "__name__", "metric"), metric)
    raise TypeError(f"metric: expected a name, a Metric or a callable, got {type(metric).__name__}")
