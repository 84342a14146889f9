"""Sub-graphs computed from an integer input alone (step 2b of import_float.py): the attention
mask -> one ``additive_mask`` node; RoBERTa's position ids -> one ``padded_positions`` node.

Exporters spell the attention mask of BERT-style encoders in many ways: transformers'
``get_extended_attention_mask`` (Unsqueeze, Cast, Sub from 1, Mul by finfo(float32).min), the
SDPA helpers (Expand to [N, 1, T, T], Where on a boolean, And / Equal / Range from the
masking utilities), DistilBERT's ``Equal(mask, 0)`` + Expand + ``Where(mask, min, scores)``.
Rather than match every spelling, the importer finds the **mask region**: the nodes computed
from one integer graph input (the keep mask: 1 attend, 0 padding) and constants only (shapes
included), stopping at embedding lookups (a Gather of a constant table); the Shape of a tensor
inside the region belongs to it (the masking utilities read the mask's shape after a Cast), the
Shape of a graph input is folded as usual. Each tensor leaving
the region is evaluated with ONNX's reference implementation on probe masks (padding at the
end, in the middle, alternating) and must be one of:

* **additive**: float, 0 where the mask keeps a token and one constant ``fill`` where it pads,
  of shape [N, 1, 1 or T', T] and the same for every query row -> ``additive_mask(mask, fill)``
  ([N, 1, 1, T]; the Add that reads it broadcasts it as ONNX Runtime does);
* **a boolean indicator** of the same shape (true where padded, or true where kept) read by
  ``Where`` choosing between the scores and a scalar constant ``fill`` <= -10000 (or -inf) ->
  ``scores + additive_mask(mask, fill)``. Identical after the softmax: exp(fill - max)
  underflows to 0 in float32 either way (a row whose every key is padded is not defined).

A fill of -inf (the SDPA exporters') becomes the float32 minimum: the same after the softmax,
and every tensor stays finite (calibration refuses infinities).

A tensor leaving the region that is read only as the ids of embedding lookups is probed with
ids instead (``classify_ids``): RoBERTa's position ids (``cumsum(ids != pad) * (ids != pad) +
pad``, the padding id found from uniform rows) become one ``padded_positions`` node; ids that do
not depend on the input at all (RoBERTa's token types, gathered from a buffer of zeros) become a
constant [1, T], which the lookups fold. Anything else leaving the region raises
``OnnxImportError`` naming the tensor.
"""
from __future__ import annotations

import numpy as np

from . import fold
from .errors import OnnxImportError
from .match import Match

# Where(indicator, fill, scores) becomes an additive mask only for fills this negative: exp(fill - max)
# is then 0 in float32 for any score the attention sees
MIN_WHERE_FILL = -1e4


class MaskRegion:
    """The nodes computed from one integer graph input (``source``) and constants."""

    def __init__(self, source: str):
        self.source = source
        self.nodes: list = []          # OnnxNodes in ONNX order
        self.tensors: set = {source}


def _is_embedding_lookup(imp, n) -> bool:
    """Gather of rows of a constant table (>= 2-D) by computed ids: converted as embedding."""
    return n.op == "Gather" and n.inputs[0] in imp.consts and np.asarray(imp.consts[n.inputs[0]]).ndim >= 2 \
        and int(n.attrs.get("axis", 0)) == 0


def find_regions(imp, live) -> list:
    """The mask region of every integer graph input (empty regions are left out)."""
    regions = {name: MaskRegion(name) for name in imp.graph.inputs if imp.graph.tensors[name].dtype == "int64"}
    owner = {name: r for name, r in regions.items()}
    for n in live:
        if not fold.foldable(n.proto) or _is_embedding_lookup(imp, n):
            continue
        ins = [i for i in n.inputs if i]
        if n.op in fold.SHAPE_OPS and ins and ins[0] in regions:
            continue                   # the shape of a graph input: folded by the importer
        sources = {owner[i] for i in ins if i in owner}
        if len(sources) != 1 or not all(i in owner or i in imp.constable for i in ins):
            continue
        region = sources.pop()
        region.nodes.append(n)
        for o in n.outputs:
            if o:
                region.tensors.add(o)
                owner[o] = region
    found = [r for r in regions.values() if r.nodes]
    for r in found:
        _cut_at_keep_mask(imp, r)
        _absorb_shape_arithmetic(imp, live, r)
    return found


def _cut_at_keep_mask(imp, region: MaskRegion) -> None:
    """End the region at the keep mask itself, [N, T, 1, ..] (mean pooling's
    ``attention_mask.unsqueeze(-1)``): what pooling computes from it (Expand to the hidden
    states' shape, Cast, the token count) is converted as usual, the mask becoming a float32
    tensor (convert_keep_mask)."""
    seq = imp.graph.tensors[region.source].shape
    if len(seq) != 2:
        return
    probes = _probe_masks(seq[1])
    for k, n in enumerate(region.nodes):
        out = n.outputs[0] if n.outputs else None
        if not out or n.op not in ("Unsqueeze", "Reshape"):
            continue
        try:
            value = _evaluate(imp, region, out, probes)
        except OnnxImportError:        # needs a value known only during conversion: not the mask itself
            continue
        if not is_keep_mask(value, probes):
            continue
        after = {out}
        kept = region.nodes[:k + 1]
        for m in region.nodes[k + 1:]:
            if any(i in after for i in m.inputs):
                after.update(o for o in m.outputs if o)
            else:
                kept.append(m)
        region.nodes = kept
        region.tensors -= after - {out}
        return


def _absorb_shape_arithmetic(imp, live, region: MaskRegion) -> None:
    """Add to the region the shape arithmetic only it reads (the masking utilities' Range over
    the batch, computed from the Shape of an input): evaluated with the probe's batch instead of
    folded, since a computation with the free batch cannot be folded."""
    readers: dict[str, set] = {}
    for n in live:
        for i in n.inputs:
            if i:
                readers.setdefault(i, set()).add(n.index)
    members = {n.index for n in region.nodes}
    outputs = set(imp.output_names)
    for n in reversed(live):
        outs = [o for o in n.outputs if o]
        if n.index in members or not outs or not fold.foldable(n.proto):
            continue
        if n.op in fold.SHAPE_OPS and n.inputs and n.inputs[0] in imp.graph.tensors:
            continue                   # the shape of a graph input (the only tensors yet): folded by the importer
        if not all(o in imp.constable and o not in imp.consts and o not in outputs for o in outs):
            continue
        if all(readers.get(o) and readers[o] <= members for o in outs):
            members.add(n.index)
            region.nodes.append(n)
    region.nodes.sort(key=lambda n: n.index)


def match_masks(imp, live) -> None:
    """Claim every mask region and anchor the conversion of each tensor leaving it at its producer."""
    for region in find_regions(imp, live):
        inside = {n.index for n in region.nodes}
        outside = [m for m in live if m.index not in inside]
        read_outside = {i for m in outside for i in m.inputs} | set(imp.output_names)
        leaving = [(n, o) for n in region.nodes for o in n.outputs if o and o in read_outside]
        for n in region.nodes:
            imp.claimed[n.index] = region
        for n, o in leaving:
            # ids for embedding lookups only (RoBERTa's position ids, token types from a buffer)
            as_ids = o not in imp.output_names and all(
                _is_embedding_lookup(imp, m) and m.inputs[1] == o for m in outside if o in m.inputs)
            imp.anchors[n.index] = Match(n, region.nodes, lambda imp, region=region, n=n, o=o, as_ids=as_ids:
                                         (convert_ids if as_ids else convert_leaving)(imp, region, n, o))


def _probe_masks(seq: int) -> np.ndarray:
    """Keep masks with padding at the end, in the middle and alternating (never a row of padding
    only: encoders treat those specially)."""
    rows = [np.ones(seq, np.int64)]
    if seq >= 2:
        rows.append(np.r_[np.ones(seq - seq // 2, np.int64), np.zeros(seq // 2, np.int64)])
        rows.append(np.arange(seq, dtype=np.int64) % 2 == 0)
        rng = np.random.default_rng(0)
        r = (rng.random(seq) < 0.5).astype(np.int64)
        r[0] = 1
        rows.append(r)
    return np.stack(rows).astype(np.int64)


def _evaluate(imp, region: MaskRegion, out: str, masks: np.ndarray) -> np.ndarray:
    """The value of `out` for the keep masks `masks` [B, T]: the region's nodes it depends on,
    one by one with ONNX's reference implementation (fold.evaluate, so each output's size is
    checked against the folding limits before it is computed)."""
    producer = {o: n for n in region.nodes for o in n.outputs if o}
    needed, stack = set(), [out]
    while stack:
        n = producer.get(stack.pop())
        if n is not None and n.index not in needed:
            needed.add(n.index)
            stack.extend(i for i in n.inputs if i)
    batch = masks.shape[0]
    values = {region.source: masks}
    budget = fold.FoldBudget(imp.fold_budget.per_tensor, imp.fold_budget.total)
    for n in (n for n in region.nodes if n.index in needed):
        inputs = []
        for i in n.inputs:
            if not i:
                inputs.append(None)
            elif i in values:
                inputs.append(values[i])
            elif i in imp.symbolic:      # a shape holding the free batch: the probe's batch
                v = imp.symbolic[i]
                inputs.append(np.array([batch if d is fold.BATCH else d for d in v.flat], np.int64).reshape(v.shape))
            elif i in imp.consts:
                inputs.append(imp.consts[i])
            else:
                raise OnnxImportError(f"attention mask: tensor {i!r} read by node {n.name!r} is not known at import")
        for name, v in zip(n.outputs, fold.evaluate(n.proto, inputs, imp.opset, n.where, budget)):
            if name:
                values[name] = v
    return np.asarray(values[out])


def classify(value: np.ndarray, masks: np.ndarray):
    """("additive", fill), ("padded", None) or ("kept", None) for the region output `value`
    computed from keep masks `masks` [B, T]; None when it is none of them."""
    b, t = masks.shape
    if value.ndim != 4 or value.shape[0] != b or value.shape[1] != 1 or value.shape[3] != t:
        return None
    if not np.array_equal(value, np.broadcast_to(value[:, :, :1, :], value.shape)):
        return None                                    # differs between query rows: not a padding mask
    row, keep = value[:, 0, 0, :], masks != 0
    if value.dtype == np.bool_:
        if np.array_equal(row, ~keep):
            return ("padded", None)
        if np.array_equal(row, keep):
            return ("kept", None)
        return None
    if value.dtype.kind != "f" or not np.all(row[keep] == 0) or keep.all():
        return None
    pads = row[~keep].astype(np.float32)
    if np.isnan(pads).any() or not np.all(pads == pads[0]):
        return None
    return ("additive", float(pads[0]))


def is_keep_mask(value: np.ndarray, masks: np.ndarray) -> bool:
    """Whether `value` is the keep mask itself with trailing dimensions of 1, [N, T, 1, ..] (mean
    pooling's ``attention_mask.unsqueeze(-1)``): 1 where kept, 0 where padded. The [N, T] mask
    alone (an Identity or Cast of the input) is not taken: read as a plain tensor, it is refused."""
    b, t = masks.shape
    if value.ndim < 3 or value.shape[:2] != (b, t) or any(d != 1 for d in value.shape[2:]):
        return False
    return value.dtype.kind in "biuf" and np.array_equal(value.reshape(b, t).astype(np.float64), masks != 0)


def convert_keep_mask(imp, region: MaskRegion, n, out: str, shape) -> None:
    """The keep mask as float32 (0 / 1) of `shape` [N, T, 1, ..]: an embedding lookup in the
    table [[0], [1]], which refuses a mask value other than 0 or 1 as additive_mask does."""
    if n.outputs[0] != out:
        n.fail(f"the keep mask {out!r} is not the node's first output")
    table = np.array([[0.0], [1.0]], np.float32)
    source = imp.graph.tensor(region.source)
    if len(shape) == 3:                   # [N, T, 1]: the lookup's own shape
        imp.emit(n, "embedding", [source], {}, {"weight": table})
        return
    keep = imp.emit(n, "embedding", [source], {}, {"weight": table}, helper="keep")
    imp.emit(n, "reshape", [keep], {"shape": tuple(int(d) for d in shape[1:])})


def convert_leaving(imp, region: MaskRegion, n, out: str) -> None:
    """Convert the region output `out` (written by `n`): an additive_mask node, a boolean
    indicator remembered for the Where that reads it (converters.convert_where), or the keep
    mask itself as float32 (mean pooling)."""
    seq = imp.graph.tensors[region.source].shape
    if len(seq) != 2:
        n.fail(f"the attention mask {region.source!r} must be [batch, sequence], got shape {list(seq)}")
    probes = _probe_masks(seq[1])
    value = _probe(imp, region, out, probes)
    kind = classify(value, probes)
    if kind is None and is_keep_mask(value, probes):
        convert_keep_mask(imp, region, n, out, value.shape)
        return
    if kind is None:
        n.fail(f"tensor {out!r} is computed from the integer input {region.source!r} alone, but is not an "
               f"attention mask eightbit recognises (an additive [N, 1, 1|T, T] float mask, 0 where kept and one "
               f"fill value where padded, or its boolean indicator read by Where); got a {value.dtype} of shape "
               f"{list(value.shape)} for probe masks")
    if kind[0] == "additive":
        # emit names the node and output after n's first output; the region output may be another
        if n.outputs[0] != out:
            n.fail(f"the mask tensor {out!r} is not the node's first output")
        key = (region.source, finite_fill(kind[1]))
        if key in imp.additive_masks:         # the SDPA exporters write the same mask once per layer
            imp.emit(n, "identity", [imp.additive_masks[key]], {})
        else:
            imp.additive_masks[key] = imp.emit(n, "additive_mask", [imp.graph.tensor(region.source)],
                                               {"fill": key[1]})
    else:
        imp.mask_indicators[out] = (region.source, kind[0])


def _probe(imp, region: MaskRegion, out: str, probes: np.ndarray) -> np.ndarray:
    """`out` for the probe rows `probes` [B, T] of the region's input (in batches of its size when
    the model fixes the batch)."""
    fixed = imp.graph.tensors[region.source].shape[0]
    if fixed is None:
        return _evaluate(imp, region, out, probes)
    parts = [_evaluate(imp, region, out, np.resize(probes[k:k + fixed], (fixed, probes.shape[1])))[:len(probes[k:k + fixed])]
             for k in range(0, len(probes), fixed)]
    return np.concatenate(parts)


# candidate padding ids of RoBERTa-style position ids (transformers' padding_idx is 1 for RoBERTa and
# XLM-R, 0 for others)
_PAD_CANDIDATES = 4


def classify_ids(imp, region: MaskRegion, out: str):
    """("constant", row) or ("positions", pad) for a region output read only by embedding
    lookups; None when it is neither."""
    seq = imp.graph.tensors[region.source].shape[1]
    uniform = np.repeat(np.arange(_PAD_CANDIDATES, dtype=np.int64)[:, None], seq, axis=1)
    rng = np.random.default_rng(1)
    mixed = rng.integers(_PAD_CANDIDATES, 1000, size=(4, seq)).astype(np.int64)
    first = _probe(imp, region, out, uniform)
    if first.shape != uniform.shape or first.dtype.kind not in "iu":
        return None
    if np.all(first == first[:1]):                   # the same ids whatever the input: a constant
        again = _probe(imp, region, out, mixed)
        return ("constant", first[:1].copy()) if again.shape == mixed.shape and np.all(again == first[:1]) else None
    pads = [c for c in range(_PAD_CANDIDATES) if np.all(first[c] == c)]
    if len(pads) != 1:
        return None
    pad = pads[0]
    mixed[rng.random(mixed.shape) < 0.3] = pad          # padding here and there
    mixed[:, -2:] = pad
    for ids in (uniform, mixed):
        real = ids != pad
        want = np.where(real, pad + np.cumsum(real, axis=1), pad)
        if not np.array_equal(_probe(imp, region, out, ids), want):
            return None
    return ("positions", pad)


def convert_ids(imp, region: MaskRegion, n, out: str) -> None:
    """A region output read only as embedding ids: RoBERTa's position ids (a padded_positions
    node) or ids that do not depend on the input (a constant [1, T], which the lookups fold)."""
    kind = classify_ids(imp, region, out)
    if kind is None:
        n.fail(f"tensor {out!r} is computed from the integer input {region.source!r} alone and read as embedding "
               "ids, but is neither RoBERTa's position ids (cumsum of the non-padding ids) nor a constant")
    if kind[0] == "constant":
        imp.consts[out] = kind[1]
    else:
        if n.outputs[0] != out:
            n.fail(f"the position ids {out!r} are not the node's first output")
        imp.emit(n, "padded_positions", [imp.graph.tensor(region.source)], {"pad": kind[1]})


def finite_fill(fill: float) -> float:
    """-inf (the SDPA exporters' fill) as the float32 minimum: the same after the softmax for every
    row with a kept key (exp underflows to 0 either way), and every tensor stays finite, as
    calibration requires."""
    return max(float(fill), float(np.finfo(np.float32).min))


def additive_mask_for(imp, n, source: str, fill: float):
    """The additive_mask tensor of `source` with `fill`, made once per (mask, fill)."""
    fill = finite_fill(fill)
    key = (source, fill)
    if key not in imp.additive_masks:
        imp.additive_masks[key] = imp.emit(n, "additive_mask", [imp.graph.tensor(source)], {"fill": fill},
                                           helper="additive_mask")
    return imp.additive_masks[key]
