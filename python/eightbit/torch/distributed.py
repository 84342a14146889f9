"""Quantization-aware training under ``torch.nn.parallel.DistributedDataParallel`` (DDP).

Every rank must hold the same quantization parameters, or each would export a different int8
model. What keeps them equal, and what does not:

- activation ranges: ``ActQuant.observe`` all-reduces each batch's min and max over the default
  process group, so every rank folds the global batch range into identical running ranges
  (exactly: min and max have no rounding). This needs no help from DDP.
- weight scales follow the weights (or are learned), which DDP keeps equal by averaging the
  gradients; but a conv's BatchNorm is folded into its weights, and while BatchNorm trains its
  running statistics follow each rank's own share of the batch. DDP's per-forward buffer
  broadcast (``broadcast_buffers``, ``forward_sync_buffers`` from torch 2.13; on by default) does
  not make them equal either: it copies rank 0's before each forward, which then updates them
  locally again. ``sync_quantization(model)`` before an export does: it averages the running
  statistics over the ranks (with equal local batches the mean of the ranks' running means is
  the running mean of the global batches' means; the variance is the mean of the within-rank
  variances, slightly below the global batch's) and copies rank 0's quantizer state. Frozen
  BatchNorm (``freeze_bn``) or none: the ranks agree without it.

Recommended use (``ddp(model)`` wraps with these settings):

- no per-forward buffer broadcast: the observers already agree, BatchNorm is synchronised by
  ``sync_quantization`` before exports, and each step saves a broadcast of every buffer.
  (``nn.SyncBatchNorm``, the exact global statistics, runs on GPUs only.)
- every rank runs the same number of training forward passes, on non-empty batches of the same
  size (``DistributedSampler(drop_last=True)``): each observer's all-reduce is a collective, so
  a rank that skips one (an extra or an empty batch, ``DDP.join()`` for uneven inputs) leaves the
  others waiting; and with a loss that is a mean over the local batch, DDP's averaged gradient
  equals the full batch's up to float summation order.
- export on every rank after ``sync_quantization(model)`` (a collective), or on rank 0 after it.

``quantization_state`` lists every parameter, ``quantization_spread`` / ``check_quantization_synced``
compare them across ranks.
"""
from __future__ import annotations

import inspect

from . import _torch  # noqa: F401
import torch
import torch.distributed as dist
from torch import nn

from .quantizers import ActQuant, WeightQuantizer
from .units import QConv2d, _WeightedUnit


def _unwrap(model):
    """The prepared model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _world(group=None) -> int:
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def quantization_state(model) -> dict:
    """{name: float32 tensor} of every quantization parameter the int8 model is built from: for
    each ActQuant (its module name) ``.scale`` (the one in use, learned or observed),
    ``.zero_point``, ``.min_val``, ``.max_val``; for each conv / linear unit ``.weight_scale``
    (per output channel, BatchNorm folded). Copies, on the CPU: compare them across ranks or runs."""
    state = {}
    with torch.no_grad():
        for name, m in _unwrap(model).named_modules():
            if isinstance(m, ActQuant):
                scale, zp = m.qparams()
                state.update({f"{name}.scale": scale, f"{name}.zero_point": torch.tensor(float(zp)),
                              f"{name}.min_val": m.min_val, f"{name}.max_val": m.max_val})
            elif isinstance(m, _WeightedUnit):
                state[f"{name}.weight_scale"] = m.quantized_weights()[1]
    return {k: v.detach().float().cpu().clone().reshape(-1) for k, v in state.items()}


def quantization_spread(model, group=None) -> dict:
    """{name: max over ranks - min over ranks} of each ``quantization_state`` entry (largest over
    its elements): all 0.0 when the ranks agree. A collective: every rank of ``group`` calls it
    (outside torch.distributed, or with one rank, everything is 0.0)."""
    state = quantization_state(model)
    if _world(group) == 1:
        return {k: 0.0 for k in state}
    sizes = [v.numel() for v in state.values()]
    count = torch.tensor([len(sizes), -len(sizes), sum(sizes), -sum(sizes)], dtype=torch.float64)
    dist.all_reduce(count, op=dist.ReduceOp.MAX, group=group)
    if count[0] != -count[1] or count[2] != -count[3]:
        raise ValueError("quantization_spread: the ranks' models have different quantization parameters "
                         "(not the same prepared model)")
    flat = torch.cat(list(state.values())).double()
    bounds = torch.stack([flat, -flat])
    dist.all_reduce(bounds, op=dist.ReduceOp.MAX, group=group)
    hi, lo = bounds[0], -bounds[1]
    spread = torch.where(hi == lo, torch.zeros_like(hi), hi - lo)    # inf == inf: an unset range agrees
    return {k: float(s.max()) for k, s in zip(state, torch.split(spread, sizes))}


def check_quantization_synced(model, group=None, tolerance: float = 0.0) -> None:
    """Raise RuntimeError, on every rank, when the ranks' quantization parameters differ by more
    than ``tolerance`` (a collective, like ``quantization_spread``)."""
    bad = {k: s for k, s in quantization_spread(model, group).items() if not s <= tolerance}
    if bad:
        worst = sorted(bad.items(), key=lambda kv: -kv[1])[:5]
        raise RuntimeError(f"quantization parameters differ across ranks in {len(bad)} entries, e.g. "
                           + ", ".join(f"{k} by {s:.3g}" for k, s in worst)
                           + "; see eightbit.torch.distributed for the DDP settings that keep them equal")


def _batchnorms(model):
    """The BatchNorm modules folded into conv units (their statistics become int8 weights)."""
    return [m.bn for m in _unwrap(model).modules() if isinstance(m, QConv2d) and m.bn is not None]


def _quantizer_tensors(model, weights: bool):
    """Observer buffers and learned scales, weight quantizer buffers (AdaRound's rounding) and
    learned scales, BatchNorm's frozen flags; with ``weights``, every parameter too."""
    for m in _unwrap(model).modules():
        if isinstance(m, (ActQuant, WeightQuantizer)):
            yield from m.buffers(recurse=False)
            if m.learned_scale is not None:
                yield m.learned_scale
        elif isinstance(m, QConv2d):
            yield m.bn_frozen
    if weights:
        yield from _unwrap(model).parameters()


def sync_quantization(model, src: int = 0, group=None, batchnorm: str = "average", weights: bool = False) -> None:
    """Make every rank's quantization state equal (a collective: every rank calls it), e.g.
    before exporting: rank ``src``'s activation ranges, scales and zero points, learned scales
    and weight quantizer state are copied to all; the running statistics of BatchNorm folded
    into convs are averaged over the ranks (``batchnorm="average"``, see the module docstring)
    or copied from ``src`` (``"broadcast"``). ``src`` is a global rank. ``weights=True`` also
    copies every parameter (DDP does that when it wraps the model, and keeps them equal after)."""
    if batchnorm not in ("average", "broadcast"):
        raise ValueError(f"batchnorm: expected 'average' or 'broadcast', got {batchnorm!r}")
    world = _world(group)
    if world == 1:
        return
    with torch.no_grad():
        for t in _quantizer_tensors(model, weights):
            dist.broadcast(t.data, src, group=group)
        for bn in _batchnorms(model):
            for t in (bn.running_mean, bn.running_var):
                if batchnorm == "broadcast":
                    dist.broadcast(t, src, group=group)
                else:
                    dist.all_reduce(t, group=group)
                    t.div_(world)


def ddp(model, **kwargs) -> nn.parallel.DistributedDataParallel:
    """``DistributedDataParallel(model, **kwargs)`` without the per-forward buffer broadcast
    (see the module docstring), in every torch version: ``forward_sync_buffers=False`` from
    torch 2.13, ``broadcast_buffers=False`` before (which also skips the initial copy of rank 0's
    buffers, so it is done here)."""
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters:
        return nn.parallel.DistributedDataParallel(model, **{"forward_sync_buffers": False, **kwargs})
    wrapped = nn.parallel.DistributedDataParallel(model, **{"broadcast_buffers": False, **kwargs})
    group = kwargs.get("process_group")
    src = 0 if group is None else dist.get_global_rank(group, 0)
    with torch.no_grad():
        for b in model.buffers():
            dist.broadcast(b, src, group=group)
    return wrapped
