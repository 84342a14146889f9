"""The ``.eb`` model file: one Plan in a versioned, little-endian, memory-mappable file
(docs/format.md is the specification; this module is its Python reader and writer).

    header (64 bytes) | metadata (typed value tree) | padding | data (64-byte-aligned constants)

The reader trusts nothing: every offset, size, count, length, nesting depth and dtype is checked
against the bytes actually present before it is used, and both sections carry a CRC-32. Any
problem raises ``ModelFileError`` (a ValueError) that says what is wrong and where.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from .plan import Plan, Step, TensorSpec

MAGIC = b"EIGHTBIT"
VERSION = (1, 0)
HEADER = struct.Struct("<8sHHIQQQQQII")  # magic, major, minor, header size, file size,
#                                          meta offset, meta size, data offset, data size, meta crc, data crc
ALIGN = 64
MAX_DEPTH = 16
MAX_NDIM = 8

# value tags of the metadata tree
T_NONE, T_BOOL, T_INT, T_FLOAT, T_STR, T_LIST, T_DICT, T_ARRAY = range(8)
DTYPES = {1: np.dtype(np.uint8), 2: np.dtype(np.int8), 3: np.dtype(np.int32), 4: np.dtype(np.float32)}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}
TENSOR_DTYPES = {"uint8": np.dtype(np.uint8), "int8": np.dtype(np.int8), "float32": np.dtype(np.float32)}


class ModelFileError(ValueError):
    """A .eb file that is truncated, corrupted, of another version, or not a model file."""


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
    return {
        "format": "eightbit-plan",
        "producer": producer,
        "inputs": list(plan.inputs),
        "outputs": list(plan.outputs),
        "tensors": [{"name": t.name, "dtype": str(t.dtype), "shape": [-1 if d is None else d for d in t.shape],
                     "scale": t.scale, "zero_point": t.zero_point} for t in plan.tensors.values()],
        "steps": [{"op": s.op, "inputs": list(s.inputs), "output": s.output, "attrs": s.attrs,
                   "consts": s.consts, "source": s.source} for s in plan.steps],
    }


def encode(plan: Plan, producer: str = "eightbit") -> bytes:
    w = _Writer()
    w.value(_plan_tree(plan, producer))
    meta_offset = HEADER.size
    data_offset = meta_offset + len(w.meta) + (-(meta_offset + len(w.meta)) % ALIGN)
    size = data_offset + len(w.data)
    header = HEADER.pack(MAGIC, *VERSION, HEADER.size, size, meta_offset, len(w.meta), data_offset, len(w.data),
                         zlib.crc32(w.meta), zlib.crc32(w.data))
    return header + bytes(w.meta) + b"\0" * (data_offset - meta_offset - len(w.meta)) + bytes(w.data)


def save(plan: Plan, path, producer: str = "eightbit") -> None:
    with open(path, "wb") as f:
        f.write(encode(plan, producer))


# ---- reading -----------------------------------------------------------------------------------

class _Reader:
    def __init__(self, meta: memoryview, data: memoryview):
        self.meta, self.data, self.pos = meta, data, 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.meta):
            raise ModelFileError(f"metadata truncated: {what} needs {n} bytes at offset {self.pos}, "
                                 f"{len(self.meta) - self.pos} left")
        b = self.meta[self.pos:self.pos + n]
        self.pos += n
        return b

    def u(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def value(self, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ModelFileError(f"metadata nested deeper than {MAX_DEPTH} levels")
        (tag,) = self.u("<B", "a value tag")
        if tag == T_NONE:
            return None
        if tag == T_BOOL:
            (b,) = self.u("<B", "a bool")
            return bool(b)
        if tag == T_INT:
            return self.u("<q", "an int")[0]
        if tag == T_FLOAT:
            return self.u("<d", "a float")[0]
        if tag == T_STR:
            (n,) = self.u("<I", "a string length")
            try:
                return bytes(self.take(n, "a string")).decode("utf-8")
            except UnicodeDecodeError:
                raise ModelFileError(f"metadata string at offset {self.pos - n} is not UTF-8") from None
        if tag in (T_LIST, T_DICT):
            (n,) = self.u("<I", "a count")
            if n > len(self.meta) - self.pos:  # every item takes at least one byte
                raise ModelFileError(f"metadata count {n} at offset {self.pos - 4} exceeds the bytes left")
            if tag == T_LIST:
                return tuple(self.value(depth + 1) for _ in range(n))
            out = {}
            for _ in range(n):
                key = self.value(depth + 1)
                if not isinstance(key, str):
                    raise ModelFileError(f"metadata dict key before offset {self.pos} is not a string")
                out[key] = self.value(depth + 1)
            return out
        if tag == T_ARRAY:
            return self.array()
        raise ModelFileError(f"unknown metadata tag {tag} at offset {self.pos - 1}")

    def array(self) -> np.ndarray:
        code, ndim = self.u("<BB", "an array header")
        if code not in DTYPES:
            raise ModelFileError(f"unknown array dtype code {code} at offset {self.pos - 2}")
        if ndim > MAX_NDIM:
            raise ModelFileError(f"array with {ndim} dimensions (at most {MAX_NDIM})")
        shape = self.u(f"<{ndim}q", "array dimensions")
        offset, nbytes = self.u("<QQ", "an array location")
        dtype = DTYPES[code]
        if any(d < 0 for d in shape):
            raise ModelFileError(f"array with a negative dimension {shape}")
        count = 1
        for d in shape:
            count *= d
            if count * dtype.itemsize > len(self.data):
                break
        if nbytes != count * dtype.itemsize:
            raise ModelFileError(f"array of shape {shape} and dtype {dtype} declares {nbytes} bytes")
        if offset % ALIGN or offset + nbytes > len(self.data):
            raise ModelFileError(f"array bytes [{offset}, {offset + nbytes}) are unaligned or outside the "
                                 f"data section ({len(self.data)} bytes)")
        return np.frombuffer(self.data, dtype.newbyteorder("<"), count, offset).reshape(shape).astype(dtype)


def decode(buf) -> Plan:
    buf = memoryview(bytes(buf))
    if len(buf) < HEADER.size:
        raise ModelFileError(f"not a model file: {len(buf)} bytes, shorter than the {HEADER.size}-byte header")
    (magic, major, minor, header_size, size, meta_off, meta_size, data_off, data_size, meta_crc,
     data_crc) = HEADER.unpack(buf[:HEADER.size])
    if magic != MAGIC:
        raise ModelFileError("not an eightbit model file (bad magic)")
    if major != VERSION[0]:
        raise ModelFileError(f"model file version {major}.{minor}; this eightbit reads version {VERSION[0]}.x")
    if header_size != HEADER.size or size != len(buf):
        raise ModelFileError(f"file is {len(buf)} bytes but its header says {size} (truncated or padded)")
    if not (HEADER.size <= meta_off and meta_off + meta_size <= data_off and data_off % ALIGN == 0
            and data_off + data_size == size):
        raise ModelFileError("section offsets in the header are inconsistent")
    meta, data = buf[meta_off:meta_off + meta_size], buf[data_off:data_off + data_size]
    if zlib.crc32(meta) != meta_crc or zlib.crc32(data) != data_crc:
        raise ModelFileError("checksum mismatch: the file is corrupted")
    reader = _Reader(meta, data)
    tree = reader.value()
    if reader.pos != len(meta):
        raise ModelFileError(f"{len(meta) - reader.pos} unread bytes after the metadata")
    return _plan_from_tree(tree)


def _field(d, key, kind, where):
    if not isinstance(d, dict) or key not in d:
        raise ModelFileError(f"{where}: missing {key!r}")
    v = d[key]
    if kind is not None and not isinstance(v, kind):
        raise ModelFileError(f"{where}: {key!r} has the wrong type ({type(v).__name__})")
    return v


def _plan_from_tree(tree) -> Plan:
    if _field(tree, "format", str, "model") != "eightbit-plan":
        raise ModelFileError("not an eightbit plan")
    tensors = {}
    for i, t in enumerate(_field(tree, "tensors", tuple, "model")):
        where = f"tensor {i}"
        name = _field(t, "name", str, where)
        dtype = TENSOR_DTYPES.get(_field(t, "dtype", str, where))
        shape = _field(t, "shape", tuple, where)
        if dtype is None or not all(isinstance(d, int) and (d > 0 or (d == -1 and j == 0))
                                    for j, d in enumerate(shape)):
            raise ModelFileError(f"{where} ({name!r}): bad dtype or shape")
        scale, zp = t.get("scale"), t.get("zero_point")
        if dtype != np.float32:
            if not isinstance(scale, float) or not isinstance(zp, int):
                raise ModelFileError(f"{where} ({name!r}): a quantized tensor needs a float scale and an int zero point")
            info = np.iinfo(dtype)
            if not (0 < scale < float("inf")) or not info.min <= zp <= info.max:
                raise ModelFileError(f"{where} ({name!r}): scale {scale} / zero point {zp} out of range")
        tensors[name] = TensorSpec(name, dtype, tuple(None if d == -1 else d for d in shape), scale, zp)
    steps = []
    for i, s in enumerate(_field(tree, "steps", tuple, "model")):
        where = f"step {i}"
        consts = _field(s, "consts", dict, where)
        if not all(isinstance(v, np.ndarray) for v in consts.values()):
            raise ModelFileError(f"{where}: constants must be arrays")
        steps.append(Step(_field(s, "op", str, where), _field(s, "inputs", tuple, where),
                          _field(s, "output", str, where), dict(_field(s, "attrs", dict, where)), dict(consts),
                          _field(s, "source", str, where)))
    plan = Plan(tensors, steps, list(_field(tree, "inputs", tuple, "model")),
                list(_field(tree, "outputs", tuple, "model")))
    try:
        return plan.validate()
    except ValueError as e:
        raise ModelFileError(f"invalid plan: {e}") from None


def load(path) -> Plan:
    with open(path, "rb") as f:
        return decode(f.read())
