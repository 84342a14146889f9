"""Online quantization-aware training: a QAT model learns from a stream of batches, its activation
ranges follow the stream, and every K batches it is exported to a fresh int8 engine model.

``OnlineQAT(model, optimizer, loss_fn, export_every=K)`` wraps a model from ``prepare_qat``.
``update(x, y)`` takes one optimizer step on an arriving batch; ``run(stream)`` does so for every
(x, y) of an iterable. What follows the stream, and how fast:

- activation ranges: each ``ActQuant`` with ``observer="moving_average"`` moves its min / max a
  fraction ``momentum`` towards every batch's (after a plain mean over its first 1 / momentum
  batches), so a range follows a drift with a lag of about 1 / momentum batches
  (ActivationQuant's default 0.01: ~100 batches; pick it against the drift speed and
  ``export_every``). A "minmax" observer only ever widens its range, and a frozen one
  (``freeze_observers``, ``QATConfig.freeze_observers_after``) stays put: both draw a warning.
- weights: the optimizer. Weight scales follow the weights on every step (or are learned: LSQ).
- BatchNorm (folded into its conv by ``prepare_qat``): while it trains, each batch is normalised
  with its own statistics and the running statistics, which the export folds into the int8
  weights, follow the stream at BatchNorm's momentum (0.1: ~10 batches). That needs batches that
  are large (dozens of samples) and mixed; a stream whose batches are small or correlated
  (one class, one sensor, one time window each) gives noisy, biased batch statistics: pass
  ``freeze_bn=True``, so each conv keeps BatchNorm folded with its current running statistics and
  only its weights and BatchNorm's scale and shift go on learning.

An export runs ``convert`` with the model in eval mode (the mode in which the QAT forward equals
the engine bit for bit) and then restores every module's own mode, so it never disturbs training.
Under DistributedDataParallel every rank streams its own share of each batch and exports, after
``distributed.sync_quantization`` (see eightbit.torch.distributed).
"""
from __future__ import annotations

import itertools
import warnings

from . import _torch  # noqa: F401
from torch import nn

from ..model import QuantizedModel
from .convert import convert
from .distributed import _unwrap, sync_quantization
from .prepare import freeze_bn as _freeze_bn
from .quantizers import ActQuant


class OnlineQAT:
    """A QAT model (``prepare_qat``'s, possibly inside DistributedDataParallel) trained on a stream.

    ``loss_fn(output, y)`` returns the batch's scalar loss. ``export_every``: export the int8
    model after every K-th batch (None: only when ``export()`` is called). ``on_export(qm,
    batch_index)`` is called after each export with the new ``eb.QuantizedModel`` and the number
    of batches trained so far (K, 2K, ...). ``freeze_bn``: fold BatchNorm with its running
    statistics from now on (see the module docstring: streams of small or correlated batches).

    ``batches`` (batches trained), ``exports`` (int8 models exported), ``int8_model`` (the latest,
    None before the first) and ``last_loss`` tell where the stream stands."""

    def __init__(self, model: nn.Module, optimizer, loss_fn, export_every: int | None = None,
                 on_export=None, freeze_bn: bool = False):
        if not hasattr(_unwrap(model), "eb_config"):
            raise TypeError("model: expected a model returned by eightbit.torch.prepare_qat")
        if export_every is not None and (isinstance(export_every, bool) or not isinstance(export_every, int)
                                         or export_every < 1):
            raise ValueError(f"export_every: expected None or a number of batches >= 1, got {export_every!r}")
        if on_export is not None and not callable(on_export):
            raise TypeError("on_export: expected a callable (qm, batch_index) or None")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.export_every, self.on_export = export_every, on_export
        self.batches, self.exports = 0, 0
        self.int8_model: QuantizedModel | None = None
        self.last_loss: float | None = None
        if freeze_bn:
            _freeze_bn(model)
        _warn_static_ranges(model)

    def update(self, x, y) -> float:
        """One optimizer step on the batch (x: a tensor, or a tuple of the model's inputs; y: the
        targets), then an export when the batch count reaches a multiple of ``export_every``.
        Returns the batch's loss (before the step)."""
        if not self.model.training:            # e.g. an on_export callback evaluated the model
            self.model.train()
        inputs = x if isinstance(x, (tuple, list)) else (x,)
        loss = self.loss_fn(self.model(*inputs), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.batches += 1
        self.last_loss = float(loss.detach())
        if self.export_every is not None and self.batches % self.export_every == 0:
            self.export()
        return self.last_loss

    def run(self, stream, max_batches: int | None = None) -> list:
        """``update`` on every (x, y) of ``stream`` (any iterable, possibly endless: then give
        ``max_batches``). Returns the batches' losses."""
        return [self.update(x, y) for x, y in itertools.islice(stream, max_batches)]

    def export(self) -> QuantizedModel:
        """The int8 engine model of the model as it is now (kept as ``int8_model``; ``on_export``
        is called). Converts in eval mode, then puts every module back in its own mode. Under
        DistributedDataParallel every rank exports (``sync_quantization`` first: the ranks'
        BatchNorm statistics differ), so every rank must reach the same batch counts."""
        if isinstance(self.model, nn.parallel.DistributedDataParallel):
            sync_quantization(self.model)       # every rank exports at the same batch: a collective
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            qm = convert(self.model)
        finally:
            for m, training in modes:
                m.training = training
        self.int8_model = qm
        self.exports += 1
        if self.on_export is not None:
            self.on_export(qm, self.batches)
        return qm


def _warn_static_ranges(model) -> None:
    """Warn about activation ranges that cannot follow a stream (minmax observers, frozen ones,
    a config that freezes them)."""
    static = [name for name, m in _unwrap(model).named_modules() if isinstance(m, ActQuant)
              and m.learned_scale is None and (m.spec.observer != "moving_average" or not bool(m.observing))]
    if static:
        warnings.warn(f"OnlineQAT: the activation ranges of {static} do not follow the stream (a 'minmax' "
                      "observer only widens, a frozen one stays put); use ActivationQuant(observer="
                      "'moving_average') and unfrozen observers for data that drifts", stacklevel=3)
    after = _unwrap(model).eb_config.freeze_observers_after
    if after is not None:
        warnings.warn(f"OnlineQAT: QATConfig.freeze_observers_after={after} stops every activation range "
                      f"after {after} training steps; the int8 models exported after that will not follow a drift",
                      stacklevel=3)
