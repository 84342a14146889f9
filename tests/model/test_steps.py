"""The step registry (eightbit.model.steps): every kind is complete and documented, a new kind needs
nothing but its StepKind and a registry entry, and the model package's imports form no cycle."""
import ast
import dataclasses
import pathlib

import numpy as np
import pytest

import eightbit as eb
from eightbit.model import Plan, QuantizedModel, Step, TensorSpec, steps
from eightbit.model.steps import StepKind

U8, F32 = np.dtype(np.uint8), np.dtype(np.float32)
MODEL_DIR = pathlib.Path(steps.__file__).parent.parent


def test_every_kind_is_complete_and_documented():
    table = steps.__doc__
    for op, kind in steps.REGISTRY.items():
        assert kind.op == op
        assert kind.output in ("quant", "float", "same")
        for hook in ("shape", "run", "lower", "export"):
            assert callable(getattr(kind, hook)), (op, hook)
        assert f"\n{op} " in table or f"\n{op}," in table or f", {op} " in table, f"{op} is missing from the table"
        module = next(m for m in vars(steps).values()
                      if getattr(m, "__name__", "").startswith("eightbit.model.steps.")
                      and any(v is kind for v in vars(m).values()))
        assert op in module.__doc__, f"{module.__name__}'s docstring does not describe {op}"


def test_registry_refuses_duplicates_and_bad_kinds():
    k = steps.REGISTRY["reshape"]
    with pytest.raises(ValueError, match="registered twice"):
        steps._register(k, k)
    with pytest.raises(ValueError, match="output must be one of"):
        dataclasses.replace(k, output="int8")
    assert steps.get("gemm") is None and steps.get(["conv"]) is None


def _copy_kind():
    """A step kind the C++ executor lacks: a byte copy of a quantized tensor."""
    def lower(step, ins, out):
        raise NotImplementedError("no C++ copy step")

    def export(ex, step, label):
        ex.b.node("Identity", [step.inputs[0]], [step.output], label)

    return StepKind("copy", 1, "same", copies=True, shape=lambda step, ins: ins[0].shape,
                    run=lambda m, step, xs, ins, out, w: xs[0].copy(), lower=lower, export=export)


def _copy_plan(scale=0.05, zp=128):
    t = {"x": TensorSpec("x", F32, (None, 6)), "xq": TensorSpec("xq", U8, (None, 6), 0.05, 128),
         "c": TensorSpec("c", U8, (None, 6), scale, zp), "y": TensorSpec("y", F32, (None, 6))}
    return Plan(t, [Step("quantize", ("x",), "xq"), Step("copy", ("xq",), "c", source="cp"),
                    Step("dequantize", ("c",), "y")], ["x"], ["y"])


def test_a_new_kind_is_one_registry_entry(rng, monkeypatch):
    with pytest.raises(ValueError, match="unknown op 'copy'"):
        _copy_plan().validate()
    monkeypatch.setitem(steps.REGISTRY, "copy", _copy_kind())
    with pytest.raises(ValueError, match=r"step 1 \(copy, from cp\): copies bytes"):
        _copy_plan(scale=0.1).validate()
    qm = QuantizedModel(_copy_plan())  # validated; no C++ form: runs step by step
    x = rng.uniform(-7, 7, (3, 6)).astype(np.float32)
    want = np.clip(np.rint(x / np.float32(0.05)) + 128, 0, 255).astype(np.float32) - 128
    np.testing.assert_array_equal(qm.reference_run({"x": x})["y"], want * np.float32(0.05))
    np.testing.assert_array_equal(qm(x), qm.reference_run({"x": x})["y"])
    pytest.importorskip("onnx")
    m = eb.to_onnx(qm, format="qoperator")
    assert [n.op_type for n in m.graph.node] == ["QuantizeLinear", "Identity", "DequantizeLinear"]
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], qm(x))


def _model_imports(path: pathlib.Path, package: str) -> set:
    """The eightbit.model modules a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[:len(package.split(".")) - node.level + 1]
            mod = ".".join(base + ([node.module] if node.module else []))
            names = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            found |= {n for n in names if n.startswith("eightbit.model.")}
    return found


def test_model_imports_have_no_cycle():
    graph = {}
    for path in MODEL_DIR.rglob("*.py"):
        rel = path.relative_to(MODEL_DIR.parent.parent).with_suffix("")
        name = ".".join(rel.parts)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name.removesuffix(".__init__")] = _model_imports(path, package)
    graph = {m: {i for i in deps if i in graph and i != m} for m, deps in graph.items()}
    assert "eightbit.model.execute" not in graph["eightbit.model.plan"]
    done, active = set(), []

    def visit(m):
        if m in active:
            raise AssertionError("import cycle: " + " -> ".join(active[active.index(m):] + [m]))
        if m in done:
            return
        active.append(m)
        for d in sorted(graph[m]):
            if d != "eightbit.model" and not m.startswith(d + "."):  # a package's own __init__
                visit(d)
        active.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)
