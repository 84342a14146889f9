"""Block-quantized low-bit weights: linear layers whose weights are 4-bit (or 2-, 3-bit) codes with
one float32 scale per block of 16-256 input channels (ONNX's blocked DequantizeLinear, ONNX
Runtime's MatMulNBits), their input rows quantized to symmetric int8 at run time. Run by the C++
kernels (AVX-512 VNNI; elsewhere the portable loop), bit-identical to
``eightbit.reference.blockwise``.

    w4 = eb.lowbit.pack_int4_weights(w, block_size=32)    # w float [N, K]
    y = eb.lowbit.blockwise_linear(x, w4, bias=b)          # x float [..., K] -> float32 [..., N]

The weights take half a byte each plus 4 / block_size bytes of scale: 0.625 bytes per weight
at block size 32, about 0.53 at 128.
"""
from __future__ import annotations

import numpy as np

from .numerics.checks import float_array
from .reference import blockwise as _ref
from .runtime import core as _core

__all__ = ["Int4Weights", "pack_int4_weights", "blockwise_linear"]


class Int4Weights:
    """Codes int8 [N, K] in [-8, 7] and scales float32 [N, K / block_size], packed once for the
    kernels (two codes a byte). ``codes`` and ``scales`` are kept as given."""

    def __init__(self, codes: np.ndarray, scales: np.ndarray, block_size: int, bits: int = 4):
        self.codes, self.scales, self.bits = codes, scales, bits
        self._packed = _core.blockwise_pack(codes, scales, int(block_size))

    @classmethod
    def from_codes(cls, codes, scales, block_size: int) -> "Int4Weights":
        """Weights from given codes (int8 [N, K], each in [-8, 7]) and scales (float32
        [N, K / block_size], finite)."""
        codes = np.ascontiguousarray(codes)
        scales = np.ascontiguousarray(scales)
        return cls(codes, scales, block_size, 4)

    @property
    def n(self) -> int:
        return int(self._packed.n)

    @property
    def k(self) -> int:
        return int(self._packed.k)

    @property
    def block_size(self) -> int:
        return int(self._packed.block_size)

    @property
    def nbytes(self) -> int:
        """Bytes the kernels hold: half a byte per weight (padded to 16 rows) and the scales."""
        return int(self._packed.nbytes)

    def __repr__(self) -> str:
        return f"Int4Weights(n={self.n}, k={self.k}, block_size={self.block_size}, bits={self.bits})"


def pack_int4_weights(w, block_size: int = 32, bits: int = 4) -> Int4Weights:
    """w real [N, K] -> Int4Weights: symmetric codes of ``bits`` (2-4) bits per block of
    ``block_size`` input channels, scale = max |w| / (2^(bits-1) - 1) (eightbit.reference.blockwise
    .quantize_blockwise)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 4:
        raise ValueError(f"bits: 2 to 4 for packed low-bit weights, got {bits!r} (8-bit weights: the int8 layers)")
    codes, scales = _ref.quantize_blockwise(float_array(w, "w"), block_size, int(bits))
    return Int4Weights(codes, scales, block_size, int(bits))


def blockwise_linear(x, w: Int4Weights, bias=None, activation=None) -> np.ndarray:
    """y = x W^T (+ bias) (relu) with x's rows quantized to symmetric int8 and W block-quantized:
    x float [..., K] (finite), bias float32 [N] or None, activation None or "relu". Returns
    float32 [..., N] (eightbit.reference.blockwise.blockwise_linear, bit for bit)."""
    if not isinstance(w, Int4Weights):
        raise TypeError(f"w: expected Int4Weights (pack_int4_weights), got {type(w).__name__}")
    if activation not in (None, "relu"):
        raise ValueError(f"activation: expected None or 'relu', got {activation!r}")
    x = float_array(x, "x")
    if x.ndim < 1 or x.shape[-1] != w.k:
        raise ValueError(f"x must have shape [..., {w.k}] (the weights' K), got {x.shape}")
    b = None if bias is None else float_array(bias, "bias")
    y = _core.blockwise_linear(np.ascontiguousarray(x.reshape(-1, w.k)), w._packed, b, activation == "relu")
    return y.reshape(x.shape[:-1] + (w.n,))


def blockwise_linear_codes(x, codes, scales, block_size, bias=None, activation=None) -> np.ndarray:
    """eightbit.reference.blockwise.blockwise_linear's signature on the kernels (the plan's
    blockwise_linear step): ``codes`` int8 [N, K] or Int4Weights packed with these scales."""
    if not isinstance(codes, Int4Weights):
        codes = Int4Weights.from_codes(codes, scales, block_size)
    elif codes.block_size != int(block_size) or not np.array_equal(codes.scales, np.asarray(scales)):
        raise ValueError("scales / block_size: differ from the ones the weights were packed with")
    return blockwise_linear(x, codes, bias, activation)
