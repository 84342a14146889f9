"""Train the small float models that `eightbit demo` and the accuracy tests quantize, on
scikit-learn's bundled 8x8 digits, and write python/eightbit/data/digits.npz.

    python tools/train_digits.py          # needs scikit-learn (a dev dependency); ~1 minute

The file holds the weights of a CNN and of an MLP (PyTorch layouts), a calibration split and the
test split (pixels 0..16 as uint8; models take pixel / 16). Plain NumPy training (Adam, cross
entropy), fixed seeds: rerunning reproduces the file.
"""
from __future__ import annotations

import argparse
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[1] / "python" / "eightbit" / "data" / "digits.npz"


def im2col(x, k, pad):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.stack([xp[:, :, i:i + h, j:j + w] for i in range(k) for j in range(k)], axis=2)  # n,c,kk,h,w
    return cols.reshape(n, c * k * k, h * w)


def col2im(cols, shape, k, pad):
    n, c, h, w = shape
    cols = cols.reshape(n, c, k * k, h, w)
    xp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), cols.dtype)
    for idx in range(k * k):
        i, j = divmod(idx, k)
        xp[:, :, i:i + h, j:j + w] += cols[:, :, idx]
    return xp[:, :, pad:pad + h, pad:pad + w]


class Conv:
    def __init__(self, rng, cin, cout, k=3):
        self.k = k
        self.w = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))
        self.b = np.zeros(cout)

    def forward(self, x):
        self.shape = x.shape
        self.cols = im2col(x, self.k, self.k // 2)
        y = np.einsum("of,nfp->nop", self.w.reshape(len(self.w), -1), self.cols) + self.b[None, :, None]
        return y.reshape(x.shape[0], len(self.w), x.shape[2], x.shape[3])

    def backward(self, dy):
        n, o = dy.shape[:2]
        dy = dy.reshape(n, o, -1)
        self.dw = np.einsum("nop,nfp->of", dy, self.cols).reshape(self.w.shape)
        self.db = dy.sum(axis=(0, 2))
        return col2im(np.einsum("of,nop->nfp", self.w.reshape(o, -1), dy), self.shape, self.k, self.k // 2)


class Linear:
    def __init__(self, rng, fin, fout):
        self.w = rng.normal(0, np.sqrt(2.0 / fin), (fout, fin))
        self.b = np.zeros(fout)

    def forward(self, x):
        self.x = x
        return x @ self.w.T + self.b

    def backward(self, dy):
        self.dw = dy.T @ self.x
        self.db = dy.sum(axis=0)
        return dy @ self.w


class Relu:
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dy):
        return dy * self.mask


class MaxPool2:
    def forward(self, x):
        n, c, h, w = x.shape
        v = x.reshape(n, c, h // 2, 2, w // 2, 2)
        y = v.max(axis=(3, 5))
        self.mask = v == y[:, :, :, None, :, None]
        return y

    def backward(self, dy):
        g = self.mask * dy[:, :, :, None, :, None]
        n, c, h, _, w, _ = g.shape
        return g.reshape(n, c, 2 * h, 2 * w)


class Flatten:
    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.shape)


def train(layers, x, y, epochs, rng, lr=2e-3, batch=64):
    params = [(l, name) for l in layers for name in ("w", "b") if hasattr(l, name)]
    m = {id(l) * 2 + (n == "b"): 0 for l, n in params}
    v = dict(m)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            h = x[idx]
            for l in layers:
                h = l.forward(h)
            p = np.exp(h - h.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1
            g = p / len(idx)
            for l in reversed(layers):
                g = l.backward(g)
            step += 1
            for l, n in params:
                key = id(l) * 2 + (n == "b")
                grad = getattr(l, "d" + n)
                m[key] = 0.9 * m[key] + 0.1 * grad
                v[key] = 0.999 * v[key] + 0.001 * grad * grad
                mh, vh = m[key] / (1 - 0.9 ** step), v[key] / (1 - 0.999 ** step)
                setattr(l, n, getattr(l, n) - lr * mh / (np.sqrt(vh) + 1e-8))


def accuracy(layers, x, y):
    h = x
    for l in layers:
        h = l.forward(h)
    return float((h.argmax(axis=1) == y).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.data.astype(np.uint8)      # 0..16
    labels = digits.target.astype(np.uint8)
    rng = np.random.default_rng(20261127)
    order = rng.permutation(len(pixels))
    test, train_idx = order[:360], order[360:]
    calib = train_idx[:256]
    x_train = pixels[train_idx].reshape(-1, 1, 8, 8) / 16.0
    y_train = labels[train_idx]
    x_test = pixels[test].reshape(-1, 1, 8, 8) / 16.0

    cnn = [Conv(rng, 1, 16), Relu(), MaxPool2(), Conv(rng, 16, 32), Relu(), MaxPool2(), Flatten(),
           Linear(rng, 128, 10)]
    train(cnn, x_train, y_train, args.epochs, rng)
    mlp = [Flatten(), Linear(rng, 64, 64), Relu(), Linear(rng, 64, 32), Relu(), Linear(rng, 32, 10)]
    train(mlp, x_train, y_train, args.epochs, rng)
    print(f"float test accuracy: cnn {accuracy(cnn, x_test, labels[test]):.4f}, "
          f"mlp {accuracy(mlp, x_test, labels[test]):.4f}")

    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        cnn_conv1_w=f32(cnn[0].w), cnn_conv1_b=f32(cnn[0].b), cnn_conv2_w=f32(cnn[3].w), cnn_conv2_b=f32(cnn[3].b),
        cnn_fc_w=f32(cnn[7].w), cnn_fc_b=f32(cnn[7].b),
        mlp_fc1_w=f32(mlp[1].w), mlp_fc1_b=f32(mlp[1].b), mlp_fc2_w=f32(mlp[3].w), mlp_fc2_b=f32(mlp[3].b),
        mlp_fc3_w=f32(mlp[5].w), mlp_fc3_b=f32(mlp[5].b),
        calib_pixels=pixels[calib], test_pixels=pixels[test], test_labels=labels[test],
        test_index=test.astype(np.int16),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
