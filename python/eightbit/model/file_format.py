"""The ``.eb`` model file: one lowered Plan in a versioned, little-endian, memory-mappable file
(docs/format.md is the specification; this module is its writer).

    header (64 bytes) | metadata (typed value tree) | padding | data (64-byte-aligned constants)

There is one reader, in C++ (csrc/model/model_file.cpp, ``_core.ModelFile``), which the Python
package and the C library share: it trusts nothing (every offset, size, count, length, nesting
depth and dtype is checked against the bytes actually present before it is used, array ranges may
not overlap, both sections carry a CRC-32) and raises ``ModelFileError`` (a ValueError) that says
what is wrong and where. ``decode`` / ``load`` turn its tree into a validated Plan whose arrays
are read-only views of the file.
"""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from ..runtime import core as _core
from ..graph.ir import SeqLen
from .lowering import SEQUENCE_CODE, lowered_shape
from .plan import Plan, Step, TensorSpec
from .stored_weights import pack_codes, stored_bytes, stored_consts, unpack_codes, unpacked_consts  # noqa: F401

ModelFileError = _core.ModelFileError  # a ValueError: a file that is truncated, corrupted, hostile or of another version

MAGIC = b"EIGHTBIT"
VERSION = (2, 0)
HEADER = struct.Struct("<8sHHIQQQQQII")  # magic, major, minor, header size, file size,
#                                          meta offset, meta size, data offset, data size, meta crc, data crc
ALIGN = 64
MAX_NDIM = 8

# value tags of the metadata tree
T_NONE, T_BOOL, T_INT, T_FLOAT, T_STR, T_LIST, T_DICT, T_ARRAY = range(8)
DTYPES = {1: np.dtype(np.uint8), 2: np.dtype(np.int8), 3: np.dtype(np.int32), 4: np.dtype(np.float32)}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}
TENSOR_DTYPES = {"uint8": np.dtype(np.uint8), "int8": np.dtype(np.int8), "float32": np.dtype(np.float32)}


# ---- writing -----------------------------------------------------------------------------------

class _Writer:
    def __init__(self):
        self.meta = bytearray()
        self.data = bytearray()

    def value(self, v) -> None:
        out = self.meta
        if v is None:
            out += bytes([T_NONE])
        elif isinstance(v, (bool, np.bool_)):
            out += bytes([T_BOOL, int(bool(v))])
        elif isinstance(v, (int, np.integer)):
            out += bytes([T_INT]) + struct.pack("<q", int(v))
        elif isinstance(v, (float, np.floating)):
            out += bytes([T_FLOAT]) + struct.pack("<d", float(v))
        elif isinstance(v, str):
            b = v.encode("utf-8")
            out += bytes([T_STR]) + struct.pack("<I", len(b)) + b
        elif isinstance(v, np.ndarray):
            self.array(v)
        elif isinstance(v, (list, tuple)):
            out += bytes([T_LIST]) + struct.pack("<I", len(v))
            for item in v:
                self.value(item)
        elif isinstance(v, dict):
            out += bytes([T_DICT]) + struct.pack("<I", len(v))
            for key, item in v.items():
                self.value(str(key))
                self.value(item)
        else:
            raise TypeError(f"cannot store a {type(v).__name__} in a model file")

    def array(self, a: np.ndarray) -> None:
        a = np.ascontiguousarray(a)
        if a.dtype not in DTYPE_CODES:
            raise TypeError(f"cannot store a {a.dtype} array in a model file")
        if a.ndim > MAX_NDIM:
            raise ValueError(f"cannot store a {a.ndim}-D array (at most {MAX_NDIM} dimensions)")
        self.data += b"\0" * (-len(self.data) % ALIGN)
        offset = len(self.data)
        self.data += a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        self.meta += bytes([T_ARRAY, DTYPE_CODES[a.dtype], a.ndim])
        self.meta += struct.pack(f"<{a.ndim}q", *a.shape) + struct.pack("<QQ", offset, a.nbytes)


def _plan_tree(plan: Plan, producer: str) -> dict:
    seq = plan.sequence()
    return {
        "format": "eightbit-plan",
        "producer": producer,
        "inputs": list(plan.inputs),
        "outputs": list(plan.outputs),
        "tensors": [{"name": t.name, "dtype": str(t.dtype), "shape": lowered_shape(t),
                     "scale": t.scale, "zero_point": t.zero_point} for t in plan.tensors.values()],
        "steps": [_step_tree(s) for s in plan.steps],
        **({} if seq is None else {"sequence": [seq.lo, seq.hi]}),
    }


def _step_tree(s) -> dict:
    consts, lowered = stored_consts(s)
    return {"op": s.op, "inputs": list(s.inputs), "output": s.output, "attrs": _seq_out(s.attrs),
            "consts": consts, "source": s.source, "lowered": lowered}


def _seq_out(value):
    """Attributes with the sequence dimension written as the string "S" (in tuples only)."""
    if isinstance(value, dict):
        return {k: _seq_out(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)("S" if isinstance(v, SeqLen) else _seq_out(v) for v in value)
    return value


def _seq_in(value, seq):
    """_seq_out undone: "S" inside a tuple is the plan's sequence dimension."""
    if isinstance(value, dict):
        return {k: _seq_in(v, seq) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        if seq is None and "S" in value:
            raise ModelFileError("an attribute holds the sequence dimension, but the model declares none")
        return type(value)(seq if isinstance(v, str) and v == "S" else _seq_in(v, seq) for v in value)
    return value


def encode(plan: Plan, producer: str = "eightbit") -> bytes:
    return encode_tree(_plan_tree(plan, producer))


def encode_tree(tree) -> bytes:
    """Any value tree as a file (header, metadata, data, both CRCs): the writer under ``encode``,
    also used by tests to write files a Plan would refuse."""
    w = _Writer()
    w.value(tree)
    meta_offset = HEADER.size
    data_offset = meta_offset + len(w.meta) + (-(meta_offset + len(w.meta)) % ALIGN)
    size = data_offset + len(w.data)
    header = HEADER.pack(MAGIC, *VERSION, HEADER.size, size, meta_offset, len(w.meta), data_offset, len(w.data),
                         zlib.crc32(w.meta), zlib.crc32(w.data))
    return header + bytes(w.meta) + b"\0" * (data_offset - meta_offset - len(w.meta)) + bytes(w.data)


def save(plan: Plan, path, producer: str = "eightbit") -> None:
    with open(path, "wb") as f:
        f.write(encode(plan, producer))


# ---- reading (the C++ reader's tree to a Plan) --------------------------------------------------

def read(source) -> tuple:
    """(the C++ ModelFile, its validated Plan) of a path (memory-mapped) or of bytes (copied)."""
    file, tree = read_tree(source)
    return file, plan_from_tree(tree)


def read_tree(source) -> tuple:
    """(the C++ ModelFile, its checked value tree) of a path (memory-mapped) or of bytes (copied):
    what ``read`` builds a Plan from, and ``eb.load`` tells a model from an ensemble by."""
    if isinstance(source, (str, os.PathLike)):
        file = _core.ModelFile.map(os.fspath(source))
    else:
        file = _core.ModelFile.copy(memoryview(source).cast("B"))
    return file, file.tree()


def decode(buf) -> Plan:
    return read(bytes(buf))[1]


def _field(d, key, kind, where):
    if not isinstance(d, dict) or key not in d:
        raise ModelFileError(f"{where}: missing {key!r}")
    v = d[key]
    if kind is not None and not isinstance(v, kind):
        raise ModelFileError(f"{where}: {key!r} has the wrong type ({type(v).__name__})")
    return v


def plan_from_tree(tree) -> Plan:
    if _field(tree, "format", str, "model") != "eightbit-plan":
        raise ModelFileError("not an eightbit plan")
    seq = None
    if "sequence" in tree:
        bounds = _field(tree, "sequence", tuple, "model")
        try:
            seq = SeqLen(*bounds)
        except (TypeError, ValueError):
            raise ModelFileError(f"model: 'sequence' must be two ints 1 <= lo <= hi, got {bounds!r}") from None
    tensors = {}
    for i, t in enumerate(_field(tree, "tensors", tuple, "model")):
        where = f"tensor {i}"
        name = _field(t, "name", str, where)
        dtype = TENSOR_DTYPES.get(_field(t, "dtype", str, where))
        shape = _field(t, "shape", tuple, where)
        if dtype is None or not all(isinstance(d, int) and (d > 0 or (d == -1 and j == 0) or
                                                            (d == SEQUENCE_CODE and j > 0 and seq is not None))
                                    for j, d in enumerate(shape)):
            raise ModelFileError(f"{where} ({name!r}): bad dtype or shape")
        scale, zp = t.get("scale"), t.get("zero_point")
        if dtype != np.float32:
            if not isinstance(scale, float) or not isinstance(zp, int):
                raise ModelFileError(f"{where} ({name!r}): a quantized tensor needs a float scale and an int zero point")
            info = np.iinfo(dtype)
            if not (0 < scale < float("inf")) or not info.min <= zp <= info.max:
                raise ModelFileError(f"{where} ({name!r}): scale {scale} / zero point {zp} out of range")
        tensors[name] = TensorSpec(name, dtype, tuple(None if d == -1 else seq if d == SEQUENCE_CODE else d
                                                      for d in shape), scale, zp)
    steps = []
    for i, s in enumerate(_field(tree, "steps", tuple, "model")):
        where = f"step {i}"
        consts = _field(s, "consts", dict, where)
        if not all(isinstance(v, np.ndarray) for v in consts.values()):
            raise ModelFileError(f"{where}: constants must be arrays")
        lowered = s.get("lowered")
        if lowered is not None and not isinstance(lowered, dict):
            raise ModelFileError(f"{where}: 'lowered' must be a dict")
        op = _field(s, "op", str, where)
        if "w_packed" in consts:
            try:
                consts, lowered = unpacked_consts(op, consts, lowered, s.get("attrs"))
            except ValueError as e:
                raise ModelFileError(f"{where}: {e}") from None
        steps.append(Step(op, _field(s, "inputs", tuple, where),
                          _field(s, "output", str, where), _seq_in(dict(_field(s, "attrs", dict, where)), seq),
                          dict(consts),
                          _field(s, "source", str, where), lowered))
    plan = Plan(tensors, steps, list(_field(tree, "inputs", tuple, "model")),
                list(_field(tree, "outputs", tuple, "model")))
    try:
        return plan.validate()
    except ValueError as e:
        raise ModelFileError(f"invalid plan: {e}") from None
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        # a step missing an attribute, or one of the wrong type: the file, not the code, is wrong
        raise ModelFileError(f"invalid plan: {type(e).__name__}: {e}") from None


def load(path) -> Plan:
    return read(path)[1]
