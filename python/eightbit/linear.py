"""`QuantizedLinear`: a dynamically quantized int8 linear layer.

Weights are quantized once (int8, symmetric, one scale per output channel)
and packed for the GEMM kernels; at each call the input rows are quantized
to uint8 (one scale and zero point per row, computed from the row's range),
multiplied in int32, and dequantized with bias and activation fused into the
kernel's epilogue.  float32 in, float32 out.  ``eightbit.reference.quantized_linear``
is the bit-exact specification.
"""

from __future__ import annotations

import numpy as np

from .runtime import core as _core
from .numerics.qparams import quantize_weight_symmetric

_ACTIVATIONS = (None, "relu")


class QuantizedLinear:
    """``y = activation(x @ weight.T + bias)`` with int8 weights and dynamic int8 inputs.

    Parameters
    ----------
    weight : array [out_features, in_features]
        Float weights, PyTorch's ``nn.Linear`` layout.
    bias : array [out_features], optional
    per_channel : bool
        One weight scale per output channel (default) or one for the tensor.
    activation : None or "relu"
        Fused into the epilogue.
    """

    def __init__(self, weight, bias=None, *, per_channel: bool = True, activation: str | None = None):
        w = np.asarray(weight)
        if w.dtype.kind != "f":
            raise TypeError(f"weight: expected a float array, got {w.dtype}")
        if w.ndim != 2:
            raise ValueError(f"weight: expected [out_features, in_features], got shape {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("weight: contains NaN or infinity")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {_ACTIVATIONS}, got {activation!r}")
        out_features, in_features = w.shape
        if bias is not None:
            bias = np.asarray(bias)
            if bias.dtype.kind != "f":
                raise TypeError(f"bias: expected a float array, got {bias.dtype}")
            if bias.shape != (out_features,):
                raise ValueError(f"bias: expected shape ({out_features},), got {bias.shape}")
            bias = np.ascontiguousarray(bias, dtype=np.float32)
        w_q, scale = quantize_weight_symmetric(w.astype(np.float32, copy=False), per_channel=per_channel)
        self.weight_int8 = w_q
        self.weight_scale = np.ascontiguousarray(np.broadcast_to(scale, (out_features,)), dtype=np.float32)
        self.bias = bias
        self.activation = activation
        self.in_features = in_features
        self.out_features = out_features
        self._packed = _core.PackedWeights(np.ascontiguousarray(w_q.T))
        self._relu = activation == "relu"

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.float32:
            if x.dtype.kind != "f":
                raise TypeError(f"x: expected float32, got {x.dtype}")
            x = x.astype(np.float32)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected shape [..., {self.in_features}], got {x.shape}")
        lead = x.shape[:-1]
        y = _core.quantized_linear(x.reshape(-1, self.in_features), self._packed, self.weight_scale, self.bias, self._relu)
        return y.reshape(*lead, self.out_features)

    @property
    def nbytes(self) -> int:
        """Bytes of the quantized parameters (int8 weights, float32 scales and bias)."""
        bias = 0 if self.bias is None else self.bias.nbytes
        return self.weight_int8.nbytes + self.weight_scale.nbytes + bias

    def __repr__(self) -> str:
        act = f", activation={self.activation!r}" if self.activation else ""
        return f"QuantizedLinear(in_features={self.in_features}, out_features={self.out_features}{act})"
