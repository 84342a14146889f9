"""``prepare_qat``: a float torch model -> the same model with fake quantization, as a
torch.fx GraphModule whose int8 ops are the units of units.py.

1. The model (a copy) is traced with torch.fx and run once on the example inputs to learn every
   tensor's shape.
2. Each node is matched to the engine op it becomes (fx_ops.op_of). conv2d takes a following
   BatchNorm2d and activation, linear and add an activation, when nothing else reads the
   intermediate tensor; these groups and the ops between quantized tensors (pools, reshapes,
   concatenations, adds and muls of two quantized tensors, activations) become units.
3. Where a unit reads a float tensor (a graph input, or the result of an op that stays float:
   layer norm, softmax, a per-token linear layer's output...), an ``ActQuant`` quantizes it, as the
   engine's quantize step does; float readers keep the float value.

Module-backed units keep their module's name (``model.features[0]`` becomes the QConv2d that holds
the Conv2d as ``.layer``), so per-layer settings (``QATConfig.layers``) use the float model's names.
"""
from __future__ import annotations

import copy

from . import _torch  # noqa: F401
import torch
from torch import fx, nn
from torch.fx.graph_module import _USER_PRESERVED_ATTRIBUTES_KEY as _PRESERVED  # kept by deepcopy
from torch.fx.passes.shape_prop import ShapeProp

from .config import QATConfig
from .fx_ops import ACTIVATIONS, op_of
from .quantizers import ActQuant
from .units import (QAdd, QAvgPool2d, QCat, QConv2d, QDropout, QGlobalAvgPool2d, QLinear, QLut, QMaxPool2d,
                    QMul, QReshape, Unit, activation_function)

CODE_COPYING = ("flatten", "reshape", "identity")


def prepare_qat(model: nn.Module, example_inputs, config: QATConfig | None = None) -> fx.GraphModule:
    """The model with fake quantization on weights and activations, ready to train; see the
    module docstring and docs/qat.md. ``example_inputs``: a tuple of tensors (one batch) the model
    accepts. Train it like the float model, then ``convert`` it to an int8 ``eb.QuantizedModel``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in example_inputs):
        raise TypeError("example_inputs: expected a tuple of torch tensors (one batch the model accepts)")
    config = QATConfig() if config is None else config
    if not isinstance(config, QATConfig):
        raise TypeError(f"config: expected an eightbit.torch.QATConfig, got {type(config).__name__}")
    training = model.training
    try:
        gm = fx.symbolic_trace(copy.deepcopy(model))
    except Exception as e:  # torch.fx raises several types for untraceable Python
        raise ValueError(f"model: torch.fx cannot trace it ({type(e).__name__}: {e}); data-dependent "
                         "control flow must move out of forward()") from e
    unknown = set(config.layers) - {name for name, _ in gm.named_modules()}
    if unknown:
        raise ValueError(f"config.layers: no module named {sorted(unknown)} in the model")
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(*example_inputs)
    _Rewriter(gm, config).run()
    _add_step_counter(gm, config)
    # What convert needs, kept by copy.deepcopy (a GraphModule's deepcopy rebuilds the module and
    # keeps only the attributes its meta lists) and by pickling.
    attrs = {"eb_config": config,
             "eb_inputs": [(n.name, tuple(t.shape), str(t.dtype).replace("torch.", ""))
                           for n, t in zip(_placeholders(gm), example_inputs)]}
    gm.meta.setdefault(_PRESERVED, {}).update(attrs)
    for name, value in attrs.items():
        setattr(gm, name, value)
    gm.train(training)
    return gm


class StepCounter(nn.Module):
    """Counts training forward passes (``steps``) and freezes the observers / BatchNorm after
    ``QATConfig.freeze_observers_after`` / ``freeze_bn_after`` of them. A node of the traced graph
    (called first, without inputs), so deepcopy, pickling and state_dict treat it as any module."""

    def __init__(self, observers_after, bn_after):
        super().__init__()
        self.observers_after, self.bn_after = observers_after, bn_after
        self.register_buffer("steps", torch.tensor(0, dtype=torch.int64))
        object.__setattr__(self, "_quantizers", ())   # the model's, held outside the module tree

    def forward(self):
        if not self.training:
            return
        self.steps += 1
        steps = int(self.steps)
        for m in self._quantizers:
            if isinstance(m, ActQuant) and self.observers_after is not None and steps > self.observers_after:
                m.freeze()
            if isinstance(m, QConv2d) and self.bn_after is not None and steps > self.bn_after:
                m.freeze_bn()


def _add_step_counter(gm, config) -> None:
    counter = StepCounter(config.freeze_observers_after, config.freeze_bn_after)
    object.__setattr__(counter, "_quantizers", tuple(m for m in gm.modules() if isinstance(m, (ActQuant, QConv2d))))
    gm.add_submodule("eb_step", counter)
    with gm.graph.inserting_after(_placeholders(gm)[-1]):
        gm.graph.call_module("eb_step", ())
    gm.recompile()


def _placeholders(gm):
    return [n for n in gm.graph.nodes if n.op == "placeholder"]


def _shape(node):
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _spatial_mean(op, shape) -> bool:
    """A mean over H and W of an NCHW map: a global average pool."""
    dims = op.attrs["dim"]
    dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
    return shape is not None and len(shape) == 4 and sorted(d % 4 for d in dims) == [2, 3]


def layers(model: nn.Module) -> list:
    """[(name, unit)] of the model's conv / linear units in forward order; ``name`` is the float
    model's module name (as ``QATConfig.layers`` takes it)."""
    gm = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    modules = dict(gm.named_modules())
    return [(n.target, modules[n.target]) for n in gm.graph.nodes
            if n.op == "call_module" and isinstance(modules[n.target], (QConv2d, QLinear))]


def freeze_observers(model: nn.Module, frozen: bool = True) -> None:
    """Stop (or resume) every activation observer: scales and zero points stay where they are."""
    for m in model.modules():
        if isinstance(m, ActQuant):
            m.freeze(frozen)


def freeze_bn(model: nn.Module, frozen: bool = True) -> None:
    """Fold every conv's BatchNorm with its running statistics from now on (they stop updating)."""
    for m in model.modules():
        if isinstance(m, QConv2d):
            m.freeze_bn(frozen)


class _Rewriter:
    def __init__(self, gm, config: QATConfig):
        self.gm, self.cfg = gm, config
        self.modules = dict(gm.named_modules())
        self.quantized: set = set()       # fx nodes whose output is a quantized tensor
        self.units: dict = {}             # unit call_module node -> its Unit
        self.aspec = config.activation

    def run(self) -> None:
        self.erased = set()
        for node in list(self.gm.graph.nodes):
            if node.op in ("call_module", "call_function", "call_method") and node not in self.erased:
                self._visit(node)
        self._bind()
        self.gm.graph.lint()
        self.gm.delete_all_unused_submodules()
        self.gm.recompile()

    # ---- matching -----------------------------------------------------------------------------

    def _sole_user(self, node, kinds):
        """The op reading ``node`` when it is the only reader and of one of ``kinds``."""
        users = list(node.users)
        if len(users) != 1 or users[0].op not in ("call_module", "call_function", "call_method"):
            return None
        op = op_of(users[0], self.modules)
        return (users[0], op) if op.kind in kinds and op.inputs[:1] == [node] else None

    def _fused_activation(self, node, allowed=("relu", "clip")):
        found = self._sole_user(node, allowed)
        if found is None:
            return None, []
        user, op = found
        if op.kind == "relu":
            return "relu", [user]
        lo, hi = op.attrs.get("min"), op.attrs.get("max")
        if lo is None or hi is None or not lo <= hi:
            return None, []
        return ("clip", float(lo), float(hi)), [user]

    def _visit(self, node) -> None:
        op = op_of(node, self.modules)
        ins = [i for i in op.inputs if isinstance(i, fx.Node) and i.op != "get_attr"]
        all_quantized = bool(ins) and len(ins) == len(op.inputs) and all(i in self.quantized for i in ins)
        exact = self.cfg.exact
        if op.kind == "conv2d":
            spec = self.cfg.weight_for(node.target)
            if spec is None or op.module.padding_mode != "zeros":
                return      # kept float (circular / reflect padding has no int8 form)
            chain, bn = [node], None
            found = self._sole_user(node, ("batch_norm2d",))
            if found is not None and found[1].module.track_running_stats:
                bn = found[1].module
                chain.append(found[0])
            act, more = self._fused_activation(chain[-1])
            unit = QConv2d(op.module, bn, act, spec, self.aspec, exact)
            self._replace(chain + more, unit, [node.args[0]], name=node.target, quantize_inputs=True)
        elif op.kind == "linear":
            spec = self.cfg.weight_for(node.target)
            shape = _shape(node.args[0])
            if spec is None or shape is None or len(shape) == 4:
                return
            policy = self.aspec.per_token
            per_token = policy is True or (policy == "auto" and len(shape) >= 3)
            act, more = self._fused_activation(node, ("relu",) if per_token else ("relu", "clip"))
            unit = QLinear(op.module, act, spec, self.aspec, exact, per_token=per_token)
            self._replace([node] + more, unit, [node.args[0]], name=node.target, quantize_inputs=not per_token)
        elif op.kind in ("add", "mul") and len(ins) == 2 and all_quantized:
            if op.kind == "add":
                relu = not self.aspec.symmetric and self._sole_user(node, ("relu",)) is not None
                more = [self._sole_user(node, ("relu",))[0]] if relu else []
                self._replace([node] + more, QAdd(self.aspec, exact, relu=relu), ins)
            else:
                self._replace([node], QMul(self.aspec, exact), ins)
        elif op.kind == "cat" and all_quantized and _shape(node) is not None:
            dim = op.attrs["dim"] % len(_shape(node))
            if dim != 0:
                self._replace([node], QCat(dim, self.aspec, exact), ins)
        elif not all_quantized or len(ins) != 1:
            return
        elif op.kind == "max_pool2d" and op.attrs["dilation"] == (1, 1):
            a = op.attrs
            self._replace([node], QMaxPool2d(a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"]), ins)
        elif op.kind == "avg_pool2d":
            a = op.attrs
            self._replace([node], QAvgPool2d(a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                                             bool(a["count_include_pad"]), self.aspec, exact), ins)
        elif op.kind == "global_avg_pool2d":
            self._replace([node], QGlobalAvgPool2d(self.aspec, exact), ins)
        elif op.kind == "mean" and _spatial_mean(op, _shape(ins[0])):
            self._replace([node], QGlobalAvgPool2d(self.aspec, exact, keepdim=bool(op.attrs["keepdim"])), ins)
        elif op.kind == "dropout":
            self._replace([node], QDropout(op.attrs["p"]), ins)
        elif op.kind in CODE_COPYING:
            out, x = _shape(node), _shape(ins[0])
            if out is not None and x is not None and out[:1] == x[:1]:
                self._replace([node], QReshape(out[1:]), ins)
        elif op.kind in ACTIVATIONS:
            if activation_function(op.kind, op.attrs) is not None:
                self._replace([node], QLut(op.kind, op.attrs, self.aspec, exact), ins)

    # ---- rewriting ----------------------------------------------------------------------------

    def _replace(self, chain, unit: Unit, inputs, name=None, quantize_inputs=False) -> None:
        """Put ``unit`` in place of the nodes ``chain`` (the last one's readers read the unit)."""
        g, last = self.gm.graph, chain[-1]
        if name is None and chain[0].op == "call_module":
            name = chain[0].target
        name = name if name is not None else self._free_name(chain[0].name)
        self.gm.add_submodule(name, unit)      # a module-backed unit takes its module's place
        self.modules[name] = unit
        with g.inserting_after(last):
            new = g.call_module(name, tuple(inputs))
        new.meta = dict(last.meta)
        last.replace_all_uses_with(new)
        for n in reversed(chain):
            g.erase_node(n)
            self.erased.add(n)
        for n in chain[1:]:      # an absorbed module (the BatchNorm) now lives in the unit only
            if n.op == "call_module" and not any(m.op == "call_module" and m.target == n.target for m in g.nodes):
                self.gm.delete_submodule(n.target)
        if quantize_inputs:
            for x in inputs:
                if x not in self.quantized:
                    new.replace_input_with(x, self._act_quant(x))
        self.units[new] = unit
        if unit.copies_codes or getattr(unit, "output_quant", None) is not None:
            self.quantized.add(new)

    def _act_quant(self, x):
        """The ActQuant node quantizing tensor x (one per tensor, shared by its int8 readers)."""
        for user in x.users:
            if user.op == "call_module" and isinstance(self.modules.get(user.target), ActQuant):
                return user
        name = self._free_name(f"{x.name}_quant")
        aq = ActQuant(self.aspec)
        self.gm.add_submodule(name, aq)
        self.modules[name] = aq
        with self.gm.graph.inserting_after(x):
            node = self.gm.graph.call_module(name, (x,))
        node.meta = dict(x.meta)
        self.quantized.add(node)
        return node

    def _free_name(self, base: str) -> str:
        name, i = base.replace(".", "_"), 1
        while name in self.modules or hasattr(self.gm, name):
            name, i = f"{base}_{i}".replace(".", "_"), i + 1
        return name

    def _bind(self) -> None:
        for node, unit in self.units.items():
            # a per-token linear layer reads a float tensor: no source
            unit.bind([self.modules[i.target] if i.op == "call_module" else None for i in node.args])
