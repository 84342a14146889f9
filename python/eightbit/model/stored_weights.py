"""Weight codes stored at their grid's bits in the .eb file ("w_packed", docs/format.md): int8
weights on a 2-7-bit grid (attrs w_bits) and block-quantized codes on a 2- or 3-bit grid (attrs
bits), each output row's codes as b-bit two's complement, least significant bit first. The plan
holds them unpacked (int8 ``w``, or the blockwise nibbles ``w_codes``); the writer packs
(stored_consts), the reader unpacks (unpacked_consts), and a model's size counts the packed bytes
(stored_bytes)."""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .steps.blockwise import codes_of_nibbles as blockwise_codes, pack_codes as blockwise_pack


def pack_codes(w: np.ndarray, bits: int) -> np.ndarray:
    """int8 codes [O, ...] that fit ``bits`` bits -> uint8 [O, ceil(n * bits / 8)]: each row's codes
    as bits-bit two's complement, least significant bit first (docs/format.md, "w_packed")."""
    rows = w.reshape(w.shape[0], -1).astype(np.uint8)
    bits_of = (rows[..., None] >> np.arange(bits, dtype=np.uint8)) & 1          # [O, n, bits]
    return np.packbits(bits_of.reshape(rows.shape[0], -1), axis=-1, bitorder="little")


def unpack_codes(packed: np.ndarray, bits: int, shape) -> np.ndarray:
    """pack_codes' inverse: int8 codes of ``shape``."""
    n = int(np.prod(shape[1:]))
    b = np.unpackbits(packed, axis=-1, count=n * bits, bitorder="little").reshape(shape[0], n, bits)
    v = (b.astype(np.int16) << np.arange(bits, dtype=np.int16)).sum(axis=-1)
    sign = 1 << (bits - 1)
    return ((v ^ sign) - sign).astype(np.int8).reshape(shape)


class _PackedForm(NamedTuple):
    """How a step kind's weight codes are stored at their grid's bits ("w_packed", docs/format.md):
    the constant that holds them in the plan, the attribute with their bits, the widest grid that
    is packed (wider ones are stored as the plan holds them), the ranks of the codes, and the
    plan constant <-> int8 codes [O, ...] maps."""
    const: str
    bits_attr: str
    max_bits: int
    ranks: tuple
    to_codes: Callable
    from_codes: Callable


_INT8_WEIGHTS = _PackedForm("w", "w_bits", 7, (2, 4), np.asarray, np.asarray)
_PACKED_FORMS = {"blockwise_linear": _PackedForm("w_codes", "bits", 3, (2,), blockwise_codes, blockwise_pack)}


def stored_consts(s) -> tuple:
    """(consts, lowered) of a plan step as the file holds them: codes on a grid narrower than
    their storage (int8 weights with attrs w_bits < 8, block-quantized codes with bits < 4) packed
    to their bits as "w_packed", with lowered w_bits and w_shape."""
    form = _PACKED_FORMS.get(s.op, _INT8_WEIGHTS)
    bits = s.attrs.get(form.bits_attr)
    if form.const not in s.consts or isinstance(bits, bool) or not isinstance(bits, int) or bits > form.max_bits:
        return s.consts, s.lowered
    codes = form.to_codes(np.asarray(s.consts[form.const]))
    consts = {**{k: v for k, v in s.consts.items() if k != form.const}, "w_packed": pack_codes(codes, bits)}
    lowered = None if s.lowered is None else {**s.lowered, "w_bits": int(bits), "w_shape": list(codes.shape)}
    return consts, lowered


def stored_bytes(s) -> int:
    """Bytes of a step's constants in the file (packed codes count their bits)."""
    return sum(int(np.asarray(v).nbytes) for v in stored_consts(s)[0].values())


def unpacked_consts(op, consts: dict, lowered, attrs) -> tuple:
    """stored_consts' inverse for a step read from a file: its w_packed codes back to the
    constant the plan holds; ValueError when the packed record does not match."""
    form = _PACKED_FORMS.get(op, _INT8_WEIGHTS)
    bits = attrs.get(form.bits_attr) if isinstance(attrs, dict) else None
    shape = (lowered or {}).get("w_shape")
    packed = consts["w_packed"]
    if isinstance(bits, bool) or bits not in range(2, form.max_bits + 1) or not isinstance(shape, tuple) \
            or len(shape) not in form.ranks or not all(isinstance(d, int) and d > 0 for d in shape) \
            or packed.dtype != np.uint8 or packed.shape != (shape[0], -(-int(np.prod(shape[1:])) * bits // 8)) \
            or (lowered or {}).get("w_bits") != bits or form.const in consts:
        raise ValueError(f"w_packed does not match its {form.bits_attr} / w_shape")
    codes = unpack_codes(packed, bits, shape)
    consts = {**{k: v for k, v in consts.items() if k != "w_packed"}, form.const: form.from_codes(codes)}
    lowered = {k: v for k, v in lowered.items() if k not in ("w_bits", "w_shape")}
    return consts, lowered
