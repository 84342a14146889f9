"""Read an ONNX model (a path, bytes or an ``onnx.ModelProto``) and check it before conversion.

``load_model`` returns a ModelProto whose initializers are all in memory (external data is read
from the directory of the file), that passed ``onnx.checker`` and, when it could, ONNX shape
inference. Anything else (not a protobuf, a truncated file, a missing external data file, a
graph the checker rejects, an opset outside 7-21, an operator domain nobody defines) raises
``OnnxImportError`` naming what was wrong; protobuf's own errors never escape.

Older models (opsets 7-10 of the default domain) are converted to opset 11 (``MIN_OPSET``) with
``onnx.version_converter.convert_version`` as they are loaded; a model the converter cannot
convert raises ``OnnxImportError`` naming the converter's complaint. Opsets below 7 are refused.
"""
from __future__ import annotations

import os

from .errors import OnnxImportError, require_onnx

MIN_OPSET, MAX_OPSET = 11, 21
# opsets from here up to MIN_OPSET - 1 are converted to MIN_OPSET on load (onnx.version_converter)
MIN_CONVERTIBLE_OPSET = 7
# ai.onnx (the default), ONNX-ML, and ONNX Runtime's contrib ops (quantized models use them)
KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def load_model(model, *, check: bool = True):
    """The model as a checked ``onnx.ModelProto`` with its external data loaded."""
    onnx = require_onnx()
    if isinstance(model, onnx.ModelProto):
        proto, where = model, "model"
        if _has_external_data(proto):
            raise OnnxImportError("model: its initializers refer to external data files; pass the path of "
                                  "the .onnx file (or load it with onnx.load) so they can be found")
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto, where = _parse(bytes(model), "model bytes"), "model bytes"
        if _has_external_data(proto):
            raise OnnxImportError("model bytes: the initializers refer to external data files; pass the "
                                  "path of the .onnx file so they can be found")
    elif isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        where = f"ONNX file {path!r}"
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise OnnxImportError(f"{where}: cannot be read: {e.strerror or e}") from None
        proto = _parse(data, where)
        if _has_external_data(proto):
            _load_external(onnx, proto, os.path.dirname(os.path.abspath(path)), where)
    else:
        raise TypeError(f"model must be a path, bytes or an onnx.ModelProto, got {type(model).__name__}")
    proto = upgrade_opset(proto, where)
    if check:
        check_model(proto, where)
    return proto


def upgrade_opset(proto, where: str = "model"):
    """`proto` converted to opset ``MIN_OPSET`` when its default-domain opset is 7 to
    MIN_OPSET - 1 (onnx.version_converter); any other model is returned unchanged (a
    ModelProto passed in is never modified: the converter works on a copy)."""
    version = opset_of(proto)
    if not MIN_CONVERTIBLE_OPSET <= version < MIN_OPSET:
        return proto
    onnx = require_onnx()
    from onnx import version_converter
    try:
        converted = version_converter.convert_version(proto, MIN_OPSET)
    except Exception as e:                 # the converter's own errors (RuntimeError, ValidationError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxImportError(f"{where}: ONNX opset {version} is converted to opset {MIN_OPSET} on import, but "
                              f"onnx.version_converter failed: {first}") from None
    if not isinstance(converted, onnx.ModelProto) or opset_of(converted) != MIN_OPSET:
        raise OnnxImportError(f"{where}: ONNX opset {version} could not be converted to opset {MIN_OPSET} "
                              "(onnx.version_converter returned no opset-11 model)")
    return converted


def _parse(data: bytes, where: str):
    onnx = require_onnx()
    if not data:
        raise OnnxImportError(f"{where}: empty, not an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:                 # google.protobuf.message.DecodeError and friends
        raise OnnxImportError(f"{where}: not an ONNX model, or truncated (protobuf: {e})") from None
    if not proto.HasField("graph") or not proto.opset_import:
        raise OnnxImportError(f"{where}: not an ONNX model (no graph or no opset_import)")
    return proto


def _has_external_data(proto) -> bool:
    onnx = require_onnx()
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in _all_tensors(proto.graph))


def _all_tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t


def _load_external(onnx, proto, base_dir: str, where: str) -> None:
    """Read the external data of every tensor from files inside `base_dir` (the model's folder).
    A location outside it (absolute, with "..", or through a link leading out) is refused
    before the file is looked at, and the message says nothing about what is there."""
    from onnx.external_data_helper import load_external_data_for_model
    root = os.path.realpath(base_dir)
    for t in _all_tensors(proto.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        if not location:
            raise OnnxImportError(f"{where}: initializer {t.name!r} is stored in external data but names no file "
                                  "(no 'location')")
        file = os.path.realpath(os.path.join(root, location))
        try:
            inside = not os.path.isabs(location) and os.path.commonpath([root, file]) == root
        except ValueError:                 # another drive (Windows)
            inside = False
        if not inside:
            raise OnnxImportError(f"{where}: initializer {t.name!r} refers to external data at {location!r}, "
                                  "outside the model's folder; external data must lie in the folder of the "
                                  ".onnx file (refused without reading it)")
        if not os.path.isfile(file):
            raise OnnxImportError(f"{where}: initializer {t.name!r} is stored in the external data file "
                                  f"{location!r}, which is missing (looked in {base_dir})")
        bounds = []
        for key in ("offset", "length"):
            try:
                bounds.append(int(info.get(key) or 0))
            except ValueError:
                bounds.append(-1)
            if bounds[-1] < 0:
                raise OnnxImportError(f"{where}: initializer {t.name!r}: external data {key} {info.get(key)!r} is "
                                      "not a non-negative integer")
        need, have = sum(bounds), os.path.getsize(file)
        if need > have:
            raise OnnxImportError(f"{where}: external data file {location!r} is truncated: initializer "
                                  f"{t.name!r} needs bytes up to {need}, the file has {have}")
    try:
        load_external_data_for_model(proto, base_dir)
    except Exception as e:
        raise OnnxImportError(f"{where}: cannot read its external data: {e}") from None


def opset_of(proto, domain: str = "") -> int:
    """The model's opset version for `domain` ("" and "ai.onnx" are the same), or 0."""
    for o in proto.opset_import:
        if o.domain in ((domain, "ai.onnx") if domain == "" else (domain,)):
            return int(o.version)
    return 0


def _check_names_and_types(onnx, proto, where: str) -> None:
    """Every name decodes as UTF-8 and every initializer has a known element type: protobuf
    decodes strings lazily and onnx.checker reads neither, so a corrupted byte would otherwise
    surface as a UnicodeDecodeError or KeyError deep inside a conversion."""
    g = proto.graph
    names = [g.name]
    for n in g.node:
        names += [n.name, n.op_type, n.domain, *n.input, *n.output, *(a.name for a in n.attribute)]
    names += [v.name for v in (*g.input, *g.output, *g.value_info, *g.initializer)]
    for s in names:
        if not isinstance(s, str):   # protobuf hands back a string field that is not UTF-8 as bytes
            raise OnnxImportError(f"{where}: the name {s!r} is not valid UTF-8 (a corrupted file?)")
    known = set(onnx.TensorProto.DataType.values())
    for t in g.initializer:
        if t.data_type not in known:
            raise OnnxImportError(f"{where}: initializer {t.name!r} has an unknown element type {t.data_type}")


def check_model(proto, where: str = "model") -> None:
    """Opset and domains, then onnx.checker; OnnxImportError on the first problem."""
    onnx = require_onnx()
    _check_names_and_types(onnx, proto, where)
    # Only domains that nodes use: tools declare more (onnxruntime.quantization adds
    # com.microsoft.nchwc, org.pytorch.aten, ... to every model it writes).
    unknown = sorted({n.domain for n in proto.graph.node if n.domain not in KNOWN_DOMAINS})
    if unknown:
        raise OnnxImportError(f"{where}: unknown operator domain(s) {', '.join(map(repr, unknown))}; eightbit "
                              "reads the default ONNX domain (ai.onnx) only")
    version = opset_of(proto)
    if not MIN_OPSET <= version <= MAX_OPSET:
        raise OnnxImportError(f"{where}: ONNX opset {version or 'missing'} is not supported (opsets "
                              f"{MIN_OPSET}-{MAX_OPSET}, and {MIN_CONVERTIBLE_OPSET}-{MIN_OPSET - 1} converted on "
                              "import); convert it with onnx.version_converter.convert_version")
    try:
        onnx.checker.check_model(proto)
    except ValueError as e:                # the protobuf is over 2 GB: check what can be checked
        if "2GB" not in str(e) and "2 GB" not in str(e):
            raise OnnxImportError(f"{where}: fails the ONNX checker: {e}") from None
    except Exception as e:                 # onnx.checker.ValidationError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxImportError(f"{where}: fails the ONNX checker: {first}") from None


def infer_shapes(proto):
    """`proto` with ONNX shape inference applied (value_info filled in), or `proto` unchanged
    when inference fails (eightbit infers its own shapes; ONNX's are only a help)."""
    onnx = require_onnx()
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:
        return proto
