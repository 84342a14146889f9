"""Hostile .eb files and a sandbox to open them in (tests/model/test_hostile_files.py).

* ``base_models()``: small valid models (an MLP, a CNN with every int8 step, a dynamic MLP, a model
  with float islands), quantized from ``eb.Graph``s, as the plan trees the writer stores.
* ``HostileWriter`` / ``encode_tree``: the file writer of ``eightbit.model.file_format``, fed a plan
  tree that nobody validated, plus entries no honest writer makes: ``RawArray`` (an array header
  with any dtype code, dims, offset and byte size, or one that aliases another constant's bytes),
  ``RawMeta`` (verbatim metadata bytes: lying counts, unknown tags, bad UTF-8) and ``RawDict``
  (duplicate or non-string keys). CRCs are always right, so the reader sees every lie.
* ``MUTATIONS`` (``m_*``, applied with ``apply``): semantically hostile changes of a plan tree
  (shapes, scales, zero points, names, ops, attributes, the executor's ``lowered`` records,
  constants, aliasing, nesting, counts, geometry blow-ups), their choices drawn by hypothesis
  (``Draw``); ``repair_shapes`` re-derives declared shapes so geometry changes get past the shape
  check; ``mutate_bytes``: bit flips, int64 overwrites and header lies, CRCs recomputed.
* ``many_big_tensors_plan``, ``aliased_entries_file``, ``mlp_plan``: files that ask for absurd
  memory (a 2^40-byte arena per sample, 4096 entries on the same MiB) and a ~100 MB model.
* ``Sandbox``: one child Python process that opens files with ``eb.load`` and runs them, under
  an address-space cap (RLIMIT_AS) and a timeout, restarted after it dies, so that a crash is a
  test failure, not the end of pytest. ``verdict`` says what outcome is allowed (the policy).

Reproduce a saved case:  python tests/model/_hostile.py /tmp/hostile_repro/<case>.eb
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPRO_DIR = Path(os.environ.get("EIGHTBIT_HOSTILE_REPRO", "/tmp/hostile_repro"))
GiB, MiB = 1 << 30, 1 << 20
# Address space the child may grow by after importing eightbit and running a tiny model (its
# threads, their stacks and malloc arenas are then in place): a cap relative to the child's own
# start-up, so that it means the same on a 2-core box, a 64-core box and under AddressSanitizer
# (whose shadow memory reserves terabytes of address space before Python starts).
AS_SLACK = int(os.environ.get("EIGHTBIT_HOSTILE_AS_SLACK", 2 * GiB))
CASE_TIMEOUT = float(os.environ.get("EIGHTBIT_HOSTILE_TIMEOUT", 30))
MAX_FEED_BYTES = 256 * MiB   # larger declared inputs are loaded but not run

# ---- values a hostile file puts where numbers belong ------------------------------------------

INTS = [0, 1, 2, 3, -1, -2, 7, 64, 255, 256, 2**15, 2**20, 2**20 + 1, 2**24, 2**28, 2**31 - 1, 2**31, 2**32,
        2**32 + 1, 2**40, 2**62, 2**63 - 1, -2**31, -2**62, -2**63]
FLOATS = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -1.0, 5e-324, 1e-45, 1e-38, 1e-20, 3.4e38, 1e39,
          1e308, 1.0, 0.5, 255.0]
ZERO_POINTS = [-129, -128, 127, 128, 255, 256, -1, 2**31, 2**63 - 1, -2**63, 0]
DTYPE_NAMES = ["uint8", "int8", "float32", "int32", "float64", "bool", "", "uint8 ", "UINT8", "int4"]
OP_NAMES = ["quantize", "dequantize", "conv", "linear", "add", "mul", "max_pool", "avg_pool", "global_avg_pool",
            "concat", "lut", "reshape", "softmax", "float", "dynamic_linear", "conv3d", "", "Conv", "gemm",
            "quantize\0", "x" * 1000]
FLOAT_NODE_OPS = ["conv2d", "linear", "matmul", "bmm", "relu", "clip", "gelu", "softmax", "layer_norm", "pad",
                  "transpose", "reshape", "flatten", "concat", "max_pool2d", "avg_pool2d", "global_avg_pool2d",
                  "batch_norm2d", "add", "div", "identity", "dropout", "no_such_op"]


def _deep(depth: int, leaf=1):
    v = leaf
    for _ in range(depth):
        v = [v]
    return v


WEIRD = [None, True, False, 0, -1, 2**62, 1.5, float("nan"), "", "x", [], [[]], {}, {"a": 1}, [1.5, 2.5],
         [None, None], ["1", "1"], [True, True], [2**62, 2**62], [0, 0, 0, 0, 0, 0, 0, 0, 0], _deep(15), _deep(17),
         list(range(10000))]


@dataclass
class RawArray:
    """An array entry written verbatim. ``target``: an ndarray of the tree whose data offset (plus
    ``delta``) this entry points at (aliasing); otherwise ``offset``. ``nbytes`` None: the product
    of ``dims`` times the item size, modulo 2^64 (what a reader with 64-bit overflow computes);
    ``ndim`` None: len(dims)."""

    code: int
    dims: tuple
    offset: int = 0
    target: object = None
    delta: int = 0
    nbytes: int | None = None
    ndim: int | None = None

    def __repr__(self):
        where = f"alias+{self.delta}" if self.target is not None else f"@{self.offset}"
        extra = "" if self.nbytes is None else f", nbytes={self.nbytes}"
        extra += "" if self.ndim is None else f", ndim={self.ndim}"
        return f"RawArray(code={self.code}, dims={list(self.dims)}, {where}{extra})"


@dataclass
class RawMeta:
    """Metadata bytes written verbatim in place of a value."""

    data: bytes

    def __repr__(self):
        return f"RawMeta({self.data[:24].hex()}{'...' if len(self.data) > 24 else ''})"


@dataclass
class RawDict:
    """A dict written from (key, value) pairs: duplicate keys, non-string keys."""

    pairs: list

    def __repr__(self):
        return f"RawDict({self.pairs!r})"[:200]


ITEMSIZE = {1: 1, 2: 1, 3: 4, 4: 4}


def _ff():
    from eightbit.model import file_format
    return file_format


class HostileWriter:
    """file_format._Writer plus the raw entries above; records where each array's bytes went."""

    def __init__(self):
        ff = _ff()
        self._w = ff._Writer()
        self._w.value = self.value  # the base writer's recursion comes back here
        self.offsets = {}           # id(ndarray) -> (offset, the array: keeps the id alive)

    @property
    def meta(self):
        return self._w.meta

    @property
    def data(self):
        return self._w.data

    def _append(self, a: np.ndarray) -> int:
        b = np.ascontiguousarray(a)
        self.data.extend(b"\0" * (-len(self.data) % 64))
        off = len(self.data)
        self.data.extend(b.astype(b.dtype.newbyteorder("<"), copy=False).tobytes())
        return off

    def place(self, a: np.ndarray) -> int:
        """The data offset of ``a``'s bytes (its first occurrence), writing them if not yet there."""
        if id(a) not in self.offsets:
            self.offsets[id(a)] = (self._append(a), a)
        return self.offsets[id(a)][0]

    def value(self, v) -> None:
        ff = _ff()
        if isinstance(v, RawArray):
            off = v.offset if v.target is None else self.place(v.target) + v.delta
            n = v.nbytes if v.nbytes is not None else math.prod(v.dims) * ITEMSIZE.get(v.code, 1)
            ndim = len(v.dims) if v.ndim is None else v.ndim
            self.meta.extend(bytes([ff.T_ARRAY, v.code & 255, ndim & 255]))
            self.meta.extend(b"".join(struct.pack("<Q", d % 2**64) for d in v.dims))
            self.meta.extend(struct.pack("<QQ", off % 2**64, n % 2**64))
        elif isinstance(v, RawMeta):
            self.meta.extend(v.data)
        elif isinstance(v, RawDict):
            self.meta.extend(bytes([ff.T_DICT]) + struct.pack("<I", len(v.pairs)))
            for key, item in v.pairs:
                self.value(key)
                self.value(item)
        elif isinstance(v, np.ndarray) and v.dtype in ff.DTYPE_CODES and v.ndim <= ff.MAX_NDIM:
            off = self._append(v)  # every occurrence its own bytes, as the honest writer does
            self.offsets.setdefault(id(v), (off, v))
            self.meta.extend(bytes([ff.T_ARRAY, ff.DTYPE_CODES[v.dtype], v.ndim]))
            self.meta.extend(struct.pack(f"<{v.ndim}q", *v.shape) + struct.pack("<QQ", off, v.nbytes))
        elif isinstance(v, np.ndarray):  # a dtype or rank the format has no code for: as dims + code 255
            self.value(RawArray(255, v.shape, target=np.ascontiguousarray(v).view(np.uint8).reshape(-1)))
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            self.meta.extend(bytes([ff.T_INT]) + struct.pack("<Q", int(v) % 2**64))
        elif isinstance(v, dict):
            self.value(RawDict(list(v.items())))
        else:
            ff._Writer.value(self._w, v)


def pack_file(meta: bytes, data: bytes) -> bytes:
    """header + metadata + padding + data, both CRCs right (file_format.encode's layout)."""
    ff = _ff()
    meta_offset = ff.HEADER.size
    data_offset = meta_offset + len(meta) + (-(meta_offset + len(meta)) % ff.ALIGN)
    size = data_offset + len(data)
    header = ff.HEADER.pack(ff.MAGIC, *ff.VERSION, ff.HEADER.size, size, meta_offset, len(meta), data_offset,
                            len(data), zlib.crc32(meta), zlib.crc32(data))
    return header + bytes(meta) + b"\0" * (data_offset - meta_offset - len(meta)) + bytes(data)


def encode_tree(tree) -> bytes:
    """A plan tree (file_format._plan_tree's form, or anything else) as a CRC-valid .eb file."""
    w = HostileWriter()
    w.value(tree)
    return pack_file(bytes(w.meta), bytes(w.data))


def reseal(buf) -> bytes:
    """buf with both CRCs recomputed from the sections its header names (where they lie in the file)."""
    ff = _ff()
    buf = bytearray(buf)
    if len(buf) < ff.HEADER.size:
        return bytes(buf)
    fields = list(ff.HEADER.unpack(bytes(buf[:ff.HEADER.size])))
    moff, msize, doff, dsize = fields[5:9]
    fields[9] = zlib.crc32(bytes(buf[moff:moff + msize])) if moff + msize <= len(buf) else fields[9]
    fields[10] = zlib.crc32(bytes(buf[doff:doff + dsize])) if doff + dsize <= len(buf) else fields[10]
    buf[:ff.HEADER.size] = ff.HEADER.pack(*fields)
    return bytes(buf)


def plan_tree(plan) -> dict:
    return _ff()._plan_tree(plan, "eightbit hostile")


# ---- the valid starting points -----------------------------------------------------------------

def _quantize(g, calib, **kw):
    import eightbit as eb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return eb.quantize(g, calib, **kw)


def base_models() -> dict:
    """name -> (plan tree, {input name: shape without the batch}) of small valid models."""
    import eightbit as eb

    rng = np.random.default_rng(20261212)
    w = lambda *s: rng.normal(0, 0.4, s).astype(np.float32)  # noqa: E731
    out = {}

    g = eb.Graph()
    x = g.input("x", (None, 16))
    h = g.relu(g.linear(x, w(32, 16), w(32)))
    g.output(g.linear(h, w(8, 32), w(8)))
    out["mlp"] = (_quantize(g, [rng.uniform(-1, 1, (8, 16)).astype(np.float32)]), {"x": (16,)})
    out["mlp_fixed_int8"] = (_quantize(g, [rng.uniform(-1, 1, (8, 16)).astype(np.float32)], requant="fixed",
                                       activation_dtype="int8"), {"x": (16,)})
    out["dynamic_mlp"] = (_quantize(g, None, dynamic=True), {"x": (16,)})

    g = eb.Graph()
    x = g.input("x", (None, 3, 8, 8))
    h = g.conv2d(x, w(8, 3, 3, 3), w(8), padding=1)
    h = g.relu6(g.batch_norm2d(h, w(8), np.abs(w(8)) + 0.5, w(8), w(8)))
    r = g.relu(g.add(g.conv2d(h, w(8, 8, 3, 3), padding=1), h))
    c = g.concat([g.sigmoid(r), g.hardswish(h)], axis=1)
    c = g.leaky_relu(g.avg_pool2d(c, 2), 0.1)
    c = g.max_pool2d(g.conv2d(c, w(16, 1, 3, 3), groups=16, padding=1), 2)
    m = g.mul(c, c)
    p = g.flatten(g.global_avg_pool2d(m))
    g.output(g.softmax(g.linear(p, w(5, 16), w(5)), axis=1))
    out["cnn"] = (_quantize(g, [rng.uniform(-1, 1, (8, 3, 8, 8)).astype(np.float32)]), {"x": (3, 8, 8)})

    g = eb.Graph()
    x = g.input("x", (None, 3, 6, 6))
    h = g.conv2d(x, w(8, 3, 3, 3), padding=1, name="conv")
    h = g.pad(g.transpose(g.gelu(h), (0, 2, 3, 1), name="t"), (0, 0, 1, 2), mode="replicate", name="p")
    h = g.layer_norm(h, (8,), rng.standard_normal(8).astype(np.float32), name="ln")
    h = g.flatten(h)
    g.output(g.linear(h, w(4, h.shape[1]), w(4)))
    out["float_islands"] = (_quantize(g, [rng.uniform(-1, 1, (8, 3, 6, 6)).astype(np.float32)],
                                      exclude=["conv", "p", "ln"]), {"x": (3, 6, 6)})

    # low-bit layers: a 3-bit convolution (packed codes on the int8 kernels), binary convolution
    # and linear layers (sign bits, thresholds, code counts), a 2-bit block-quantized linear layer
    # (codes packed at 2 bits, per-block scales)
    g = eb.Graph()
    x = g.input("x", (None, 3, 8, 8))
    h = g.relu(g.conv2d(x, w(8, 3, 3, 3), w(8), padding=1, name="c3bit"))
    h = g.relu(g.conv2d(h, w(8, 8, 3, 3), w(8), padding=1, name="bconv"))
    h = g.relu(g.linear(g.flatten(h), w(16, 512), w(16), name="bfc"))
    h = g.relu(g.linear(h, w(32, 16), w(32), name="fc"))
    g.output(g.linear(h, w(4, 32), w(4), name="block2"))
    out["lowbit"] = (_quantize(g, [rng.uniform(-1, 1, (8, 3, 8, 8)).astype(np.float32)], binary=["bconv", "bfc"],
                               weight_bits={"c3bit": 3, "block2": 2}, block_size=16), {"x": (3, 8, 8)})

    # a transformer encoder: per-token dynamic linears with outlier columns, the masked softmax,
    # layer norms, GELU, the heads' transposes and batched products
    from eightbit.models import bert_encoder, synthetic_bert_weights, synthetic_encoder_inputs
    bw = synthetic_bert_weights(layers=1, hidden=64, heads=2, ffn=128, seed=3, vocab=50, max_positions=8)
    g = bert_encoder(bw, layers=1, heads=2, seq_len=4, hidden=64, ffn=128)
    calib = dict(zip(("x", "mask"), synthetic_encoder_inputs(bw, 4, 4, seed=4, min_len=2)))
    out["encoder"] = (_quantize(g, [calib]), {"x": (4, 64), "mask": (1, 1, 4)})

    # the same encoder for every length 2..4 (a free sequence dimension: shapes hold -2, the file
    # its range)
    from eightbit.graph.ir import SeqLen
    from eightbit.graph.sequence import unify
    g3 = bert_encoder(bw, layers=1, heads=2, seq_len=3, hidden=64, ffn=128)
    g = unify(g, g3, SeqLen(2, 4))
    out["encoder_free_sequence"] = (_quantize(g, [calib], dynamic=True), {"x": (4, 64), "mask": (1, 1, 4)})

    return {k: (plan_tree(qm.plan), feeds) for k, (qm, feeds) in out.items()}


# ---- mutations ---------------------------------------------------------------------------------

class Draw:
    """The choices a mutation makes, from hypothesis' ``data`` (st.data())."""

    def __init__(self, data):
        from hypothesis import strategies as st
        self.data, self.st = data, st

    def choice(self, seq):
        seq = list(seq)
        return seq[self.data.draw(self.st.integers(0, len(seq) - 1))]

    def index(self, n: int) -> int:
        return self.data.draw(self.st.integers(0, n - 1))

    def int(self, lo, hi) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def bool(self) -> bool:
        return self.data.draw(self.st.booleans())

    def any_int(self) -> int:
        return self.choice(INTS) if self.bool() else self.int(-(2**63), 2**63 - 1)


def _steps(tree):
    s = tree.get("steps")
    return s if isinstance(s, list) else []


def _tensors(tree):
    t = tree.get("tensors")
    return t if isinstance(t, list) else []


def _hostile_seq(d: Draw, v):
    """A hostile variant of a sequence attribute (strides, pads, kernel, shape, perm...)."""
    kind = d.choice(["small", "small", "element", "length", "weird", "zeros", "huge"])
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    if kind == "small" and v:  # plausible values that do not fit the rest of the plan
        v[d.index(len(v))] = d.int(-1, 9)
    elif kind == "element" and v:
        v[d.index(len(v))] = d.any_int() if d.bool() else d.choice(WEIRD[:8])
    elif kind == "length":
        v = v[:-1] if v and d.bool() else v + [d.choice(INTS)] * d.int(1, 4)
    elif kind == "zeros":
        v = [0] * len(v)
    elif kind == "huge":
        v = [d.choice([2**20, 2**31, 2**62, -2**62])] * len(v)
    else:
        return d.choice(WEIRD)
    return tuple(v)


ACTIVATIONS = [None, "relu", "relu6", "relu7", ("clip", float("nan"), 1.0), ("clip", 5.0, -5.0),
               ("clip", float("-inf"), float("inf")), ("clip", 1e39, -1e39), ("clip",), ("clip", "a", 1.0),
               ("clip", 0, 6, 7), 3, ("clip", 0.0, 6.0)]
ATTR_KEYS = ["strides", "pads", "dilations", "group", "kernel", "ceil_mode", "count_include_pad", "axis", "shape",
             "activation", "requant", "granularity", "function", "attrs", "op"]


def _hostile_attr(d: Draw, key, v):
    if key == "activation":
        return d.choice(ACTIVATIONS + WEIRD[:6])
    if key == "requant":
        return d.choice(["fixed", "float", "double", None, 1, ""])
    if key == "granularity":
        return d.choice(["row", "tensor", "channel", None])
    if key in ("group", "axis", "ceil_mode", "count_include_pad"):
        return d.any_int() if d.bool() else d.choice(WEIRD)
    if key == "op":
        return d.choice(FLOAT_NODE_OPS + WEIRD[:4])
    if isinstance(v, (list, tuple)) or key in ("strides", "pads", "dilations", "kernel", "shape"):
        return _hostile_seq(d, v if v is not None else (1, 1))
    if isinstance(v, float):
        return d.choice(FLOATS)
    if isinstance(v, int) and not isinstance(v, bool):
        return d.any_int()
    return d.choice(WEIRD)


def m_tensor_dim(tree, d):
    ts = _tensors(tree)
    if not ts:
        return None
    i = d.index(len(ts))
    t = ts[i]
    if not isinstance(t, dict) or not isinstance(t.get("shape"), (list, tuple)):
        return None
    shape = list(t["shape"])
    kind = d.choice(["set", "append", "drop", "batch", "minus_one"])
    if kind == "set" and shape:
        shape[d.index(len(shape))] = d.choice(INTS)
    elif kind == "append":
        shape += [d.choice([1, 2, 0, 2**20, 2**31])] * d.int(1, 6)
    elif kind == "drop" and shape:
        del shape[d.index(len(shape))]
    elif kind == "batch" and shape:
        shape[0] = d.choice([0, 1, 2, 3, 7, 2**20, 2**31, -2])
    elif kind == "minus_one" and len(shape) > 1:
        shape[1 + d.index(len(shape) - 1)] = d.choice([-1, -2, -3])  # -2: the sequence dimension
    else:
        return None
    t["shape"] = shape
    return f"tensors[{i}] {t.get('name')!r}.shape = {shape}"


def m_tensor_field(tree, d):
    ts = _tensors(tree)
    if not ts:
        return None
    i = d.index(len(ts))
    t = ts[i]
    if not isinstance(t, dict):
        return None
    key = d.choice(["name", "dtype", "shape", "scale", "zero_point", "delete", "unknown"])
    if key == "scale":
        v = d.choice(FLOATS + [None, 1, "1", [1.0]])
    elif key == "zero_point":
        v = d.choice(ZERO_POINTS + [None, 1.5, True, "0"])
    elif key == "dtype":
        v = d.choice(DTYPE_NAMES + [None, 1])
    elif key == "name":
        others = [o.get("name") for o in ts if isinstance(o, dict)]
        v = d.choice(others + ["", "\0", "x" * 100000, None, 7])
    elif key == "shape":
        v = d.choice([None, 3, "3", [], [-1], [1.5, 2.0], [True, True], [None, 4], [-1, -1], [0, 0], _deep(16),
                      [-1] + [2] * 40, [-1, 2**31, 2**31], [-1, 2**62, 4], [-1, 2**32, 2**32]])
    elif key == "delete":
        k = d.choice(list(t))
        del t[k]
        return f"tensors[{i}]: deleted {k!r}"
    else:
        t["extra"] = d.choice(WEIRD)
        return f"tensors[{i}].extra = {t['extra']!r}"[:300]
    t[key] = v
    return f"tensors[{i}].{key} = {v!r}"[:300]


def m_tensor_list(tree, d):
    ts = _tensors(tree)
    if not ts:
        return None
    kind = d.choice(["delete", "duplicate", "swap", "bogus", "weird_entry", "many"])
    i = d.index(len(ts))
    if kind == "delete":
        del ts[i]
    elif kind == "duplicate":
        ts.insert(d.index(len(ts)), copy.deepcopy(ts[i]))
    elif kind == "swap":
        j = d.index(len(ts))
        ts[i], ts[j] = ts[j], ts[i]
    elif kind == "bogus":
        ts.append({"name": d.choice(["ghost", ts[i].get("name") if isinstance(ts[i], dict) else "x"]),
                   "dtype": d.choice(DTYPE_NAMES[:3]), "shape": [-1, d.choice(INTS)], "scale": d.choice(FLOATS),
                   "zero_point": d.choice(ZERO_POINTS)})
    elif kind == "weird_entry":
        ts[i] = d.choice(WEIRD)
    else:
        ts.extend({"name": f"pad{k}", "dtype": "float32", "shape": [-1, 2**26], "scale": None, "zero_point": None}
                  for k in range(d.choice([100, 5000])))
    return f"tensors: {kind} at {i}"


def m_step_io(tree, d):
    ss = _steps(tree)
    if not ss:
        return None
    i = d.index(len(ss))
    s = ss[i]
    if not isinstance(s, dict):
        return None
    names = [t.get("name") for t in _tensors(tree) if isinstance(t, dict)]
    later = [x.get("output") for x in ss[i:] if isinstance(x, dict)]
    ins = list(s.get("inputs", ())) if isinstance(s.get("inputs"), (list, tuple)) else []
    kind = d.choice(["input", "input", "output", "no_inputs", "extra_inputs", "many_inputs", "weird"])
    if kind == "input" and ins:
        ins[d.index(len(ins))] = d.choice(names + later + ["nope", "", 3, None])
        s["inputs"] = ins
    elif kind == "output":
        s["output"] = d.choice(names + ["nope", "", 3, None] + list(tree.get("inputs", ())))
    elif kind == "no_inputs":
        s["inputs"] = []
    elif kind == "extra_inputs" and ins:
        s["inputs"] = ins + [d.choice(ins + names)] * d.int(1, 3)
    elif kind == "many_inputs" and ins:
        s["inputs"] = ins * d.choice([64, 5000])
    else:
        s[d.choice(["inputs", "output"])] = d.choice(WEIRD)
    return f"steps[{i}] ({s.get('op')}): inputs={s.get('inputs')!r} output={s.get('output')!r}"[:300]


def m_step_op(tree, d):
    ss = _steps(tree)
    if not ss or not isinstance(ss[0], dict):
        return None
    i = d.index(len(ss))
    if not isinstance(ss[i], dict):
        return None
    ss[i]["op"] = d.choice(OP_NAMES + [None, 1, ["conv"]])
    return f"steps[{i}].op = {ss[i]['op']!r}"[:200]


def m_attr(tree, d):
    ss = [s for s in _steps(tree) if isinstance(s, dict) and isinstance(s.get("attrs"), dict)]
    if not ss:
        return None
    s = d.choice(ss)
    attrs = s["attrs"]
    where = "attrs"
    if s.get("op") in ("float", "lut") and isinstance(attrs.get("attrs"), dict) and d.bool():
        attrs, where = attrs["attrs"], "attrs.attrs"  # the float node's (or the tabulated function's) own
    keys = list(attrs) + ATTR_KEYS if where == "attrs" else list(attrs) + ["pads", "perm", "eps", "axis", "mode"]
    key = d.choice(keys)
    if d.int(0, 9) == 0:
        attrs.pop(key, None)
        return f"step {s.get('op')} from {s.get('source')!r}: {where} deleted {key!r}"
    v = _hostile_attr(d, key, attrs.get(key))
    attrs[key] = v
    return f"step {s.get('op')} from {s.get('source')!r}: {where}[{key!r}] = {v!r}"[:300]


def _const_steps(tree):
    return [s for s in _steps(tree) if isinstance(s, dict) and isinstance(s.get("consts"), dict) and s["consts"]]


def _all_arrays(tree):
    return [(s, k) for s in _const_steps(tree) for k, v in s["consts"].items() if isinstance(v, np.ndarray)]


def _hostile_array(d: Draw, a: np.ndarray) -> tuple:
    """(a hostile variant of the array a, what changed)."""
    a = a.copy()
    kind = d.choice(["special", "dtype", "shape", "empty", "transpose", "extreme"])
    if kind == "special" and a.dtype.kind == "f" and a.size:
        with np.errstate(over="ignore"):  # 1e39 and 1e308 become float32 infinity: meant
            a.reshape(-1)[d.index(a.size)] = d.choice(FLOATS)
    elif kind == "dtype":
        a = a.astype(d.choice([np.int8, np.uint8, np.int32, np.float32]))
    elif kind == "shape" and a.size:
        a = a.reshape(-1)
        a = a[:d.int(0, a.size - 1)] if d.bool() else np.concatenate([a, a[:d.int(1, a.size)]])
        if d.bool():
            a = a.reshape((1,) * d.int(1, 6) + a.shape)
    elif kind == "empty" and a.ndim:
        a = np.zeros((0,) + a.shape[1:], a.dtype) if d.bool() else np.zeros(a.shape[:-1] + (0,), a.dtype)
    elif kind == "transpose" and a.ndim >= 2:
        a = np.ascontiguousarray(a.T)
    elif kind == "extreme" and a.size:
        info = np.iinfo(a.dtype) if a.dtype.kind in "iu" else np.finfo(a.dtype)
        a[...] = d.choice([info.min, info.max, 0])
        if a.dtype.kind == "f" and d.bool():
            with np.errstate(over="ignore"):
                a[...] = d.choice(FLOATS)
    else:
        return a, "unchanged"
    return a, f"{kind} -> {a.dtype} {a.shape}"


def m_const_values(tree, d):
    arrays = _all_arrays(tree)
    if not arrays:
        return None
    s, k = d.choice(arrays)
    s["consts"][k], what = _hostile_array(d, s["consts"][k])
    return f"step {s.get('op')} from {s.get('source')!r}: consts[{k!r}] {what}"


LOWERED_KINDS = ["conv", "quantize", "dequantize", "global_avg_pool", "reshape", "binary", "max_pool", "avg_pool",
                 "concat", "lut", "softmax", "dynamic_linear", "float_conv", "float_linear", "float_unary",
                 "float_affine", "float_binary", "float_bmm", "float_pool", "float_concat", "float_transpose",
                 "float_pad", "float_layer_norm", "embedding", "additive_mask", "padded_positions", "float_select",
                 "host", "binary_conv", "binary_linear", "blockwise_linear", "", "nope", None, 3]


def m_lowered(tree, d):
    """The executor's own record of a step (``lowered``: strides, pads, clamp bounds, multipliers,
    tables, kinds): what the C++ builder reads, so every field of it is hostile ground."""
    ss = [s for s in _steps(tree) if isinstance(s, dict) and isinstance(s.get("lowered"), dict)]
    if not ss:
        return None
    s = d.choice(ss)
    rec = s["lowered"]
    kind = d.choice(["value", "value", "value", "delete", "kind", "weird", "extra", "swap"])
    where = f"step {s.get('op')} from {s.get('source')!r}: lowered"
    if kind == "swap":  # another step's record: every field well-formed, none of them this step's
        other = d.choice(ss)
        s["lowered"], other["lowered"] = other["lowered"], s["lowered"]
        return f"{where} swapped with that of step {other.get('op')} from {other.get('source')!r}"
    if kind == "kind":
        rec["kind"] = d.choice(LOWERED_KINDS)
        return f"{where}['kind'] = {rec['kind']!r}"
    if kind == "delete" and rec:
        k = d.choice(list(rec))
        del rec[k]
        return f"{where}: deleted {k!r}"
    if kind == "weird":
        s["lowered"] = d.choice(WEIRD)
        return f"{where} = {s['lowered']!r}"[:300]
    if kind == "extra":
        rec[d.choice(["w", "weight", "table", "tables", "multiplier"])] = d.choice(
            [np.zeros(d.choice([0, 1, 255, 257]), d.choice([np.int8, np.uint8, np.int32, np.float32]))] + WEIRD[:6])
        return f"{where}: an extra entry"
    if not rec:
        return None
    k = d.choice(list(rec))
    v = rec[k]
    if isinstance(v, np.ndarray):
        rec[k], what = _hostile_array(d, v)
        return f"{where}[{k!r}] {what}"
    if isinstance(v, (list, tuple)) and v and any(isinstance(x, np.ndarray) for x in v):  # concat tables
        v = list(v)
        i = d.index(len(v))
        v[i] = _hostile_array(d, v[i])[0] if isinstance(v[i], np.ndarray) and d.bool() else d.choice(
            [None, np.zeros(256, np.uint8), np.zeros(3, np.uint8), np.zeros(256, np.int32), 1])
        rec[k] = v if d.int(0, 4) else v[:-1]
        return f"{where}[{k!r}] entry {i} changed"
    if isinstance(v, bool):
        rec[k] = d.choice([not v, 2, None, "x"])
    elif isinstance(v, float):
        rec[k] = d.choice(FLOATS)
    else:
        rec[k] = _hostile_attr(d, k, v)
    return f"{where}[{k!r}] = {rec[k]!r}"[:300]


def m_const_geometry(tree, d):
    """Weights that do not fit the input: other in-channels, kernels larger than the input, a group
    that does not divide; with the declared output shapes repaired afterwards this reaches the kernels."""
    ss = [s for s in _const_steps(tree) if s.get("op") in ("conv", "linear", "dynamic_linear")
          and isinstance(s["consts"].get("w"), np.ndarray)]
    if not ss:
        return None
    s = d.choice(ss)
    w = s["consts"]["w"]
    shape = list(w.shape)
    axis = d.index(len(shape))
    shape[axis] = d.choice([1, 2, 3, 9, 33, 200, max(1, shape[axis] - 1), shape[axis] + 1])
    if math.prod(shape) > 1 << 24:
        return None
    rng = np.random.default_rng(d.int(0, 2**31))
    s["consts"]["w"] = rng.integers(-128, 128, shape, dtype=np.int8)
    if axis == 0 and d.bool():  # keep w_scale / bias matching the new output channels
        s["consts"]["w_scale"] = np.full(shape[0], 0.01, np.float32)
        s["consts"]["bias"] = np.zeros(shape[0], s["consts"]["bias"].dtype)
    return f"step {s.get('op')} from {s.get('source')!r}: w {list(w.shape)} -> {shape}"


def m_const_raw(tree, d):
    """An array header that lies: dtype code, ndim, dims (negative, zero, overflowing the byte
    count to a small number), offset (unaligned, outside, huge) or byte size."""
    steps = _const_steps(tree) or [s for s in _steps(tree) if isinstance(s, dict)]
    if not steps:
        return None
    s = d.choice(steps)
    consts = s.get("consts") if isinstance(s.get("consts"), dict) else {}
    key = d.choice(list(consts) + ["extra"]) if consts else "extra"
    old = consts.get(key)
    code = d.choice([1, 2, 3, 4]) if d.int(0, 4) else d.choice([0, 5, 255])
    kind = d.choice(["dims", "overflow", "offset", "nbytes", "ndim"])
    dims = tuple(old.shape) if isinstance(old, np.ndarray) else (4,)
    ref = old if isinstance(old, np.ndarray) else None
    r = RawArray(code, dims, target=ref, offset=0)
    if kind == "dims":
        dims = list(dims) or [1]
        dims[d.index(len(dims))] = d.choice(INTS)
        r.dims = tuple(dims)
    elif kind == "overflow":  # product * item size == 2^64 (or 2^64 + small): wraps to a small count
        r.dims = d.choice([(2**32, 2**32), (2**62, 4), (2**61, 8), (2**63, 2), (2**33, 2**31), (3, 2**62),
                           (2**32 + 1, 2**32 - 1), (2**21, 2**21, 2**22), (1, 2**63, 2)])
        r.code = d.choice([1, 2, 3, 4])
    elif kind == "offset":
        r.target = None
        r.offset = d.choice([1, 63, 65, 2**20, 2**32, 2**63, 2**64 - 64, 2**64 - 1])
    elif kind == "nbytes":
        r.nbytes = d.choice([0, 1, 2**63, 2**64 - 1, 64])
    else:
        r.ndim = d.choice([0, 9, 255]) if d.bool() else None
        r.dims = tuple(dims) + (1,) * d.choice([6, 8, 9])
    consts[key] = r
    if not isinstance(s.get("consts"), dict):
        s["consts"] = consts
    return f"step {s.get('op')} from {s.get('source')!r}: consts[{key!r}] = {r!r}"


def m_const_alias(tree, d):
    """Two entries on the same bytes, or overlapping ranges: a constant re-pointed at another's
    data (its own dtype and shape, or the other's), or many unknown entries all on one array."""
    arrays = _all_arrays(tree)
    if len(arrays) < 1:
        return None
    s, k = d.choice(arrays)
    s2, k2 = d.choice(arrays)
    src = s2["consts"][k2]
    mine = s["consts"][k]
    kind = d.choice(["same", "overlap", "view_as_other", "many"])
    code = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int32): 3, np.dtype(np.float32): 4}
    if kind == "same":
        r = RawArray(code[mine.dtype], mine.shape, target=src)
    elif kind == "overlap":
        r = RawArray(code[mine.dtype], mine.shape, target=src, delta=64 * d.int(0, 4))
    elif kind == "view_as_other":
        r = RawArray(code[src.dtype], src.shape, target=src)
    else:
        n = d.choice([64, 1000])
        for j in range(n):
            s["consts"][f"alias{j}"] = RawArray(code[src.dtype], src.shape, target=src)
        return f"step {s.get('op')} from {s.get('source')!r}: {n} extra consts aliasing {k2!r} {src.shape}"
    s["consts"][k] = r
    return f"step {s.get('op')} from {s.get('source')!r}: consts[{k!r}] = {r!r} on {k2!r} of {s2.get('source')!r}"


def m_const_list(tree, d):
    ss = _const_steps(tree)
    if not ss:
        return None
    s = d.choice(ss)
    kind = d.choice(["delete", "weird", "not_dict"])
    if kind == "delete":
        k = d.choice(list(s["consts"]))
        del s["consts"][k]
        return f"step {s.get('op')} from {s.get('source')!r}: deleted const {k!r}"
    if kind == "weird":
        k = d.choice(list(s["consts"]))
        s["consts"][k] = d.choice(WEIRD)
        return f"step {s.get('op')} from {s.get('source')!r}: consts[{k!r}] = {s['consts'][k]!r}"[:300]
    s["consts"] = d.choice(WEIRD)
    return f"step {s.get('op')} from {s.get('source')!r}: consts = {s['consts']!r}"[:300]


def m_step_list(tree, d):
    ss = _steps(tree)
    if not ss:
        return None
    kind = d.choice(["delete", "duplicate", "swap", "reverse", "weird_entry", "drop_field", "repeat_many"])
    i = d.index(len(ss))
    if kind == "delete":
        del ss[i]
    elif kind == "duplicate":
        ss.insert(d.index(len(ss)), copy.deepcopy(ss[i]))
    elif kind == "swap":
        j = d.index(len(ss))
        ss[i], ss[j] = ss[j], ss[i]
    elif kind == "reverse":
        ss.reverse()
    elif kind == "weird_entry":
        ss[i] = d.choice(WEIRD)
    elif kind == "drop_field" and isinstance(ss[i], dict):
        k = d.choice(list(ss[i]))
        del ss[i][k]
        return f"steps[{i}]: deleted {k!r}"
    elif kind == "repeat_many":  # the same step many times: outputs written twice
        ss[i + 1:i + 1] = [ss[i]] * d.choice([10, 3000])
    return f"steps: {kind} at {i}"


def m_io_lists(tree, d):
    key = d.choice(["inputs", "outputs"])
    names = [t.get("name") for t in _tensors(tree) if isinstance(t, dict)]
    cur = list(tree.get(key, ())) if isinstance(tree.get(key), (list, tuple)) else []
    kind = d.choice(["replace", "append", "empty", "duplicate", "weird", "many"])
    if kind == "replace" and cur:
        cur[d.index(len(cur))] = d.choice(names + ["nope", "", 0])
    elif kind == "append":
        cur.append(d.choice(names + ["nope"]))
    elif kind == "empty":
        cur = []
    elif kind == "duplicate" and cur:
        cur = cur * 2
    elif kind == "many":
        cur = (cur or ["x"]) * d.choice([100, 10000])
    else:
        tree[key] = d.choice(WEIRD)
        return f"{key} = {tree[key]!r}"[:200]
    tree[key] = cur
    return f"{key} = {cur!r}"[:200]


def m_top(tree, d):
    key = d.choice(["format", "producer", "tensors", "steps", "inputs", "outputs", "unknown", "delete"])
    if key == "delete":
        k = d.choice(list(tree))
        del tree[k]
        return f"deleted top-level {k!r}"
    if key == "unknown":
        tree[d.choice(["extra", "format2", ""])] = d.choice(WEIRD + [_deep(16)])
        return "added an unknown top-level key"
    tree[key] = d.choice(WEIRD + ["eightbit-plan", "eightbit-plan\0", "EIGHTBIT-PLAN"])
    return f"top-level {key} = {tree[key]!r}"[:200]


def m_nesting(tree, d):
    depth = d.choice([14, 15, 16, 17, 18, 64, 900])
    leaf = d.choice([1, "s", np.zeros(4, np.uint8), {}, None])
    v = _deep(depth, leaf)
    target = d.choice(["attr", "top", "shape", "const_dict"])
    ss = [s for s in _steps(tree) if isinstance(s, dict)]
    if target == "attr" and ss and isinstance(ss[0].get("attrs"), dict):
        s = d.choice(ss)
        if isinstance(s.get("attrs"), dict):
            s["attrs"]["nested"] = v
    elif target == "shape" and _tensors(tree) and isinstance(_tensors(tree)[0], dict):
        _tensors(tree)[0]["shape"] = v
    elif target == "const_dict" and ss:
        d.choice(ss)["consts"] = _deep(depth, {"w": np.zeros(4, np.int8)})
    else:
        tree["nested"] = v
    return f"nested {depth} levels deep at {target} (leaf {type(leaf).__name__})"


RAW_VALUES = [
    b"\x05\xff\xff\xff\xff",               # list claiming 2^32-1 items
    b"\x06\xff\xff\xff\x7f",               # dict claiming 2^31-1 pairs
    b"\x04\xff\xff\xff\xff",               # string claiming 4 GiB
    b"\x04\x02\x00\x00\x00\xff\xfe",       # invalid UTF-8
    b"\x04\x03\x00\x00\x00\xed\xa0\x80",   # a UTF-8 encoded surrogate
    b"\x01\x02",                           # bool 2
    b"\x08", b"\xff", b"\x07",             # unknown tag, truncated array header
    b"\x07\x02\xff",                       # array with 255 dims
    b"\x07\x02\x01" + struct.pack("<q", -1) + struct.pack("<QQ", 0, 2**64 - 1),
    b"\x03" + struct.pack("<d", float("nan")),
    b"\x02" + struct.pack("<q", -2**63),
]


def m_raw_meta(tree, d):
    raw = RawMeta(d.choice(RAW_VALUES))
    where = d.choice(["tensor_field", "attr", "const", "io", "dict_key"])
    ss = [s for s in _steps(tree) if isinstance(s, dict)]
    ts = [t for t in _tensors(tree) if isinstance(t, dict)]
    if where == "tensor_field" and ts:
        t = d.choice(ts)
        t[d.choice(["shape", "scale", "zero_point", "name", "dtype"])] = raw
    elif where == "attr" and ss and isinstance(ss[0].get("attrs"), dict):
        ss[0]["attrs"]["strides"] = raw
    elif where == "const" and _all_arrays(tree):
        s, k = d.choice(_all_arrays(tree))
        s["consts"][k] = raw
    elif where == "dict_key" and ts:  # a tensor entry with a duplicate, non-string or raw key
        i = d.index(len(ts))
        pairs = list(ts[i].items())
        key = d.choice([pairs[0][0] if pairs else "name", 3, None, raw])
        pairs.append((key, d.choice(WEIRD[:6])))
        full = tree["tensors"]
        full[next(j for j, t in enumerate(full) if t is ts[i])] = RawDict(pairs)
    else:
        tree[d.choice(["inputs", "outputs"])] = raw
    return f"raw metadata {raw!r} at {where}"


def m_inflate(tree, d):
    """A geometry blow-up that stays self-consistent once shapes are repaired: large pads, a large
    input, or an upsampling chain, so the executor plans and runs big tensors."""
    kind = d.choice(["pads", "input", "strides_one"])
    ss = [s for s in _steps(tree) if isinstance(s, dict) and s.get("op") in ("conv", "max_pool", "avg_pool")
          and isinstance(s.get("attrs"), dict)]
    if kind == "input":
        ts = [t for t in _tensors(tree) if isinstance(t, dict) and t.get("name") in tree.get("inputs", ())]
        if not ts or not isinstance(ts[0].get("shape"), list) or len(ts[0]["shape"]) < 2:
            return None
        ts[0]["shape"] = ts[0]["shape"][:1] + [d.choice([2**9, 2**12, 2**14, 2**20])] * (len(ts[0]["shape"]) - 1)
        return f"input shape {ts[0]['shape']}"
    if not ss:
        return None
    s = d.choice(ss)
    rec = s.get("lowered") if isinstance(s.get("lowered"), dict) else {}
    if kind == "pads":
        p = d.choice([2**6, 2**10, 2**12, 2**13, 2**14, 2**20])
        s["attrs"]["pads"] = rec["pads"] = [p, p, p, p]
    else:
        s["attrs"]["strides"] = rec["strides"] = [1, 1]
        s["attrs"]["dilations"] = rec["dilations"] = [d.choice([1, 2**10, 2**20])] * 2
    return f"step {s.get('op')} from {s.get('source')!r}: attrs {s['attrs']}"[:300]


def m_sequence(tree, d):
    """The declared sequence range: removed, empty, inverted, huge, of the wrong type."""
    if not isinstance(tree, dict):
        return None
    value = d.choice([None, [0, 4], [5, 2], [1, 2**40], [1, 2**62], [-1, -1], [3], [1, 1], [2, 4, 6], "x", [1.5, 4]])
    if value is None:
        tree.pop("sequence", None)
    else:
        tree["sequence"] = value
    return f"sequence = {value}"


MUTATIONS = [m_tensor_dim, m_sequence, m_tensor_field, m_tensor_list, m_step_io, m_step_op, m_attr, m_attr, m_lowered,
             m_lowered, m_lowered, m_const_values,
             m_const_geometry, m_const_raw, m_const_alias, m_const_list, m_step_list, m_io_lists, m_top,
             m_nesting, m_raw_meta, m_inflate]


def apply(mutation, tree, d: Draw):
    """mutation(tree, d), or None where an earlier mutation left nothing it can work on (a
    mutation meeting a tree that is already broken in another way)."""
    try:
        return mutation(tree, d)
    except Exception:  # hypothesis' own control flow is BaseException: it passes through
        return None


def repair_shapes(tree) -> None:
    """Re-derive each step's declared output shape from its inputs and attributes where the plan's
    own shape rules can (so a geometry mutation reaches the executor instead of stopping at the
    shape check). Anything it cannot interpret is left as it is."""
    from eightbit.model import plan_shapes
    from eightbit.model.plan import Step, TensorSpec

    tensors = {t["name"]: t for t in _tensors(tree) if isinstance(t, dict) and isinstance(t.get("name"), str)}

    def spec(t):
        shape = tuple(None if x == -1 else x for x in t["shape"])
        return TensorSpec(t["name"], np.dtype(t["dtype"]), shape, t.get("scale"), t.get("zero_point"))

    for s in _steps(tree):
        try:
            ins = [spec(tensors[n]) for n in s["inputs"]]
            consts = {k: v for k, v in s["consts"].items() if isinstance(v, np.ndarray)}
            want = plan_shapes.infer(Step(s["op"], tuple(s["inputs"]), s["output"], s["attrs"], consts, ""), ins)
            if want is not None and s["output"] in tensors:
                tensors[s["output"]]["shape"] = [-1 if x is None else int(x) for x in want]
        except Exception:
            continue


BYTE_MUTATIONS = ["flip", "int64", "header", "truncate_data", "extend_data", "swap_sections"]


def mutate_bytes(buf: bytes, d: Draw) -> tuple:
    """A byte-level change of an encoded file, CRCs recomputed: (new bytes, description)."""
    ff = _ff()
    b = bytearray(buf)
    fields = list(ff.HEADER.unpack(bytes(b[:64])))
    moff, msize, doff, dsize = fields[5:9]
    kind = d.choice(BYTE_MUTATIONS)
    if kind == "flip":
        pos = [moff + d.index(msize) for _ in range(d.int(1, 4))]
        for p in pos:
            b[p] ^= 1 << d.int(0, 7)
        return reseal(b), f"bit flips in the metadata at {pos}"
    if kind == "int64":
        p = moff + d.index(max(1, msize - 8))
        v = d.choice(INTS)
        b[p:p + 8] = struct.pack("<Q", v % 2**64)
        return reseal(b), f"int64 {v} written at metadata offset {p - moff}"
    if kind == "header":
        i = d.choice([1, 2, 3, 4, 5, 6, 7, 8])  # versions, header size, file size, offsets, sizes
        v = d.choice([0, 1, 63, 64, 65, moff + msize, doff, len(b), len(b) + 64, 2**32, 2**63, 2**64 - 1])
        fields[i] = v % (2**16 if i in (1, 2) else 2**32 if i == 3 else 2**64)
        b[:64] = ff.HEADER.pack(*fields)
        return reseal(b), f"header field {i} = {fields[i]}"
    if kind == "truncate_data" and dsize:
        cut = d.int(1, dsize)
        del b[len(b) - cut:]
        fields[4] -= cut
        fields[8] -= cut
        b[:64] = ff.HEADER.pack(*fields)
        return reseal(b), f"data section cut by {cut} bytes (header adjusted)"
    if kind == "extend_data":
        extra = 64 * d.int(1, 4)
        b += b"\xff" * extra
        fields[4] += extra
        fields[8] += extra
        b[:64] = ff.HEADER.pack(*fields)
        return reseal(b), f"data section grown by {extra} bytes"
    if kind == "swap_sections":  # metadata size claiming the padding / data offset pulled into the metadata
        fields[6] = doff - moff
        b[:64] = ff.HEADER.pack(*fields)
        return reseal(b), "metadata size covers the padding"
    return bytes(buf), "no byte change"


def feeds_for(tree, base_feeds: dict, batch: int = 1):
    """What to run a (mutated) model on: [(name, shape)] from the tree's inputs where they make a
    sane float32 array, else the base model's; None when the declared inputs are too large."""
    names = tree.get("inputs") if isinstance(tree, dict) else None
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        names = list(base_feeds)
    tensors = {t["name"]: t for t in _tensors(tree) if isinstance(t, dict) and isinstance(t.get("name"), str)}
    feeds = []
    for n in dict.fromkeys(names):
        shape = tensors.get(n, {}).get("shape")
        if not (isinstance(shape, (list, tuple)) and shape and all(isinstance(x, int) and not isinstance(x, bool)
                                                                     and x >= -1 for x in shape)):
            shape = [-1] + list(base_feeds.get(n, next(iter(base_feeds.values()))))
        shape = [batch if x == -1 else x for x in shape]
        if math.prod(shape) * 4 > MAX_FEED_BYTES:
            return None
        feeds.append((n, shape))
    return feeds


# ---- plans that ask for absurd memory --------------------------------------------------------

def writer_tree(plan) -> dict:
    """The tree the package's writer stores for ``plan``: lowered first where this eightbit
    stores the executor's records (model/lowering.py), as QuantizedModel.save does."""
    try:
        from eightbit.model.lowering import lower
    except ImportError:
        return plan_tree(plan)
    return plan_tree(lower(plan))


def many_big_tensors_plan(count: int):
    """x [N,1,1,1] -> quantize -> ``count`` 1x1 convolutions whose pads make [N,16384,16384,1]
    uint8 outputs (2^28 bytes per sample each: the largest a tensor spec may be), all alive at
    once (each is read, by a 1x1 convolution of stride 16384 that keeps one pixel, only after the
    last one is computed), then a chain of adds of those pixels -> y. The arena needs
    count * 2^28 (+64) bytes per sample, from a file of under 2 KB per big tensor: 64 -> 16 GiB
    at batch 1; 4096 -> 2^40 per sample."""
    from eightbit.model.plan import Plan, Step, TensorSpec
    u8, f32 = np.dtype(np.uint8), np.dtype(np.float32)
    t = {"x": TensorSpec("x", f32, (None, 1, 1, 1)), "xq": TensorSpec("xq", u8, (None, 1, 1, 1), 1 / 255, 0)}
    steps = [Step("quantize", ("x",), "xq")]
    pads = (8192, 8192, 8191, 8191)  # 1 + 8192 + 8191 = 16384
    for i in range(count):
        t[f"h{i}"] = TensorSpec(f"h{i}", u8, (None, 16384, 16384, 1), 0.01, 0)
        steps.append(Step("conv", ("xq",), f"h{i}", dict(strides=(1, 1), pads=pads, dilations=(1, 1), group=1,
                                                          activation=None),
                          dict(w=np.ones((1, 1, 1, 1), np.int8), w_scale=np.full(1, 0.01, np.float32),
                               bias=np.zeros(1, np.int32)), source=f"conv{i}"))
    for i in range(count):  # a 1x1 convolution with stride 16384: one pixel of each
        t[f"g{i}"] = TensorSpec(f"g{i}", u8, (None, 1, 1, 1), 0.01, 0)
        steps.append(Step("conv", (f"h{i}",), f"g{i}", dict(strides=(16384, 16384), pads=(0, 0, 0, 0),
                                                             dilations=(1, 1), group=1, activation=None),
                          dict(w=np.ones((1, 1, 1, 1), np.int8), w_scale=np.full(1, 0.01, np.float32),
                               bias=np.zeros(1, np.int32)), source=f"pick{i}"))
    acc = "g0"
    for i in range(1, count):
        t[f"a{i}"] = TensorSpec(f"a{i}", u8, (None, 1, 1, 1), 0.01, 0)
        steps.append(Step("add", (acc, f"g{i}"), f"a{i}"))
        acc = f"a{i}"
    t["y"] = TensorSpec("y", f32, (None, 1, 1, 1))
    steps.append(Step("dequantize", (acc,), "y"))
    return Plan(t, steps, ["x"], ["y"]).validate()


def mlp_plan(layers: int, width: int, seed: int = 7):
    """x [N, width] -> quantize -> ``layers`` x (linear width x width, relu) -> dequantize: random
    int8 weights with the scales eb.quantize would give them."""
    from eightbit.model.plan import Plan, Step, TensorSpec
    u8, f32 = np.dtype(np.uint8), np.dtype(np.float32)
    rng = np.random.default_rng(seed)
    t = {"x": TensorSpec("x", f32, (None, width)), "h0": TensorSpec("h0", u8, (None, width), 2 / 255, 128)}
    steps = [Step("quantize", ("x",), "h0")]
    for i in range(layers):
        t[f"h{i + 1}"] = TensorSpec(f"h{i + 1}", u8, (None, width), 0.05, 0)
        steps.append(Step("linear", (f"h{i}",), f"h{i + 1}", {"activation": "relu"},
                          dict(w=rng.integers(-127, 128, (width, width), dtype=np.int8),
                               w_scale=np.full(width, 1 / (64 * 127), np.float32),
                               bias=rng.integers(-1000, 1000, width, dtype=np.int32)), source=f"fc{i}"))
    t["y"] = TensorSpec("y", f32, (None, width))
    steps.append(Step("dequantize", (f"h{layers}",), "y"))
    return Plan(t, steps, ["x"], ["y"]).validate()


def aliased_entries_file(entries: int = 4096, size: int = MiB) -> bytes:
    """A valid MLP whose first linear step carries ``entries`` extra constants that all name the
    same ``size`` bytes of the data section: about ``size`` bytes of file, ``entries * size``
    bytes for a reader that copies every entry."""
    from eightbit.model.plan import Plan, Step, TensorSpec
    u8, f32 = np.dtype(np.uint8), np.dtype(np.float32)
    t = {"x": TensorSpec("x", f32, (None, 16)), "xq": TensorSpec("xq", u8, (None, 16), 0.01, 128),
         "hq": TensorSpec("hq", u8, (None, 4), 0.02, 128), "y": TensorSpec("y", f32, (None, 4))}
    steps = [Step("quantize", ("x",), "xq"),
             Step("linear", ("xq",), "hq", {}, dict(w=np.ones((4, 16), np.int8), w_scale=np.full(4, 0.01, np.float32),
                                                 bias=np.zeros(4, np.int32))),
             Step("dequantize", ("hq",), "y")]
    tree = writer_tree(Plan(t, steps, ["x"], ["y"]).validate())
    blob = np.arange(size, dtype=np.int64).astype(np.int8)
    consts = tree["steps"][1]["consts"]
    consts["blob"] = blob
    for i in range(entries):
        consts[f"alias{i}"] = RawArray(2, (size,), target=blob)
    return encode_tree(tree)


def call_for(tree) -> str:
    """"call" (qm(x)) for a file that declares exactly one input, else "run" (qm.run({...})):
    qm(x) on a model of several inputs raises TypeError by design (the caller's mistake)."""
    ins = tree.get("inputs") if isinstance(tree, dict) else None
    return "call" if isinstance(ins, (list, tuple)) and len(ins) == 1 else "run"


# ---- the sandbox -------------------------------------------------------------------------------

CHILD = r'''
import faulthandler, gc, inspect, json, os, resource, sys, traceback
faulthandler.enable()
import numpy as np
import eightbit as eb
LOAD_KWARGS = set(inspect.signature(eb.load).parameters) - {"path"}

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmSize", "VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out

warm_path, slack = sys.argv[1], int(sys.argv[2])
m = eb.load(warm_path)
m(np.zeros((2, 16), np.float32)); m(np.zeros((1, 16), np.float32))
del m
gc.collect()
cap = status()["VmSize"] + slack
resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
out = sys.stdout
sys.stdout = sys.stderr  # nothing but the protocol on the pipe
def reply(obj):
    out.write("@@R " + json.dumps(obj) + "\n")
    out.flush()
reply({"ready": True, "cap": cap, "status": status()})

def failed(res, e):
    res.update(outcome="raised", type=type(e).__module__ + "." + type(e).__qualname__,
               value_error=isinstance(e, ValueError), memory_error=isinstance(e, MemoryError),
               message=str(e)[:400], traceback=traceback.format_exc()[-1500:])
    return res

def make(shape, kind):
    if kind in ("broadcast", "broadcast64"):
        dt = np.float64 if kind == "broadcast64" else np.float32
        return np.broadcast_to(np.zeros((1,) + tuple(shape[1:]), dt), tuple(shape))
    return np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)

def case(req):
    if req.get("selftest") == "segv":
        os.kill(os.getpid(), 11)
    if req.get("selftest") == "hang":
        import time
        time.sleep(3600)
    res = {"stage": "load"}
    if req.get("measure"):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        res["before"] = status()
    kw = {k: v for k, v in (req.get("load_kwargs") or {}).items() if k in LOAD_KWARGS}
    res["load_kwargs"] = kw
    try:
        qm = eb.load(req["path"], **kw)
    except BaseException as e:
        return failed(res, e)
    if req.get("measure"):
        res["after"] = status()
        res["size_bytes"] = int(qm.size_bytes)
        ex = getattr(qm, "_executor", None)
        res["packed_bytes"] = int(getattr(ex, "const_bytes", 0) or 0)
    feeds = req.get("feeds")
    if feeds is None:
        res["outcome"] = "loaded"
        return res
    res["stage"] = "run"
    try:
        xs = {n: make(shape, req.get("kind", "random")) for n, shape in feeds}
        if req.get("call", "call") == "call":
            y = qm(next(iter(xs.values())))
        else:
            y = qm.run(xs)
        del y
    except BaseException as e:
        return failed(res, e)
    finally:
        xs = None
    res["outcome"] = "ran"
    return res

for line in sys.stdin:
    try:
        res = case(json.loads(line))
    finally:
        gc.collect()
    reply(res)
'''


def _status_of(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("RssAnon", "VmHWM", "VmRSS"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def write_warm_model(path) -> None:
    """The tiny model the child loads and runs before the cap goes on (16 inputs)."""
    from eightbit.model import file_format as ff
    from eightbit.model.plan import Plan, Step, TensorSpec
    u8, f32 = np.dtype(np.uint8), np.dtype(np.float32)
    t = {"x": TensorSpec("x", f32, (None, 16)), "xq": TensorSpec("xq", u8, (None, 16), 0.01, 128),
         "hq": TensorSpec("hq", u8, (None, 4), 0.02, 128), "y": TensorSpec("y", f32, (None, 4))}
    steps = [Step("quantize", ("x",), "xq"),
             Step("linear", ("xq",), "hq", {}, dict(w=np.ones((4, 16), np.int8), w_scale=np.full(4, 0.01, np.float32),
                                                 bias=np.zeros(4, np.int32))),
             Step("dequantize", ("hq",), "y")]
    ff.save(Plan(t, steps, ["x"], ["y"]).validate(), path)


class Sandbox:
    """A child Python that opens .eb files under RLIMIT_AS (its start-up size + ``slack``); one
    request at a time, each with a timeout; restarted after it dies or hangs."""

    def __init__(self, slack: int = AS_SLACK, timeout: float = CASE_TIMEOUT, asan_options: str = ""):
        self.slack, self.timeout, self.asan_options = slack, timeout, asan_options
        self.dir = Path(tempfile.mkdtemp(prefix="eb-hostile-"))
        self.warm = self.dir / "warm.eb"
        write_warm_model(self.warm)
        self.proc = None
        self.cap = None
        self.starts = 0

    def _start(self):
        env = dict(os.environ)
        # under AddressSanitizer (tools/sanitize_tests.sh) an impossible allocation must fail like
        # malloc does (MemoryError), not abort the process
        env["ASAN_OPTIONS"] = ",".join(filter(None, [env.get("ASAN_OPTIONS"), "allocator_may_return_null=1",
                                                     self.asan_options]))
        self.err = open(self.dir / f"stderr{self.starts}.txt", "w+b")
        flags = ["-S"] if sys.flags.no_site else []  # the parent's way of finding eightbit
        self.proc = subprocess.Popen([sys.executable, *flags, "-c", CHILD, str(self.warm), str(self.slack)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, env=env)
        self.starts += 1
        self._buf = b""
        ready = self._reply(120.0, sample=False)
        if not isinstance(ready, dict) or not ready.get("ready"):
            raise RuntimeError(f"hostile-file sandbox did not start: {ready} {self._stderr()}")
        self.cap = ready["cap"]
        self.start_status = ready["status"]

    def _stderr(self) -> str:
        try:
            self.err.flush()
            self.err.seek(0)
            text = self.err.read()
            if len(text) > 6000:  # a sanitizer's report starts with what matters
                text = text[:3000] + b"\n[...]\n" + text[-3000:]
            return text.decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def _reply(self, timeout: float, sample: bool):
        """The child's next protocol line (a dict), or {"outcome": "timeout" | "died", ...}."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        peak = 0
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                if line.startswith(b"@@R "):
                    res = json.loads(line[4:])
                    if sample:
                        res["sampled_peak_anon"] = peak
                    return res
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                self.proc.wait()
                res = {"outcome": "timeout", "seconds": timeout, "stderr": self._stderr()}
                self._release()
                return res
            r, _, _ = select.select([fd], [], [], min(left, 0.0005 if sample else 1.0))
            if sample:
                peak = max(peak, _status_of(self.proc.pid).get("RssAnon", 0))
            if r:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    rc = self.proc.wait()
                    sig = signal.Signals(-rc).name if rc < 0 and -rc in signal.Signals._value2member_map_ else None
                    res = {"outcome": "died", "returncode": rc, "signal": sig, "stderr": self._stderr()}
                    self._release()
                    return res
                self._buf += chunk

    def _release(self):
        """Forget the (ended) child: close its pipes and its stderr file."""
        for f in (self.proc.stdin, self.proc.stdout, self.err):
            try:
                f.close()
            except OSError:
                pass
        self.proc = None

    def run(self, path, feeds=None, *, call="call", kind="random", load_kwargs=None, measure=False, sample=False,
            timeout=None, **extra) -> dict:
        """Open ``path`` in the child with ``eb.load(path, **load_kwargs)`` (the keywords this
        eightbit's eb.load takes) and run it on ``feeds``, [(name, shape)] with the batch first;
        the child's report, or what became of it."""
        if self.proc is None:
            self._start()
        req = dict(path=str(path), feeds=feeds, call=call, kind=kind, load_kwargs=load_kwargs or {},
                   measure=measure, **extra)
        baseline = _status_of(self.proc.pid).get("RssAnon", 0) if sample else 0
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died: _reply reports how
        res = self._reply(self.timeout if timeout is None else timeout, sample)
        if sample:
            res["sampled_base_anon"] = baseline
        res.setdefault("cap", self.cap)
        return res

    def close(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
            self._release()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- the policy --------------------------------------------------------------------------------

def verdict(res: dict, memory_error_at_run: bool = False) -> str | None:
    """None when the outcome is allowed, else why not.

    Allowed: the file loads (and runs), or eb.load / the run raises a ValueError (ModelFileError
    is one). Never a signal, a non-zero exit, a hang, or another exception type.

    MemoryError: a model file is not a memory request. A file whose sizes would need an absurd
    allocation (a huge arena, array entries that multiply the data) must be refused as a
    ValueError before anything is allocated, so MemoryError while loading is a failure, and so is
    MemoryError while running a small batch (the fuzz cases run batch 1-2 on inputs of at most
    256 MiB, under a cap of start-up + 2 GiB). MemoryError is acceptable only where the caller's
    own request is what is too large (``memory_error_at_run``: e.g. a batch of 2^24, or a 1 TiB
    broadcast input)."""
    out = res.get("outcome")
    if out in ("loaded", "ran"):
        return None
    if out == "timeout":
        return f"hang: no answer in {res.get('seconds')} s"
    if out == "died":
        return f"crash: child died with {res.get('signal') or 'exit code ' + str(res.get('returncode'))}"
    if out != "raised":
        return f"unexpected report {res}"
    where = res.get("stage")
    if res.get("memory_error"):
        if where == "run" and memory_error_at_run:
            return None
        return (f"MemoryError while {'loading' if where == 'load' else 'running a small batch'} (under the "
                f"address-space cap): the file should have been refused with a ValueError before allocating: "
                f"{res.get('message')}")
    if res.get("value_error"):
        return None
    return f"disallowed {res.get('type')} while {'loading' if where == 'load' else 'running'}: {res.get('message')}"


def save_repro(buf: bytes, label: str, description, res: dict, feeds=None, call="call", kind="random",
               memory_error_at_run=False, load_kwargs=None) -> Path:
    """The failing file as REPRO_DIR/<label>-<hash>.eb, with a .json sidecar (what was done, what
    happened, how to rerun it)."""
    REPRO_DIR.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha1(buf).hexdigest()[:10]
    path = REPRO_DIR / f"{label}-{h}.eb"
    path.write_bytes(buf)
    side = dict(description=description, result={k: v for k, v in res.items() if k != "stderr"},
                stderr=res.get("stderr", "")[-6000:], feeds=feeds, call=call, kind=kind,
                memory_error_at_run=memory_error_at_run, load_kwargs=load_kwargs or {},
                reproduce=f"python tests/model/_hostile.py {path}")
    path.with_suffix(".json").write_text(json.dumps(side, indent=1, default=str))
    return path


def main(argv) -> int:
    """Rerun saved cases: python tests/model/_hostile.py FILE.eb [...]"""
    box = Sandbox()
    bad = 0
    try:
        for p in argv:
            p = Path(p)
            side = json.loads(p.with_suffix(".json").read_text()) if p.with_suffix(".json").exists() else {}
            res = box.run(p, side.get("feeds"), call=side.get("call", "call"), kind=side.get("kind", "random"),
                          load_kwargs=side.get("load_kwargs"))
            v = verdict(res, side.get("memory_error_at_run", False))
            bad += v is not None
            print(f"{p}: {v or 'ok'}\n  description: {side.get('description')}\n  outcome: "
                  f"{ {k: res.get(k) for k in ('outcome', 'stage', 'type', 'message', 'signal')} }")
            if res.get("stderr"):
                print("  stderr:\n" + res["stderr"])
    finally:
        box.close()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
    sys.exit(main(sys.argv[1:]))
