"""eightbit: int8 quantization and fast, bit-exact int8 inference on CPUs.

    import eightbit as eb
    eb.cpu_info()                       # the kernels in use and what this CPU can run
    pw = eb.pack_weights(b_int8)        # pack a [K, N] weight matrix once
    y = eb.ops.matmul_integer(a_uint8, pw, a_zero_point)
    layer = eb.QuantizedLinear(weight, bias)   # float in, float out, int8 inside

    g = eb.Graph(); x = g.input("x", (None, 1, 8, 8)); g.output(g.linear(g.flatten(x), w, b))
    qm = eb.quantize(g, calibration_batches)  # a whole int8 model
    qm.save("model.eb"); qm = eb.load("model.eb")

``eightbit.ops`` runs ONNX's quantization operators in C++;
``eightbit.reference`` is their plain-NumPy specification (bit-identical).
"""

from __future__ import annotations

from . import binary, lowbit, numerics, ops, reference
from ._version import __version__
from .graph import Graph
from .linear import QuantizedLinear
from .model import QuantizedModel
from .quantizer import QuantizationWarning, quantize
from .quantizer import compile_float as compile  # noqa: A001 (eb.compile: the float graph in C++)
from .accuracy.analyze import analyze
from .accuracy.sensitivity import sensitivity
from .accuracy.evaluate import Evaluation, evaluate
from .ensemble import Ensemble
from .ops import PackedConvWeights, PackedWeights
from .runtime import cpu_info, set_isa, set_num_threads

__all__ = [
    "__version__",
    "cpu_info",
    "set_isa",
    "set_num_threads",
    "pack_weights",
    "PackedWeights",
    "pack_conv_weights",
    "PackedConvWeights",
    "QuantizedLinear",
    "Graph",
    "quantize",
    "compile",
    "QuantizationWarning",
    "analyze",
    "sensitivity",
    "evaluate",
    "Evaluation",
    "explain",
    "QuantizedModel",
    "Ensemble",
    "from_onnx",
    "from_onnx_quantized",
    "load",
    "to_onnx",
    "ops",
    "reference",
    "numerics",
]


def pack_weights(b, b_zero_point=None) -> PackedWeights:
    """Pack a [K, N] uint8 or int8 matrix once for the int8 GEMM kernels.

    The result is accepted wherever ``b`` is accepted in ``eightbit.ops``
    (``matmul_integer``, ``qlinear_matmul``), with identical results. Its
    zero point (a scalar or one per column, of b's dtype) is packed with it;
    a call may then omit ``b_zero_point`` or repeat the same value.
    """
    return PackedWeights(b, b_zero_point)


def pack_conv_weights(w, w_zero_point=None, *, group=1) -> PackedConvWeights:
    """Pack OIHW (or OIW) uint8/int8 convolution weights once.

    Accepted in place of ``w`` by ``eightbit.ops.conv_integer`` and ``qlinear_conv`` with
    identical results; the zero point (scalar or one per output channel) follows the same rule
    as ``pack_weights``.
    """
    return ops.pack_conv(w, w_zero_point, group)


def from_onnx(model, *, input_shapes=None, dims=None, max_folded_bytes=None, max_total_folded_bytes=None) -> Graph:
    """Import a float ONNX model (a path, bytes or an onnx.ModelProto) as an eightbit Graph; needs
    the optional ``onnx`` package (``pip install 'eightbit[onnx]'``), imported only by this call.
    A model that is already quantized is refused: see ``from_onnx_quantized``. Opsets 7-10 are
    converted to 11 on import; ``max_folded_bytes`` / ``max_total_folded_bytes`` raise the limits
    on constants folded at import (default 256 MiB each, 1 GiB in all). ``dims={"sequence": 128}``
    fixes every input dimension the model names so (BERT-style encoders: one import per length).
    See ``eightbit.onnx.from_onnx``."""
    from .onnx import from_onnx as _from_onnx
    return _from_onnx(model, input_shapes=input_shapes, dims=dims, max_folded_bytes=max_folded_bytes,
                      max_total_folded_bytes=max_total_folded_bytes)


def from_onnx_quantized(model) -> QuantizedModel:
    """Import an ONNX model quantized by another tool (QDQ, QOperator, quantize_dynamic) as a
    QuantizedModel with the model's own quantization (its outputs are ONNX Runtime's); a float
    model is refused: see ``from_onnx``. See ``eightbit.onnx.from_onnx_quantized``."""
    from .onnx import from_onnx_quantized as _from_onnx_quantized
    return _from_onnx_quantized(model)


def load(path, *, max_arena_bytes: int | None = None):
    """Read a quantized model saved with ``QuantizedModel.save`` (a ``.eb`` file, docs/format.md)
    with the C++ reader the C library shares (memory-mapped), or an ``eb.Ensemble`` saved with
    ``Ensemble.save``. A truncated, corrupted, hostile or foreign file raises ``ModelFileError`` (a
    ValueError), as does a model that needs more than ``max_arena_bytes`` (default 4 GiB) of
    intermediate tensors per batch item."""
    from .ensemble import load_model

    return load_model(path, max_arena_bytes=max_arena_bytes)


def to_onnx(model, path=None, **kwargs):
    """Export a QuantizedModel (or a float Graph) to ONNX: ``eightbit.onnx.to_onnx``. The ``onnx``
    package is imported here, not by ``import eightbit``."""
    from .onnx.export import to_onnx as _to_onnx

    return _to_onnx(model, path, **kwargs)


def explain(models, x, background, **kwargs):
    """SHAP attributions of float32 and int8 models side by side, and the input features whose
    attribution quantization changed most: ``eightbit.accuracy.explain.explain``. Needs the
    ``report`` extra (shap, matplotlib), imported only by this call."""
    from .accuracy.explain import explain as _explain

    return _explain(models, x, background, **kwargs)
