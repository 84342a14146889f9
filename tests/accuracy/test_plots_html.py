"""Pictures (accuracy/plots.py), the self-contained HTML report (accuracy/html.py) and the
`eightbit report` command: figures are non-blank, the HTML has no external reference, every layer
name appears in full, and a headless browser renders it (when Chromium is installed)."""
import base64
import io
import json
import math
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

import eightbit as eb
from eightbit.accuracy import LayerRecord, Report, Sensitivity, Tradeoff

pytest.importorskip("matplotlib")
import matplotlib.image as mpimg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from eightbit.accuracy import html as report_html  # noqa: E402
from eightbit.accuracy import plots  # noqa: E402

LONG = "backbone.stage_3.block_2.a_deliberately_long_convolution_name_that_must_never_be_cut"


def _graph(rng):
    g = eb.Graph()
    x = g.input("x", (None, 1, 6, 6))
    w1 = (rng.standard_normal((4, 1, 3, 3)) * 0.5).astype(np.float32)
    h = g.relu(g.conv2d(x, w1, np.zeros(4, np.float32), padding=1, name=LONG))
    h = g.flatten(h)
    w2 = (rng.standard_normal((12, 144)) * 0.1).astype(np.float32)
    w2[3] *= 8                                   # one wide channel: per-channel scales differ
    h = g.relu(g.linear(h, w2, rng.standard_normal(12).astype(np.float32), name="neck.fc"))
    g.output(g.linear(h, (rng.standard_normal((5, 12)) * 0.3).astype(np.float32), None, name="head.classifier"))
    return g


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(7)
    g = _graph(rng)
    x = rng.standard_normal((48, 1, 6, 6)).astype(np.float32)
    labels = g.run(x).argmax(axis=1)
    labels[:3] = (labels[:3] + 1) % 5            # the float model is not perfect either
    calib = [x[:24], x[24:]]
    report = eb.analyze(g, calib, (x, labels), metric="accuracy")
    report.sensitivity = eb.sensitivity(g, calib, (x, labels), methods=["minmax", "percentile"])
    report.tradeoffs = [
        Tradeoff((), 2100, 0.041, 0.9167, 0.0435, False),
        Tradeoff(("head.classifier",), 2180, 0.046, 0.9375, 0.0217, False),
        Tradeoff(("head.classifier", LONG), 2700, 0.058, 0.9583, 0.0, True),
        Tradeoff(("head.classifier", LONG, "neck.fc"), 9400, 0.090, 0.9583, 0.0, True),
    ]
    report.options["accuracy_budget"] = 0.01
    return g, x, labels, report


def _png_ok(data: bytes) -> np.ndarray:
    img = mpimg.imread(io.BytesIO(data), format="png")
    assert img.ndim == 3 and img.shape[0] > 20 and img.shape[1] > 20
    assert float(img[..., :3].var()) > 0, "blank picture"
    return img


def _no_pyplot_figures():
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == [], "a plot leaked into pyplot's global state"


def test_every_picture_is_a_nonblank_figure(setup):
    g, x, labels, report = setup
    step = next(s for s in report.qm.plan.steps if s.source == "neck.fc")
    w = g.node("neck.fc").consts["weight"]
    deq = step.consts["w"] * step.consts["w_scale"][:, None]
    figs = [
        plots.weight_histogram(w, step.consts["w"], step.consts["w_scale"], "neck.fc"),
        plots.weight_histogram(w, step.consts["w"], np.float32(step.consts["w_scale"].max()), "per tensor"),
        plots.weight_images(w, deq, "neck.fc"),
        plots.activation_histogram(report.layer("neck.fc")),
        plots.sqnr_bars(report),
        plots.sensitivity_ranking(report.sensitivity),
        plots.tradeoff_curve(report.tradeoffs, budget=0.01),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
        _png_ok(plots.to_png(fig))
    _no_pyplot_figures()


def test_pictures_of_edge_cases():
    """Infinite and missing SQNRs, a record without histogram, nothing to rank: still pictures."""
    recs = [LayerRecord("x", "input", "quantize", "int8", "x", "uint8", 0.02, 128, cumulative_sqnr=math.inf),
            LayerRecord("a", "relu", "lut", "int8", "a", "uint8", 0.01, 0, isolated_sqnr=math.inf,
                        cumulative_sqnr=35.0, isolated_output_sqnr=50.0),
            LayerRecord("soft", "softmax", "softmax", "float32", "soft", "float32")]
    report = Report(recs, {"soft": 30.0})
    for fig in (plots.sqnr_bars(report), plots.activation_histogram(recs[1]),
                plots.sensitivity_ranking(Sensitivity("sqnr", [])), plots.tradeoff_curve([]),
                plots.sqnr_bars(Report([recs[2]], {}))):
        _png_ok(plots.to_png(fig))


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.refs, self.text, self.worst_rows = [], [], [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for key in ("src", "href", "action", "srcset", "poster", "data"):
            if key in a and tag != "img":
                self.refs.append(a[key])
        if tag == "tr" and "worst" in (a.get("class") or ""):
            self.worst_rows += 1

    def handle_data(self, data):
        self.text.append(data)


def _check_page(text: str, report) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    assert "html" in page.tags and "body" in page.tags
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert page.imgs, "no pictures"
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,"), src[:60]
        _png_ok(base64.b64decode(src.split(",", 1)[1]))
    assert all(r.startswith("#") for r in page.refs), page.refs   # in-page anchors only
    lowered = text.lower()
    for needle in ("http://", "https://", "url(", "@import", "file:"):
        assert needle not in lowered, needle
    words = "".join(page.text)
    for r in report.layers:
        assert r.name in words, f"layer name {r.name!r} missing or cut"
    assert page.worst_rows >= 1
    return page


@pytest.fixture(scope="module")
def rendered(setup, tmp_path_factory):
    """The setup's report written once by Report.to_html (default options)."""
    path = tmp_path_factory.mktemp("html") / "report.html"
    setup[3].to_html(path)
    return path


def test_html_report_is_self_contained(setup, rendered):
    g, x, labels, report = setup
    text = rendered.read_text(encoding="utf-8")
    page = _check_page(text, report)
    words = "".join(page.text)
    assert "accuracy" in words and "Sensitivity" in words and "Mixed precision" in words
    # sqnr bars + (weight histogram + weight images + activation) per conv/linear layer + sensitivity + trade-off
    assert len(page.imgs) >= 1 + 3 * 3 + 2
    for r in report.sensitivity.nodes:
        assert r.node in words


def test_html_caps_the_layer_pictures(setup):
    g, x, labels, report = setup
    text = report_html.to_html(report, max_layer_figures=1)
    page = _check_page(text, report)
    assert "Pictures for the 1 worst of" in "".join(page.text)
    assert len(page.imgs) <= 1 + 3 + 2


def test_hundred_layer_report_stays_small(tmp_path):
    """A hand-built 100-layer report (long names, histograms): every name in the table, pictures
    for 12 layers only, a few MB at most."""
    rng = np.random.default_rng(1)
    layers = []
    for i in range(100):
        name = f"model.encoder.layer.{i}.attention.output.dense_projection_with_a_long_name"
        vals = rng.standard_normal(2000) * (1 + i / 50)
        scale = float(np.abs(vals).max() / 127)
        counts, edges = np.histogram(vals, bins=128)
        layers.append(LayerRecord(name, "linear", "linear", "int8", name + ":out", "int8", scale, 0,
                                  float(vals.min()), float(vals.max()), 0.0, 40.0, 44.0,
                                  45.0 - 0.2 * i, 44.0 - (i % 7), 50.0 - (i % 13),
                                  (counts.tolist(), edges.tolist())))
    report = Report(layers, {"out": 25.0}, samples=2000)
    path = tmp_path / "big.html"
    report.to_html(path)
    text = path.read_text(encoding="utf-8")
    page = _check_page(text, report)
    assert "Pictures for the 12 worst of 100 int8 layers" in "".join(page.text)
    assert len(page.imgs) == 1 + 12
    assert os.path.getsize(path) < 5e6


def test_missing_matplotlib_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)       # as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"eightbit\[report\]"):
        plots.sqnr_bars(Report([], {}))


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="the screenshot check needs headless Chromium (apt-get install chromium), not found")
def test_chromium_renders_the_report(rendered, tmp_path):
    page = rendered
    shot = tmp_path / "shot.png"
    cmd = [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600", f"--screenshot={shot}",
           page.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    img = _png_ok(shot.read_bytes())[..., :3]
    not_white = np.mean(np.any(img < 0.9, axis=-1))
    assert not_white > 0.02, f"the page renders nearly blank ({not_white:.1%} non-white pixels)"
    # the pictures rendered: some saturated colour (the bars), not only black text on white
    colourful = np.mean(img.max(axis=-1) - img.min(axis=-1) > 0.3)
    assert colourful > 0.005, f"no pictures visible in the screenshot ({colourful:.2%} coloured pixels)"


def test_cli_report(setup, tmp_path, capsys):
    pytest.importorskip("onnx")
    from eightbit.cli import main

    g, x, labels, report = setup
    model = tmp_path / "model.onnx"
    eb.to_onnx(g, str(model))
    np.save(tmp_path / "calib.npy", x[:32])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    assert main(["report", str(model), "--calib", str(tmp_path / "calib.npy"), "--data", str(tmp_path / "x.npy"),
                 "--labels", str(tmp_path / "y.npy"), "--sensitivity", "--max-figures", "1",
                 "-o", str(out), "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy: float32" in printed and f"wrote {out}" in printed
    data = json.loads(js.read_text())
    assert data["metric"] == "accuracy" and data["sensitivity"]["nodes"]
    text = out.read_text(encoding="utf-8")
    assert "<img" in text and "Sensitivity" in text
    names = [r["name"] for r in data["layers"]]
    assert LONG in names and all(n in text for n in names)
