"""Misuse of eightbit.reference raises TypeError / ValueError naming the argument (never assert)."""
import numpy as np
import pytest

import eightbit.reference as R

F = np.float32
u8 = np.uint8
i8 = np.int8


def a_u8(*shape):
    return np.zeros(shape, u8)


CASES = [
    # (callable, exception, text the message must contain)
    (lambda: R.matmul_integer(np.zeros((2, 3), np.int16), a_u8(3, 2)), TypeError, "a must have dtype"),
    (lambda: R.matmul_integer(a_u8(2, 3), np.zeros((3, 2), np.float32)), TypeError, "b must have dtype"),
    (lambda: R.matmul_integer(a_u8(2, 3), a_u8(4, 2)), ValueError, "K=3"),
    (lambda: R.matmul_integer(a_u8(2, 3), a_u8(), ), ValueError, "at least 1 dimension"),
    (lambda: R.matmul_integer(a_u8(2, 2, 3), a_u8(3, 3, 2)), ValueError, "batch dimensions"),
    (lambda: R.matmul_integer(a_u8(2, 3), a_u8(3, 2), np.array(1, i8)), TypeError, "a_zero_point must have dtype uint8"),
    (lambda: R.matmul_integer(a_u8(2, 3), a_u8(3, 2), None, np.zeros(3, u8)), ValueError, "b_zero_point must be a scalar or have shape (2,)"),
    (lambda: R.matmul_integer(a_u8(2, 3), a_u8(3, 2), np.zeros(3, u8)), ValueError, "a_zero_point"),
    (lambda: R.matmul_integer(a_u8(2, 3), a_u8(3, 2), 1), TypeError, "a_zero_point must have dtype"),
    (lambda: R.quantize_linear(np.zeros(3, F), F(0.0)), ValueError, "y_scale must be finite and > 0"),
    (lambda: R.quantize_linear(np.zeros(3, F), F(np.nan)), ValueError, "y_scale"),
    (lambda: R.quantize_linear(np.zeros(3, F), F(1.0), np.array(0, np.int16)), TypeError, "y_zero_point"),
    (lambda: R.quantize_linear(np.zeros(3, F), F(1.0), 0), TypeError, "y_zero_point"),
    (lambda: R.quantize_linear(np.zeros((2, 3), F), np.ones(2, F), np.zeros(3, u8)), ValueError, "shape"),
    (lambda: R.quantize_linear(np.zeros((2, 3), F), np.ones(2, F), np.zeros(2, u8), axis=1), ValueError, "axis"),
    (lambda: R.quantize_linear(np.zeros((2, 3), F), np.ones(2, F), np.zeros(2, u8), axis=2), ValueError, "axis"),
    (lambda: R.quantize_linear(np.array(["a"]), F(1.0)), TypeError, "x must be"),
    (lambda: R.dequantize_linear(np.zeros(3, F), F(1.0)), TypeError, "x must have dtype"),
    (lambda: R.dequantize_linear(np.zeros(3, u8), F(-1.0)), ValueError, "x_scale"),
    (lambda: R.dequantize_linear(np.zeros(3, u8), F(1.0), np.array(0, i8)), TypeError, "x_zero_point must have dtype uint8"),
    (lambda: R.dequantize_linear(np.zeros(3, np.int32), F(1.0), np.array(1, np.int32)), ValueError, "must be 0"),
    (lambda: R.dynamic_quantize_linear(np.array([1.0, np.nan], F)), ValueError, "finite"),
    (lambda: R.dynamic_quantize_linear(np.array([1.0, np.inf], F)), ValueError, "finite"),
    (lambda: R.dynamic_quantize_rows(np.zeros(4, F)), ValueError, "2-D"),
    (lambda: R.requantize_float(np.zeros(3, np.int64), F(1.0), 0, u8), TypeError, "acc_int32"),
    (lambda: R.requantize_float(np.zeros(3, np.int32), F(1.0), 300, u8), ValueError, "zero_point"),
    (lambda: R.requantize_float(np.zeros(3, np.int32), F(1.0), 0, np.int16), TypeError, "dtype"),
    (lambda: R.requantize_float(np.zeros((2, 3), np.int32), np.ones(2, F), 0, u8), ValueError, "multiplier_f32"),
    (lambda: R.requantize_float(np.zeros(3, np.int32), F(np.inf), 0, u8), ValueError, "multiplier_f32"),
    (lambda: R.requantize_fixed(np.zeros(3, np.int32), np.int32(2**30), np.int32(31), 0, i8), ValueError, "shift"),
    (lambda: R.requantize_fixed(np.zeros(3, np.int32), np.int32(-1), np.int32(0), 0, i8), ValueError, "m0"),
    (lambda: R.requantize_fixed(np.zeros(3, np.int32), F(0.5), np.int32(0), 0, i8), TypeError, "quantized_multiplier_int32"),
    (lambda: R.qlinear_matmul(a_u8(2, 3), F(1), u8(0), a_u8(3, 2), F(1), u8(0), F(1), u8(0), requant="double"), ValueError, "requant"),
    (lambda: R.qlinear_matmul(a_u8(2, 3), np.ones(2, F), u8(0), a_u8(3, 2), F(1), u8(0), F(1), u8(0)), ValueError, "a_scale must be a scalar"),
    (lambda: R.qlinear_matmul(a_u8(2, 3), F(1), u8(0), a_u8(3, 2), np.ones(3, F), u8(0), F(1), u8(0)), ValueError, "b_scale"),
    (lambda: R.qlinear_matmul(a_u8(2, 3), F(1), u8(0), a_u8(3, 2), F(1), i8(0), F(1), u8(0)), TypeError, "b_zero_point must have dtype uint8"),
    (lambda: R.qlinear_matmul(a_u8(2, 3), F(1), u8(0), a_u8(3, 2), F(1), u8(0), F(0), u8(0)), ValueError, "y_scale"),
    (lambda: R.qlinear_matmul(a_u8(2, 3), F(1), u8(0), a_u8(3, 2), F(1), u8(0), F(1), np.int32(0)), TypeError, "y_zero_point"),
    (lambda: R.quantized_linear(np.zeros((2, 3), F), np.zeros((4, 3), u8), np.ones(4, F)), TypeError, "w_q_int8 must have dtype int8"),
    (lambda: R.quantized_linear(np.zeros((2, 3), F), np.zeros((4, 5), i8), np.ones(4, F)), ValueError, "x_f32 must have shape"),
    (lambda: R.quantized_linear(np.zeros((2, 3), F), np.zeros((4, 3), i8), np.ones(3, F)), ValueError, "w_scale_f32"),
    (lambda: R.quantized_linear(np.zeros((2, 3), F), np.zeros((4, 3), i8), np.ones(4, F), np.ones(3, F)), ValueError, "bias_f32"),
    (lambda: R.quantized_linear(np.zeros((2, 3), F), np.zeros((4, 3), i8), np.ones(4, F), activation="gelu"), ValueError, "activation"),
    (lambda: R.quantized_linear(np.array([[np.nan, 0, 0]], F), np.zeros((4, 3), i8), np.ones(4, F)), ValueError, "finite"),
]


@pytest.mark.parametrize("call,exc,text", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_misuse_raises_named_error(call, exc, text):
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value)
