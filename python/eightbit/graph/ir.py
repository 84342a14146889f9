"""Graph IR records (layer 2 of DESIGN.md): the plain data every later layer walks.

A ``Graph`` (graph.py) is a list of ``Node`` records in topological order plus the names of its
input and output tensors and a table of ``Tensor`` handles. Everything is plain data, so the
quantizer, the lowering, the ONNX importer and the .eb writer can walk, copy and rewrite it:

* ``Tensor``: a name, a shape (a tuple of ints; dimension 0 is the batch and may be ``None``,
  "any size"; other dimensions may be the graph's ``SeqLen``, its free sequence length) and a dtype: ``"float32"``, or ``"int64"`` for a graph input holding integer ids
  (token ids, an attention mask) that only the ops of ``INT_INPUT_OPS`` may read. Builders return Tensors and accept them as inputs;
  a Tensor belongs to one graph and is refused by any other.
* ``Node``: ``op`` (a key of OPS below), ``name`` (unique among nodes), ``inputs`` (tensor names),
  ``outputs`` (tensor names; every op here has exactly one), ``attrs`` (ints, floats, strs, bools,
  ``None`` and tuples of them, already normalized: pairs are tuples, pads are explicit) and
  ``consts``: the node's constants (weights, biases, BatchNorm statistics, the constant operand
  of add/mul) as float32 C-contiguous **read-only** NumPy arrays. Constants live in the node
  that uses them, never in a graph-level table: a rewrite replaces a node's consts wholesale and
  a pass may share an unchanged array between the old and the new graph (they cannot be written).

Names: builders name a node ``f"{op}_{k}"`` (the first free k for that op, e.g. ``"conv2d_3"``)
unless ``name=`` is given, and name its output tensor the same. Node names and tensor names are
two namespaces; after a pass fuses two nodes, the surviving node keeps its node name while its
output takes the name of the removed node's output (graph output names never change).

Ops: inputs, constants and attributes (x: tensors; N the batch dimension):

    op                inputs     consts                                   attrs
    conv2d            x NCHW     weight [O, C/groups, kh, kw], bias [O]?  stride (sh, sw), pads (top,
                                                                          left, bottom, right),
                                                                          dilation (dh, dw), groups,
                                                                          activation
    linear            x [.., I]  weight [O, I] (PyTorch), bias [O]?       activation
    matmul            x [.., K]  b [K, N]                                 activation
    batch_norm2d      x [N,C,..] mean, var, weight, bias [C] (eval mode)  eps
    bmm               a, b       -                                        - (torch.matmul / ONNX MatMul of
                                                                          two tensors of the same rank
                                                                          >= 3: a [N, .., M, K] @ b [N, ..,
                                                                          K, P] -> [N, .., M, P], the
                                                                          leading dims broadcast as NumPy's)
    add, mul          a, b       - (two tensors) or b (a constant array,  activation (add only)
                      or a       NumPy broadcasting)
    div               a, b       - (two tensors, NumPy broadcasting;      -
                                 a constant divisor is mul by 1 / c)
    relu, relu6, sigmoid, tanh, hardswish, erf, identity   x   -          -
    clip              x          -                                        min, max (float or None; not
                                                                          NaN, min <= max)
    leaky_relu        x          -                                        negative_slope
    gelu              x          -                                        approximate ("none"/"tanh")
    softmax           x [, mask] -                                        axis (>= 1: not the batch), scale
                                                                          (float or None): softmax(x * scale
                                                                          + mask), each op rounded to float32
                                                                          (attention's scores; mask broadcasts
                                                                          to x)
    dropout           x          -                                        p (identity at inference)
    concat            x1, x2..   -                                        axis (>= 1)
    max_pool2d        x NCHW     -                                        kernel_size, stride, pads,
                                                                          ceil_mode
    avg_pool2d        x NCHW     -                                        kernel_size, stride, pads,
                                                                          ceil_mode, count_include_pad
    global_avg_pool2d x NCHW     -                                        - (output [N, C, 1, 1])
    flatten           x          -                                        start_dim (>= 1)
    reshape           x          -                                        shape (per sample: the
                                                                          output is (N,) + shape)
    transpose         x          -                                        perm (a permutation of the
                                                                          axes with perm[0] == 0)
    pad               x          -                                        pads (begin of each axis,
                                                                          then end of each axis, ONNX
                                                                          order; >= 0, 0 on axis 0),
                                                                          mode ("constant", "reflect",
                                                                          "replicate", "circular"),
                                                                          value (float, constant mode)
    layer_norm        x [N, ..]  weight, bias [normalized_shape]?         normalized_shape (the last
                                                                          dims, not the batch), eps
    hardsigmoid       x          -                                        alpha, beta: clip(alpha * x
                                                                          + beta, 0, 1) (ONNX
                                                                          HardSigmoid; PyTorch's is
                                                                          alpha 1/6, beta 0.5)
    lrn               x [N,C,..] -                                        size, alpha, beta, bias: ONNX
                                                                          LRN / F.local_response_norm
                                                                          across channels: x / (bias +
                                                                          alpha / size * sum of x^2
                                                                          over channels c - (size-1)//2
                                                                          .. c + size//2) ^ beta
    embedding         ids [N,..] weight [V, D] (the table)                -: rows of the table by
                                                                          integer ids -> [N, .., D]
                                                                          (ONNX Gather of a constant
                                                                          table); an id that is not an
                                                                          integer in [0, V) raises
                                                                          ValueError
    additive_mask     mask [N,T] -                                        fill (float, may be -inf):
                                                                          keep mask (1 keep, 0 pad) ->
                                                                          [N, 1, 1, T] float32, 0 where
                                                                          kept, fill where padded (the
                                                                          extended attention mask of
                                                                          BERT-style encoders); a value
                                                                          other than 0 / 1 raises
                                                                          ValueError
    padded_positions  ids [N,T]  -                                        pad (int >= 0): RoBERTa's
                                                                          position ids, float32 [N, T]:
                                                                          pad where ids == pad, else pad
                                                                          + the count of non-pad ids up
                                                                          to and including t
    select            x          -                                        axis (>= 1), index (>= 0): the
                                                                          slice x[.., index, ..] along
                                                                          axis, that axis dropped (ONNX
                                                                          Gather of a scalar index)
    reduce            x          -                                        mode ("sum", "mean", "l2",
                                                                          "max"), axes (increasing,
                                                                          contiguous, >= 1: never the
                                                                          batch), keepdims (bool):
                                                                          sentence encoders' pooling
                                                                          (ONNX ReduceSum / ReduceMean /
                                                                          ReduceL2 / ReduceMax)

``activation`` is ``None`` (none fused), ``"relu"`` or ``("clip", lo, hi)`` with finite floats
lo <= hi (ReLU6 is ``("clip", 0.0, 6.0)``): the values ``eightbit.reference.qlinear_conv`` takes,
applied to the op's float result. ``fuse_activations`` (passes.py) sets it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DTYPE = "float32"
# the dtypes a graph input may have; every node output is float32
INPUT_DTYPES = ("float32", "int64")
# ops that may read an int64 tensor (their ids / mask input; float32 holding exact integers works too)
INT_INPUT_OPS = ("embedding", "additive_mask", "padded_positions")

# op -> names of the constants it may hold (a "?" suffix marks an optional one)
OPS: dict[str, tuple[str, ...]] = {
    "conv2d": ("weight", "bias?"),
    "linear": ("weight", "bias?"),
    "matmul": ("b",),
    "batch_norm2d": ("mean", "var", "weight", "bias"),
    "bmm": (),
    "add": ("b?",),
    "mul": ("b?",),
    "div": (),
    "relu": (), "relu6": (), "clip": (), "leaky_relu": (), "sigmoid": (), "tanh": (),
    "hardswish": (), "erf": (), "gelu": (), "softmax": (), "dropout": (), "identity": (),
    "concat": (),
    "max_pool2d": (), "avg_pool2d": (), "global_avg_pool2d": (),
    "flatten": (), "reshape": (),
    "transpose": (), "pad": (), "hardsigmoid": (), "layer_norm": ("weight?", "bias?"),
    "lrn": (),
    "embedding": ("weight",), "additive_mask": (), "padded_positions": (), "select": (),
    "reduce": (),
}

# ops whose attrs carry an ``activation`` that the float executor applies to their result
FUSABLE_OPS = ("conv2d", "linear", "matmul", "add")


class SeqLen:
    """The free sequence dimension of a graph: a length known only at run time, any int in
    [lo, hi]. It stands in a shape where a size would (never dimension 0, the batch), equals
    only itself, and no shape rule does arithmetic with it: an op that would (a pad of that
    axis, a flatten merging it) refuses it. A graph has at most one (graph/sequence.py)."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo: int, hi: int):
        if isinstance(lo, bool) or isinstance(hi, bool) or not isinstance(lo, (int, np.integer)) or \
                not isinstance(hi, (int, np.integer)) or not 1 <= lo <= hi:
            raise ValueError(f"a sequence range must be two ints 1 <= lo <= hi, got ({lo!r}, {hi!r})")
        self.lo, self.hi = int(lo), int(hi)

    def __eq__(self, other) -> bool:
        return isinstance(other, SeqLen) and (self.lo, self.hi) == (other.lo, other.hi)

    def __hash__(self) -> int:
        return hash(("SeqLen", self.lo, self.hi))

    def __repr__(self) -> str:
        return f"S[{self.lo}..{self.hi}]"

    def __str__(self) -> str:
        return "S"


def format_shape(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


class Tensor:
    """A handle on one tensor of one graph: ``name``, ``shape`` (dim 0 may be None), ``dtype``
    ("float32", or "int64" for an integer graph input)."""

    __slots__ = ("name", "shape", "dtype", "_graph")

    def __init__(self, name: str, shape: tuple, graph, dtype: str = DTYPE) -> None:
        self.name = name
        self.shape = tuple(shape)
        self.dtype = dtype
        self._graph = graph

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        dtype = "" if self.dtype == DTYPE else f", {self.dtype}"
        return f"Tensor({self.name!r}, {format_shape(self.shape)}{dtype})"


@dataclass(eq=False)                 # compared by identity: consts are arrays
class Node:
    """One operation: ``outputs[0] = op(*inputs, **attrs)`` using ``consts`` (see the table above)."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    consts: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def output(self) -> str:
        """The name of the single output tensor."""
        return self.outputs[0]

    def copy(self) -> "Node":
        """A copy whose lists and dicts may be edited; the (read-only) const arrays are shared."""
        return Node(self.op, self.name, list(self.inputs), list(self.outputs), dict(self.attrs),
                    dict(self.consts))
