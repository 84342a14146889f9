"""Small float models with a planted quantization fault, to prove eightbit's accuracy tools.

Each builder (a plain function, fixed seeds, 0.02-0.5 s) returns a ``FaultModel``: the float
``graph``, calibration batches ``calib``, evaluation inputs ``data`` (an array, or a dict by input
name), ``labels`` for ``data`` (class ids) or None, ``fragile``: the node names that ARE the
fault (keeping exactly them float32 repairs the int8 model), and a ``note``.

    fm = outlier_channel()
    eb.quantize(fm.graph, fm.calib)                      # output SQNR < 15 dB against float
    eb.quantize(fm.graph, fm.calib, exclude=fm.fragile)  # > 25 dB (measured: see the table below)

The faults are the ones that wreck real models: a per-tensor uint8 grid stretched by a few
values so that every ordinary value gets a code or two.

* ``outlier_channel``: a transformer-style MLP, ``fc1 -> relu -> fc2 -> layer_norm -> fc3 -> relu
  -> fc4``, whose LayerNorm has one channel with a 100x gamma and beta (as transformers' activations
  have a few outlier channels); ``fc3`` quantizes the LayerNorm's output per tensor on its way in.
  ``fc3``'s weights on that channel are 1/100 of a healthy net's, so the float function is the
  healthy net's. Fragile: ``fc3`` (the only int8 reader of the tensor; layer_norm is float32).
* ``mask_add``: ``fc0 -> relu -> fc1 -> add(mask) -> gelu -> fc2 -> relu -> fc3`` where ``mask`` is
  a second input holding 0 / -1e4 (an additive attention-mask-like input hiding the hidden units
  past each sample's length). The add is int8 (its neighbours are int8: fc1 and the GELU table),
  so its output range is [-1e4, ~10] and the unmasked values collapse to the codes around 0.
  Fragile: the add and the GELU (a table step that quantizes the add's output on its way in
  when the add alone is float). With a ReLU instead of the GELU there is no fault: eb.quantize
  fuses the ReLU into the add, whose output range is then [0, ~10].
* ``imbalanced_channels``: a CNN, ``conv1 -> relu -> conv2 -> relu -> maxpool -> conv3 -> relu ->
  conv4 -> relu -> global avgpool -> flatten -> fc``, in which conv1's output channel 3 is 1000x
  the others (weights and bias), and conv2's weights reading it 1/1000x: ReLU is positively
  homogeneous, so the float function is the balanced net's (the fault cross-layer equalization
  undoes). Fragile: ``conv1`` (writes the tensor per tensor) and ``conv2`` (reads it).

Weights are trained-like: He-normal with 1/16 of the output channels 1.5-2.5x heavier, then (as
a trained BatchNorm'd net has) each layer's output channels scaled and shifted to N(beta, gamma)
on a probe batch; the CNN's first layer is a Gabor bank; the classifier is a ridge regression
fitted on the float features of 512-1024 training samples, so the labels mean something (float
accuracy 0.96-1.0). Data has structure: class clusters in a low-dimensional
subspace with correlated noise (MLPs), oriented gratings of a class-dependent angle on smooth
random backgrounds (CNN).

Measured (eb.quantize defaults: minmax, uint8, per-channel weights; output SQNR in dB against
float32 on ``data``; accuracy on ``labels``; test_fault_models.py asserts < 13 dB and > 26 dB):

    model                quantize all   exclude fragile   accuracy float / all int8 / fragile float
    outlier_channel          9.7             30.8              0.973 / 0.926 / 0.969
    mask_add                -0.3             29.8              1.000 / 0.105 / 1.000
    imbalanced_channels     -5.7             28.5              0.961 / 0.258 / 0.969

The same nets without the planted scale (``factor=1`` / ``pad=0``) quantize to 30.2 / 30.8 /
28.0 dB: the fault costs 20-35 dB, and the rest of each net is healthy. Each fault has one
remedy besides keeping it float32 (measured, all other nodes int8): SmoothQuant
(``smooth=0.5``) repairs outlier_channel (31.4 dB), cross-layer equalization (``equalize=True``)
repairs imbalanced_channels (29.5 dB), and nothing but float32 repairs mask_add; no calibration
method (percentile, mse) repairs any of them (-5 to 10 dB), and neither compensation repairs the
other's fault.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eightbit.graph import Graph

__all__ = ["FaultModel", "outlier_channel", "mask_add", "imbalanced_channels", "FAULT_MODELS"]

SEED = 20261211
N_CALIB_BATCHES, CALIB_BATCH, N_EVAL, N_TRAIN = 4, 32, 256, 1024


@dataclass
class FaultModel:
    graph: Graph
    calib: list                 # batches: arrays (one input) or {input name: array}
    data: object                # evaluation inputs: an array or {input name: array}
    labels: object              # int64 [N] class ids of data, or None
    fragile: set = field(default_factory=set)
    note: str = ""

    @property
    def name(self) -> str:
        return self.graph.name


# ---- weights and data --------------------------------------------------------------------------

def he(rng, shape, fan_in, heavy: float = 1 / 16, spread=(1.5, 2.5)) -> np.ndarray:
    """He-normal weights [out, ...] with a share ``heavy`` of output channels ``spread`` x heavier
    (as trained layers have a few large-norm channels)."""
    w = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    k = max(1, int(round(shape[0] * heavy)))
    rows = rng.choice(shape[0], k, replace=False)
    w[rows] *= rng.uniform(*spread, (k,) + (1,) * (len(shape) - 1))
    return w.astype(np.float32)


def gabor_bank(rng, out, cin, k) -> np.ndarray:
    """First-layer filters as trained CNNs learn them: Gabor patches at out // 2 orientations and
    two phases, a random colour mix per filter, plus 30 % He-normal noise, scaled to He's norm."""
    yy, xx = np.mgrid[0:k, 0:k] - (k - 1) / 2
    w = np.empty((out, cin, k, k))
    for o in range(out):
        theta = np.pi * (o // 2) / (out // 2)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        patch = np.exp(-(xx ** 2 + yy ** 2) / (2 * (k / 3) ** 2)) * np.cos(0.9 * u + (np.pi / 2) * (o % 2))
        patch /= np.linalg.norm(patch)
        colour = 1.0 + 0.4 * rng.standard_normal(cin)
        w[o] = colour[:, None, None] * patch / np.linalg.norm(colour)
    w = w + 0.3 * rng.standard_normal(w.shape) / np.sqrt(cin * k * k)
    return (w * np.sqrt(2.0) / np.linalg.norm(w.reshape(out, -1), axis=1)[:, None, None, None]).astype(np.float32)


def carry(w, strength: float = 1.0) -> np.ndarray:
    """He weights plus a centre-tap path from input channel i % C_in to output channel i: deeper
    layers of a trained CNN keep what the first layer found (features stay selective instead of
    washing out into one shared "energy" direction, as a stack of random convolutions does)."""
    w = w.copy()
    o, i, kh, kw = w.shape
    for c in range(o):
        w[c, c % i, kh // 2, kw // 2] += strength
    return w


def bn_fold(rng, w, y, gamma=(0.6, 1.4), beta=0.2):
    """(w, b) of a layer followed by a folded BatchNorm whose statistics are the layer's outputs
    ``y`` [N, C, ...] on a probe batch (computed with ``w`` and no bias), as a trained
    BatchNorm'd net has: each output channel ~ N(beta_c, gamma_c) on data like the probe."""
    axes = (0,) + tuple(range(2, y.ndim))
    s = rng.uniform(*gamma, w.shape[0]) / (y.std(axis=axes) + 1e-6)
    b = rng.normal(0.0, beta, w.shape[0]) - y.mean(axis=axes) * s
    return (w * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32), b.astype(np.float32)


def conv_out(x, w, padding) -> np.ndarray:
    g = Graph("probe")
    g.output(g.conv2d(g.input("x", (None,) + x.shape[1:]), w, padding=padding))
    return g.run(x)


def small_bias(rng, n) -> np.ndarray:
    return (rng.standard_normal(n) * 0.05).astype(np.float32)


def ridge(features: np.ndarray, labels: np.ndarray, classes: int, lam: float = 1e-2):
    """(weight [classes, F], bias [classes]) of a ridge regression onto one-hot labels, the
    penalty ``lam`` x the mean feature variance (so directions the features barely vary in get
    small weights, as a trained classifier's have)."""
    f = features.reshape(len(features), -1).astype(np.float64)
    mu = f.mean(0)
    z = f - mu
    y = np.eye(classes)[labels] - 1.0 / classes
    gram = z.T @ z
    a = np.linalg.solve(gram + lam * np.trace(gram) / len(gram) * np.eye(len(gram)), z.T @ y)  # [F, classes]
    return a.T.astype(np.float32), (-mu @ a).astype(np.float32)


def clusters(rng, n, dim, classes, centres, mixing):
    """n samples of ``classes`` Gaussian clusters living in a low-dimensional subspace, plus
    correlated noise: (x float32 [n, dim], labels int64 [n])."""
    labels = rng.integers(classes, size=n)
    latent = centres[labels] + 0.6 * rng.standard_normal((n, centres.shape[1]))
    x = latent @ mixing + 0.3 * rng.standard_normal((n, dim)) @ np.linalg.cholesky(
        0.5 * np.eye(dim) + 0.5 * np.ones((dim, dim)) / dim).T
    return x.astype(np.float32), labels.astype(np.int64)


def cluster_source(rng, dim=32, classes=8, latent=6):
    centres = rng.standard_normal((classes, latent)) * 1.5
    mixing = rng.standard_normal((latent, dim)) / np.sqrt(latent)
    return lambda r, n: clusters(r, n, dim, classes, centres, mixing)


def gratings(rng, n, classes, size=16):
    """Photo-like images [n, 3, size, size]: a smooth random background plus an oriented grating
    whose angle depends on the class (and a little on the sample), colours correlated."""
    labels = rng.integers(classes, size=n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    freq = np.fft.fftfreq(size)
    lowpass = np.exp(-(freq[:, None] ** 2 + freq[None, :] ** 2) / (2 * 0.08 ** 2))
    imgs = np.empty((n, 3, size, size))
    for i, c in enumerate(labels):
        theta = np.pi * c / classes + rng.normal(0, 0.08)
        phase = rng.uniform(0, 2 * np.pi)
        g = np.sin(0.9 * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
        bg = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * lowpass))
        bg /= bg.std() + 1e-9
        colour = 1.0 + 0.1 * rng.standard_normal(3)
        for ch in range(3):
            imgs[i, ch] = colour[ch] * (0.8 * g + 0.7 * bg) + 0.15 * rng.standard_normal((size, size))
    return imgs.astype(np.float32), labels.astype(np.int64)


def _batches(x, batch=CALIB_BATCH):
    if isinstance(x, dict):
        n = len(next(iter(x.values())))
        return [{k: v[i:i + batch] for k, v in x.items()} for i in range(0, n, batch)]
    return [x[i:i + batch] for i in range(0, len(x), batch)]


# ---- the models -----------------------------------------------------------------------------

def outlier_channel(seed: int = SEED, factor: float = 100.0) -> FaultModel:
    """MLP 32 -> 64 -> 64 -> LayerNorm -> 64 -> 8 whose LayerNorm output has one channel with
    ``factor`` x the range of the others; fragile: {"fc3"} (see the module docstring)."""
    rng = np.random.default_rng(seed)
    source = cluster_source(rng)
    d_in, h, classes = 32, 64, 8
    c = 17                                           # the outlier channel
    probe, _ = source(np.random.default_rng(seed + 4), 256)
    w1 = he(rng, (h, d_in), d_in)
    w1, b1 = bn_fold(rng, w1, probe @ w1.T)
    t = np.maximum(probe @ w1.T + b1, 0)
    w2 = he(rng, (h, h), h)
    w2, b2 = bn_fold(rng, w2, t @ w2.T)
    gamma = rng.normal(1.0, 0.1, h).astype(np.float32)
    beta = (rng.standard_normal(h) * 0.1).astype(np.float32)
    w3, b3 = he(rng, (h, h), h), small_bias(rng, h)
    gamma_f, w3_f = gamma.copy(), w3.copy()
    gamma_f[c] *= factor                             # the outlier: 100x range in channel c ...
    beta_f = beta.copy()
    beta_f[c] *= factor
    w3_f[:, c] /= factor                             # ... which fc3 reads with 1/100 the weight

    def body(g, x, fc4=None):
        t = g.relu(g.linear(x, w1, b1, name="fc1"), name="relu1")
        t = g.linear(t, w2, b2, name="fc2")
        t = g.layer_norm(t, h, gamma_f, beta_f, eps=1e-5, name="ln")
        t = g.relu(g.linear(t, w3_f, b3, name="fc3"), name="relu3")
        return t if fc4 is None else g.linear(t, *fc4, name="fc4")

    x_train, y_train = source(np.random.default_rng(seed + 1), N_TRAIN)
    g0 = Graph("features")
    g0.output(body(g0, g0.input("x", (None, d_in))))
    fc4 = ridge(g0.run(x_train), y_train, classes)
    g = Graph("outlier_channel")
    g.output(body(g, g.input("x", (None, d_in)), fc4))
    x_cal, _ = source(np.random.default_rng(seed + 2), N_CALIB_BATCHES * CALIB_BATCH)
    x, labels = source(np.random.default_rng(seed + 3), N_EVAL)
    return FaultModel(g, _batches(x_cal), x, labels, {"fc3"},
                      f"LayerNorm channel {c} has gamma and beta x{factor:g} (fc3 reads it with weights "
                      f"/{factor:g}: the float function is the healthy net's); fc3 quantizes the "
                      "LayerNorm output per tensor: the other 63 channels get ~3 codes")


def mask_add(seed: int = SEED, pad: float = -1e4) -> FaultModel:
    """x [N, 32] and mask [N, 64] (0 / ``pad``) -> fc0 -> relu -> fc1 -> add(mask) -> gelu -> fc2
    -> relu -> fc3 (8 classes); fragile: {"mask_add", "gelu"} (see the module docstring)."""
    rng = np.random.default_rng(seed + 10)
    source = cluster_source(rng)
    d_in, h, classes = 32, 64, 8
    probe, _ = source(np.random.default_rng(seed + 14), 256)
    w0 = he(rng, (h, d_in), d_in)
    w0, b0 = bn_fold(rng, w0, probe @ w0.T)
    t = np.maximum(probe @ w0.T + b0, 0)
    w1 = he(rng, (h, h), h)
    w1, b1 = bn_fold(rng, w1, t @ w1.T)
    t = t @ w1.T + b1
    w2 = he(rng, (h, h), h)
    w2, b2 = bn_fold(rng, w2, (t * 0.5 * (1 + np.tanh(0.8 * t))) @ w2.T)      # ~GELU(t), unmasked

    def masks(r, n):
        """Hidden units past each sample's length are masked (like padded tokens)."""
        lengths = r.integers(h // 2, h + 1, n)
        return np.where(np.arange(h)[None, :] < lengths[:, None], 0.0, pad).astype(np.float32)

    def body(g, x, m, fc3=None):
        t = g.relu(g.linear(x, w0, b0, name="fc0"), name="relu0")
        t = g.linear(t, w1, b1, name="fc1")
        t = g.gelu(g.add(t, m, name="mask_add"), name="gelu")
        t = g.relu(g.linear(t, w2, b2, name="fc2"), name="relu2")
        return t if fc3 is None else g.linear(t, *fc3, name="fc3")

    def graph(name, fc3=None):
        g = Graph(name)
        g.output(body(g, g.input("x", (None, d_in)), g.input("mask", (None, h)), fc3))
        return g

    r = np.random.default_rng(seed + 11)
    x_train, y_train = source(r, N_TRAIN)
    fc3 = ridge(graph("features").run({"x": x_train, "mask": masks(r, N_TRAIN)}), y_train, classes)
    g = graph("mask_add", fc3)
    r = np.random.default_rng(seed + 12)
    x_cal, _ = source(r, N_CALIB_BATCHES * CALIB_BATCH)
    cal = {"x": x_cal, "mask": masks(r, len(x_cal))}
    r = np.random.default_rng(seed + 13)
    x, labels = source(r, N_EVAL)
    data = {"x": x, "mask": masks(r, N_EVAL)}
    return FaultModel(g, _batches(cal), data, labels, {"mask_add", "gelu"},
                      f"the int8 add of fc1's output and a 0 / {pad:g} mask has an output range of "
                      f"[{pad:g}, ~10]: a step of ~{-pad / 255:.0f}; the GELU table quantizes that "
                      "tensor too when the add alone is float")


def imbalanced_channels(seed: int = SEED, factor: float = 1000.0) -> FaultModel:
    """CNN on [N, 3, 16, 16] images, 4 classes, whose conv1 output channel 3 is ``factor`` x the
    others (conv2 reads it with weights / factor); fragile: {"conv1", "conv2"}."""
    rng = np.random.default_rng(seed + 20)
    classes, c = 4, 3
    probe, _ = gratings(np.random.default_rng(seed + 24), 64, classes)
    w1 = gabor_bank(np.random.default_rng(seed + 25), 16, 3, 5)
    w1, b1 = bn_fold(rng, w1, conv_out(probe, w1, 2))
    t = np.maximum(conv_out(probe, w1, 2) + b1[:, None, None], 0)
    w2 = he(rng, (32, 16, 3, 3), 144)
    w2, b2 = bn_fold(rng, w2, conv_out(t, w2, 1))
    t = np.maximum(conv_out(t, w2, 1) + b2[:, None, None], 0)
    t = t.reshape(t.shape[0], t.shape[1], 8, 2, 8, 2).max(axis=(3, 5))           # the 2x2 max pool
    w3 = he(rng, (32, 32, 3, 3), 288)
    w3, b3 = bn_fold(rng, w3, conv_out(t, w3, 1))
    t = np.maximum(conv_out(t, w3, 1) + b3[:, None, None], 0)
    w4 = he(rng, (32, 32, 1, 1), 32)
    w4, b4 = bn_fold(rng, w4, conv_out(t, w4, 0))
    w1f, b1f, w2f = w1.copy(), b1.copy(), w2.copy()
    w1f[c] *= factor
    b1f[c] *= factor
    w2f[:, c] /= factor

    def body(g, x, fc=None):
        t = g.relu(g.conv2d(x, w1f, b1f, padding=2, name="conv1"), name="relu1")
        t = g.relu(g.conv2d(t, w2f, b2, padding=1, name="conv2"), name="relu2")
        t = g.max_pool2d(t, 2, name="pool")
        t = g.relu(g.conv2d(t, w3, b3, padding=1, name="conv3"), name="relu3")
        t = g.relu(g.conv2d(t, w4, b4, name="conv4"), name="relu4")
        t = g.flatten(g.global_avg_pool2d(t, name="gap"), name="flatten")
        return t if fc is None else g.linear(t, *fc, name="fc")

    def graph(name, fc=None):
        g = Graph(name)
        g.output(body(g, g.input("x", (None, 3, 16, 16)), fc))
        return g

    x_train, y_train = gratings(np.random.default_rng(seed + 21), N_TRAIN // 2, classes)
    fc = ridge(graph("features").run(x_train), y_train, classes, lam=0.1)
    g = graph("imbalanced_channels", fc)
    x_cal, _ = gratings(np.random.default_rng(seed + 22), 2 * N_CALIB_BATCHES * CALIB_BATCH, classes)
    x, labels = gratings(np.random.default_rng(seed + 23), N_EVAL // 2, classes)
    return FaultModel(g, _batches(x_cal), x, labels, {"conv1", "conv2"},
                      f"conv1's output channel {c} is x{factor:g} (weights and bias; conv2 reads it "
                      f"/{factor:g}, so the float net is the balanced one): the per-tensor scale of "
                      "conv1's output leaves the other 15 channels below one code")


FAULT_MODELS = {"outlier_channel": outlier_channel, "mask_add": mask_add, "imbalanced_channels": imbalanced_channels}
