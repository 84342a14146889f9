"""eb.explain: SHAP attributions of a float model and its int8 model; the feature whose weights
were quantized coarsely (a planted error) must rank first among the changed attributions."""
import dataclasses
import io
import sys

import numpy as np
import pytest

import eightbit as eb
from eightbit.model import Plan, QuantizedModel

pytest.importorskip("shap")
pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402

FEATURES, PLANTED = 6, 3


def _tiny(rng):
    """linear(6 -> 8) -> relu -> linear(8 -> 1): every input feature matters."""
    w1 = (rng.uniform(0.3, 1.0, (8, FEATURES)) * rng.choice([-1.0, 1.0], (8, FEATURES))).astype(np.float32)
    w2 = rng.uniform(0.3, 1.0, (1, 8)).astype(np.float32)
    g = eb.Graph()
    x = g.input("x", (None, FEATURES))
    g.output(g.linear(g.relu(g.linear(x, w1, np.full(8, 0.5, np.float32), name="fc1")), w2, None, name="fc2"))
    return g


def _coarse(qm: QuantizedModel, node: str, column: int) -> QuantizedModel:
    """qm with one layer's weights of one input feature on a 64-step grid (as if 2-bit)."""
    steps = []
    for s in qm.plan.steps:
        if s.source == node and s.op == "linear":
            w = s.consts["w"].astype(np.int32)
            w[:, column] = np.clip(np.round(w[:, column] / 64) * 64, -127, 127)
            s = dataclasses.replace(s, consts={**s.consts, "w": w.astype(np.int8)})
        steps.append(s)
    return QuantizedModel(Plan(qm.plan.tensors, steps, qm.plan.inputs, qm.plan.outputs))


@pytest.fixture(scope="module")
def models():
    rng = np.random.default_rng(1)
    g = _tiny(rng)
    x = rng.standard_normal((96, FEATURES)).astype(np.float32)
    qm = eb.quantize(g, [x[:64]])
    return g, _coarse(qm, "fc1", PLANTED), x


def test_planted_feature_ranks_first_and_local_accuracy(models):
    g, bad, x = models
    state = np.random.get_state()
    ex = eb.explain((g, bad), x[64:70], x[:24])
    assert np.all(np.random.get_state()[1] == state[1]), "explain changed NumPy's global random state"
    assert ex.names == ["float32", "int8"]
    assert ex.values["float32"].shape == (6, FEATURES)
    # local accuracy: base value + sum of attributions == the model's prediction
    want = g.run(x[64:70])[:, 0]
    got = ex.base_values["float32"] + ex.values["float32"].sum(axis=1)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert ex.local_accuracy_error("int8") < 1e-4
    np.testing.assert_allclose(ex.predictions["int8"], bad(x[64:70])[:, 0], atol=1e-6)
    assert ex.changed[0][0] == f"x[{PLANTED}]"
    assert ex.changed[0][1] > 3 * ex.changed[1][1]
    table = ex.table()
    assert f"x[{PLANTED}]" in table.splitlines()[2] and "local accuracy" in table


def test_plot_is_a_figure(models):
    g, bad, x = models
    ex = eb.explain({"fp32": g, "int8": bad}, x[64:66], x[:12], feature_names=list("abcdef"))
    assert sorted(f for f, _ in ex.changed) == list("abcdef")
    fig = ex.plot(sample=1)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    import matplotlib.image as mpimg
    assert mpimg.imread(io.BytesIO(buf.getvalue()), format="png")[..., :3].var() > 0
    with pytest.raises(IndexError):
        ex.plot(sample=5)
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_callables_images_and_the_output_index():
    """A callable model with a class output: the default output is the most predicted class;
    multi-dimensional inputs keep their shape in the values."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 2 * 2)).astype(np.float32)

    def model(x):
        return x.reshape(len(x), -1) @ w.T + np.array([0.0, 5.0, 0.0], np.float32)   # class 1 wins

    x = rng.standard_normal((3, 2, 2)).astype(np.float32)
    ex = eb.explain({"a": model, "b": lambda v: model(v) * 1.01}, x, x, nsamples=64)
    assert ex.output_index == 1
    assert ex.values["a"].shape == (3, 2, 2)
    assert ex.feature_names[0] == "x[0,0]"
    # a linear model's exact SHAP values: w[i] * (x[i] - mean(background)[i])
    want = w[1] * (x.reshape(3, -1) - x.reshape(3, -1).mean(axis=0))
    np.testing.assert_allclose(ex.flat("a"), want, atol=1e-4)
    with pytest.raises(ValueError, match="output_index"):
        eb.explain({"a": model}, x, x, output_index=3)


def test_missing_shap_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "shap" or m.startswith("shap.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "shap", None)
    with pytest.raises(ImportError, match=r"eightbit\[report\]"):
        eb.explain({"a": lambda v: v}, np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32))
