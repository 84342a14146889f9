"""Bad input to the C++-backed ops gives a clear TypeError / ValueError naming the
argument (never a crash); non-contiguous arrays are accepted."""

import numpy as np
import pytest

import eightbit as eb
from eightbit import ops

u8, i8, f32 = np.uint8, np.int8, np.float32
A = np.zeros((4, 8), u8)
B = np.zeros((8, 5), i8)
PW = eb.pack_weights(B)

CASES = [
    (lambda: ops.matmul_integer(A.astype(f32), B), TypeError, "a"),
    (lambda: ops.matmul_integer(A, B.astype(np.int16)), TypeError, "b"),
    (lambda: ops.matmul_integer(A, np.zeros((7, 5), i8)), ValueError, "K"),
    (lambda: ops.matmul_integer(A, PW[None] if False else np.zeros((9, 5), i8)), ValueError, "K"),
    (lambda: ops.matmul_integer(np.zeros((4, 9), u8), PW), ValueError, "K"),
    (lambda: ops.matmul_integer(A, PW, np.int8(1)), TypeError, "a_zero_point"),
    (lambda: ops.matmul_integer(A, PW, np.zeros(3, u8)), ValueError, "a_zero_point"),
    (lambda: ops.matmul_integer(A, B, None, np.zeros(4, i8)), ValueError, "b_zero_point"),
    (lambda: ops.matmul_integer(A, B, None, np.uint8(0)), TypeError, "b_zero_point"),
    (lambda: ops.matmul_integer(np.uint8(3), B), ValueError, "a"),
    (lambda: ops.matmul_integer(A, PW, 3), TypeError, "a_zero_point"),
    (lambda: eb.pack_weights(np.zeros((2, 3, 4), i8)), ValueError, "b"),
    (lambda: eb.pack_weights(np.zeros((3, 4), f32)), TypeError, "b"),
    (lambda: eb.pack_weights(np.zeros((3, 4), i8), np.zeros(3, i8)), ValueError, "b_zero_point"),
    (lambda: ops.qlinear_matmul(A, f32(0), u8(0), PW, f32(1), i8(0), f32(1), u8(0)), ValueError, "a_scale"),
    (lambda: ops.qlinear_matmul(A, f32(1), u8(0), PW, f32(np.inf), i8(0), f32(1), u8(0)), ValueError, "b_scale"),
    (lambda: ops.qlinear_matmul(A, f32(1), u8(0), PW, np.ones(4, f32), i8(0), f32(1), u8(0)), ValueError, "b_scale"),
    (lambda: ops.qlinear_matmul(A, f32(1), u8(0), PW, f32(1), i8(0), f32(-2), u8(0)), ValueError, "y_scale"),
    (lambda: ops.qlinear_matmul(A, f32(1), u8(0), PW, f32(1), i8(0), f32(1), np.int32(0)), TypeError, "y_zero_point"),
    (lambda: ops.qlinear_matmul(A, np.ones(4, f32), u8(0), PW, f32(1), i8(0), f32(1), u8(0)), ValueError, "a_scale"),
    (lambda: ops.qlinear_matmul(A, f32(1), u8(0), PW, f32(1), i8(0), f32(1), u8(0), requant="int"), ValueError, "requant"),
    (lambda: ops.qlinear_matmul(A, f32(1), u8(0), PW, f32(1e30), i8(0), f32(1e-30), u8(0), requant="fixed"), ValueError, ""),
    (lambda: ops.quantize_linear(np.zeros(3, np.int32), f32(1)), TypeError, "x"),
    (lambda: ops.quantize_linear(np.zeros(3, f32), f32(0)), ValueError, "y_scale"),
    (lambda: ops.quantize_linear(np.zeros(3, f32), f32(1), np.int16(0)), TypeError, "y_zero_point"),
    (lambda: ops.quantize_linear(np.zeros((2, 3), f32), np.ones(3, f32), np.zeros(3, u8), axis=0), ValueError, "y_scale"),
    (lambda: ops.quantize_linear(np.zeros((2, 3), f32), np.ones(3, f32), np.zeros(2, u8), axis=1), ValueError, "y_zero_point"),
    (lambda: ops.quantize_linear(np.zeros((2, 3), f32), np.ones(3, f32), np.zeros(3, u8), axis=5), ValueError, "axis"),
    (lambda: ops.dequantize_linear(np.zeros(3, f32), f32(1)), TypeError, "x"),
    (lambda: ops.dequantize_linear(np.zeros(3, u8), f32(1), i8(0)), TypeError, "x_zero_point"),
    (lambda: ops.dequantize_linear(np.zeros(3, np.int32), f32(1), np.int32(2)), ValueError, "x_zero_point"),
    (lambda: ops.dynamic_quantize_linear(np.array([1, np.nan], f32)), ValueError, "x"),
    (lambda: ops.dynamic_quantize_linear(np.zeros(3, u8)), TypeError, "x"),
    (lambda: eb.QuantizedLinear(np.zeros((3, 4), np.int8)), TypeError, "weight"),
    (lambda: eb.QuantizedLinear(np.zeros(4, f32)), ValueError, "weight"),
    (lambda: eb.QuantizedLinear(np.zeros((3, 4), f32), np.zeros(4, f32)), ValueError, "bias"),
    (lambda: eb.QuantizedLinear(np.zeros((3, 4), f32), activation="gelu"), ValueError, "activation"),
    (lambda: eb.QuantizedLinear(np.ones((3, 4), f32))(np.zeros((2, 5), f32)), ValueError, "x"),
    (lambda: eb.QuantizedLinear(np.ones((3, 4), f32))(np.zeros((2, 4), np.int32)), TypeError, "x"),
    (lambda: eb.QuantizedLinear(np.ones((3, 4), f32))(np.full((2, 4), np.inf, f32)), ValueError, "x"),
]


@pytest.mark.parametrize("call,exc,word", CASES)
def test_bad_input_raises_named_error(call, exc, word):
    with pytest.raises(exc) as info:
        call()
    assert word in str(info.value)


def test_non_contiguous_inputs_are_accepted(rng):
    a = rng.integers(0, 256, (20, 64), dtype=u8)[:, ::2]          # strided columns
    b = np.asfortranarray(rng.integers(-128, 128, (32, 12), dtype=i8))
    expected = eb.reference.matmul_integer(np.ascontiguousarray(a), np.ascontiguousarray(b), u8(3))
    np.testing.assert_array_equal(ops.matmul_integer(a, b, u8(3)), expected)
    np.testing.assert_array_equal(ops.matmul_integer(a, eb.pack_weights(b), u8(3)), expected)
    x = rng.standard_normal((6, 8)).astype(f32).T
    np.testing.assert_array_equal(ops.quantize_linear(x, f32(0.1)), eb.reference.quantize_linear(x, f32(0.1)))
