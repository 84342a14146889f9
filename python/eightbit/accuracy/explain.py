"""eb.explain: which input features a model's prediction rests on, and which of those attributions
quantization moved (SHAP, the optional ``report`` extra: ``pip install "eightbit[report]"``).

    ex = eb.explain((graph, qm), x[:20], x_train[:50])     # float32 vs int8
    print(ex.table())                                       # features ranked by mean |change|
    ex.plot(sample=0).savefig("explain.png")                # side by side + waterfalls

Every model is explained with shap's model-agnostic ``KernelExplainer`` over the same
``background`` samples, on one scalar output per sample (``output_index``), so the attributions of
the float32 and int8 models are directly comparable: each row satisfies local accuracy,
``base_value + sum(values) == prediction`` (up to the solver's precision).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .report import format_table
from .runner import ModelRunner

__all__ = ["explain", "Explanation"]

INSTALL_HINT = 'pip install "eightbit[report]"'
_CHUNK = 4096  # rows per model call: KernelExplainer evaluates nsamples x background rows


def _shap():
    try:
        import shap
    except ImportError as e:
        raise ImportError(f"eb.explain needs the shap package: {INSTALL_HINT}") from e
    return shap


def _models(models) -> dict:
    if isinstance(models, dict):
        if not models:
            raise ValueError("models: empty")
        return {str(k): v for k, v in models.items()}
    if isinstance(models, (tuple, list)) and len(models) == 2:
        return {"float32": models[0], "int8": models[1]}
    raise TypeError("models: expected a dict {name: model} or a (float32, int8) pair")


def _feature_names(shape: tuple, names) -> list:
    count = int(np.prod(shape)) if shape else 1
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != count:
            raise ValueError(f"feature_names: {len(names)} names for {count} features")
        return names
    if len(shape) == 1:
        return [f"x[{i}]" for i in range(count)]
    return ["x[" + ",".join(map(str, idx)) + "]" for idx in np.ndindex(*shape)]


@dataclass
class Explanation:
    """eb.explain's result. ``values[name]``: SHAP values [samples, *feature_shape] of model
    ``name``; ``base_values[name]``: its expected output over the background; ``predictions[name]``
    [samples]: the explained output. ``changed``: (feature, mean |Δ value|) of the first two models,
    largest first: the features whose attribution quantization moved most."""

    values: dict
    base_values: dict
    predictions: dict
    x: np.ndarray = field(repr=False)
    feature_names: list = field(repr=False)
    output_index: int = 0
    changed: list = field(default_factory=list)
    nsamples: object = "auto"

    @property
    def names(self) -> list:
        return list(self.values)

    def flat(self, name: str) -> np.ndarray:
        """SHAP values of model ``name`` as [samples, features]."""
        v = self.values[name]
        return v.reshape(len(v), -1)

    def local_accuracy_error(self, name: str) -> float:
        """max over samples of |base value + sum of attributions - prediction|."""
        return float(np.max(np.abs(self.base_values[name] + self.flat(name).sum(axis=1) - self.predictions[name])))

    def changed_features(self, a: str | None = None, b: str | None = None) -> list:
        """(feature, mean over samples of |values[b] - values[a]|), largest first (default: the
        first two models)."""
        names = self.names
        a = names[0] if a is None else a
        b = (names[1] if len(names) > 1 else names[0]) if b is None else b
        delta = np.mean(np.abs(self.flat(b) - self.flat(a)), axis=0)
        order = np.argsort(-delta, kind="stable")
        return [(self.feature_names[i], float(delta[i])) for i in order]

    def table(self, top: int | None = 20) -> str:
        """Features ranked by mean |Δ attribution| (first two models), with each model's mean |value|."""
        names = self.names
        mean_abs = {n: np.mean(np.abs(self.flat(n)), axis=0) for n in names}
        index = {f: i for i, f in enumerate(self.feature_names)}
        rows = []
        for rank, (feat, d) in enumerate(self.changed[:top] if top else self.changed, 1):
            i = index[feat]
            rows.append((rank, feat, *(f"{mean_abs[n][i]:.4g}" for n in names), f"{d:.4g}"))
        head = ["rank", "feature", *(f"mean |SHAP| {n}" for n in names), "mean |Δ|"]
        lines = [format_table(head, rows), ""]
        for n in names:
            lines.append(f"{n}: base value {self.base_values[n]:.4g}, output {self.output_index}, "
                         f"local accuracy error {self.local_accuracy_error(n):.2g}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, sample: int = 0, top: int = 12):
        """A Figure: the models' attributions for ``sample`` side by side (the ``top`` features by
        largest |value| in any model), and a waterfall per model (first two) from the base value
        to the prediction."""
        from .plots import _figure, _wrap

        if not 0 <= sample < len(self.x):
            raise IndexError(f"sample {sample} out of range: {len(self.x)} samples explained")
        names = self.names
        shown = names[:2]
        vals = {n: self.flat(n)[sample] for n in names}
        strength = np.max(np.abs(np.stack([vals[n] for n in names])), axis=0)
        k = min(top, len(strength))
        order = np.argsort(-strength, kind="stable")[:k]
        fig = _figure(5 + 4.2 * len(shown), max(3.2, 0.32 * (k + 1) + 1.5))
        axes = fig.subplots(1, 1 + len(shown))
        ax = axes[0]
        y = np.arange(k)
        h = 0.8 / len(names)
        colors = ["#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860"]
        for j, n in enumerate(names):
            ax.barh(y - 0.4 + h * (j + 0.5), vals[n][order], height=h, color=colors[j % len(colors)], label=n)
        ax.set_yticks(y, [self.feature_names[i] for i in order], fontsize=8)
        ax.set_ylim(k - 0.5, -0.5)
        ax.axvline(0, color="k", linewidth=0.6)
        ax.set_xlabel("SHAP value")
        ax.legend(fontsize=7, loc="best")
        ax.set_title(f"sample {sample}: attributions", fontsize=9)
        for a, n in zip(axes[1:], shown):
            _waterfall(a, vals[n], self.base_values[n], float(self.predictions[n][sample]), self.feature_names, top)
            a.set_title(_wrap(f"{n}: f(x) = {float(self.predictions[n][sample]):.4g}", 50), fontsize=9)
        fig.suptitle(f"SHAP, output {self.output_index}, sample {sample}", fontsize=10)
        return fig


def _waterfall(ax, values: np.ndarray, base: float, prediction: float, names: list, top: int) -> None:
    """A waterfall drawn with plain matplotlib: from E[f(x)] (bottom) through the ``top`` largest
    contributions (the rest merged) to f(x) (top)."""
    order = np.argsort(-np.abs(values), kind="stable")
    keep = order[:top]
    rest = order[top:]
    items = [(names[i], float(values[i])) for i in keep]
    if len(rest):
        items.append((f"{len(rest)} other features", float(values[rest].sum())))
    items = items[::-1]                      # smallest at the bottom, drawn from the base upwards
    start = base
    path = [base, prediction]
    for row, (label, v) in enumerate(items):
        color = "#c44e52" if v >= 0 else "#4c72b0"
        ax.barh(row, v, left=start, color=color, height=0.7)
        ax.annotate(f"{v:+.3g}", (start + v, row), xytext=(3 if v >= 0 else -3, 0),
                    textcoords="offset points", va="center", ha="left" if v >= 0 else "right", fontsize=7)
        start += v
        path.append(start)
    lo, hi = min(path), max(path)
    pad = 0.2 * (hi - lo) or 0.1 * max(abs(hi), 1.0)
    ax.set_xlim(lo - pad, hi + pad)     # room for the labels (bars' sticky edges defeat margins)
    ax.axvline(base, color="0.5", linestyle=":", linewidth=1)
    ax.axvline(prediction, color="k", linestyle="--", linewidth=1)
    ax.set_yticks(np.arange(len(items)), [label for label, _ in items], fontsize=8)
    ax.set_ylim(-0.5, len(items) - 0.5)
    ax.set_xlabel(f"E[f(x)] = {base:.4g} (dotted) → f(x) = {prediction:.4g} (dashed)", fontsize=8)


def _as_rows(predict, batch, feature_shape: tuple):
    """f([n, F]) -> [n, outputs] for shap: reshape to the model's input, run in chunks (a fixed
    batch size is honoured by padding the last chunk)."""
    def f(rows):
        rows = np.asarray(rows, np.float32).reshape((len(rows),) + feature_shape)
        step = batch or _CHUNK
        outs = []
        for i in range(0, len(rows), step):
            part = rows[i:i + step]
            n = len(part)
            if batch and n < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)])
            out = np.asarray(predict(np.ascontiguousarray(part)), np.float64)
            outs.append(out.reshape(len(part), -1)[:n])
        return np.concatenate(outs)
    return f


def explain(models, x, background, *, output_index: int | None = None, nsamples="auto",
            feature_names=None, max_background: int = 100, seed: int = 0) -> Explanation:
    """SHAP attributions of each model's prediction on ``x`` [samples, *features] (one input).

    ``models``: a dict ``{name: model}`` or a ``(float32, int8)`` pair; a model is an eightbit
    Graph, a QuantizedModel or a callable ``f(x) -> array``. ``background``: samples that define the
    "feature absent" value (the same for every model; more than ``max_background`` are subsampled).
    ``output_index``: which entry of the (flattened) first output to explain; default 0 for a
    single-value output, else the class the first model predicts most often on ``x``.
    ``nsamples``: model evaluations per explained sample (KernelExplainer; "auto" = 2 * features +
    2048). The first two models are compared: ``Explanation.changed``.
    """
    shap = _shap()
    from .plots import _matplotlib
    _matplotlib()                                  # plot() needs it: fail now, with the hint
    models = _models(models)
    x = np.asarray(x, np.float32)
    background = np.asarray(background, np.float32)
    if x.ndim < 2:
        raise ValueError(f"x: expected [samples, features...], got shape {x.shape}")
    feature_shape = x.shape[1:]
    if background.shape[1:] != feature_shape:
        raise ValueError(f"background: samples of shape {background.shape[1:]}, but x's are {feature_shape}")
    if len(background) == 0 or len(x) == 0:
        raise ValueError("x and background need at least one sample each")
    if len(background) > max_background:
        pick = np.random.default_rng(seed).choice(len(background), max_background, replace=False)
        background = background[np.sort(pick)]
    names = _feature_names(feature_shape, feature_names)
    features = len(names)
    fns = {}
    for name, model in models.items():
        runner = ModelRunner(name, model)
        if runner.inputs is not None and len(runner.inputs) != 1:
            raise ValueError(f"models[{name!r}]: explain takes one-input models; it has {runner.inputs}")
        fns[name] = _as_rows(runner, runner.fixed_batch, feature_shape)
    x2 = x.reshape(len(x), features)
    first_out = fns[next(iter(fns))](x2)
    outputs = first_out.shape[1]
    if output_index is None:
        output_index = 0 if outputs == 1 else int(np.bincount(first_out.argmax(axis=1), minlength=outputs).argmax())
    if not 0 <= output_index < outputs:
        raise ValueError(f"output_index {output_index}: the first output has {outputs} values per sample")
    values, bases, preds = {}, {}, {}
    bg2 = background.reshape(len(background), features)
    state = np.random.get_state()    # KernelExplainer samples coalitions from NumPy's global state:
    try:                             # seed it for reproducible values, then give the caller theirs back
        for name, f in fns.items():
            values[name], bases[name], preds[name] = _kernel_shap(shap, f, output_index, bg2, x2, nsamples, seed)
    finally:
        np.random.set_state(state)
    values = {n: v.reshape((len(x),) + feature_shape) for n, v in values.items()}
    ex = Explanation(values, bases, preds, x, names, output_index, nsamples=nsamples)
    ex.changed = ex.changed_features()
    return ex


def _kernel_shap(shap, f, output_index: int, bg2: np.ndarray, x2: np.ndarray, nsamples, seed: int) -> tuple:
    """(values [samples, features], base value, predictions [samples]) of one model's output."""
    def g(rows):
        return f(rows)[:, output_index]
    np.random.seed(seed)
    explainer = shap.KernelExplainer(g, bg2, link="identity")
    sv = np.asarray(explainer.shap_values(x2, nsamples=nsamples, silent=True), np.float64)
    ev = np.asarray(explainer.expected_value, np.float64).reshape(-1)
    return sv.reshape(x2.shape), float(ev[0]), g(x2)
