"""Corrupted ONNX files: random byte changes and truncations of valid models (a float file, and
an int8 model exported as QDQ and as QOperator) either import or raise a ValueError with a
message (OnnxImportError for what the importer finds; a ValueError from eb.quantize's checks for
a quantized model whose values no longer make sense), never another exception, never a crash.
Truncations always raise OnnxImportError."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

import eightbit as eb  # noqa: E402
from eightbit.onnx import OnnxImportError  # noqa: E402

import models  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data" / "onnx"


def _quantized_bytes(fmt):
    model, make_inputs = models.MODELS["resnet_block"]()
    qm = eb.quantize(eb.from_onnx(model), [make_inputs(np.random.default_rng(0), 8)])
    return eb.to_onnx(qm, format=fmt).SerializeToString()


SOURCES = {
    "float": lambda: (DATA / "flatten_by_shape.onnx").read_bytes(),
    "qdq": lambda: _quantized_bytes("qdq"),
    "qoperator": lambda: _quantized_bytes("qoperator"),
}
IMPORT = {"float": eb.from_onnx, "qdq": eb.from_onnx_quantized, "qoperator": eb.from_onnx_quantized}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_random_byte_changes_import_or_raise_onnx_import_error(source):
    data = SOURCES[source]()
    rng = np.random.default_rng(20261127)
    outcomes = {"imported": 0, "refused": 0}
    for _ in range(150):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        try:
            IMPORT[source](bytes(b))
            outcomes["imported"] += 1
        except ValueError as e:              # OnnxImportError is one
            assert str(e)
            outcomes["refused"] += 1
    assert outcomes["imported"] and outcomes["refused"], outcomes   # both kinds of mutation happened


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_truncations_raise_onnx_import_error(source):
    data = SOURCES[source]()
    for cut in np.random.default_rng(1).integers(1, len(data) - 1, 40):
        with pytest.raises(OnnxImportError):
            IMPORT[source](data[:int(cut)])
