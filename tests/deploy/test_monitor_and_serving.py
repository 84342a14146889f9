"""qm.monitor().as_dict(): plain JSON values checked against counts made independently from the
plan's quantization parameters and the step-by-step run; latency percentiles over a bounded
window; and examples/serve_http.py (standard library) serving a model and its metrics."""
import importlib.util
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

QMIN_QMAX = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def expected_counts(qm, x):
    """{tensor: (elements, saturated, out of range or None)} from run_steps' integer tensors."""
    tensors = qm.run_steps({"x": x}, return_all=True)
    out = {}
    for s in qm.plan.steps:
        spec = qm.plan.tensors[s.output]
        if not spec.quantized:
            continue
        codes = np.asarray(tensors[s.output]).astype(np.int64)
        lo, hi = QMIN_QMAX[spec.dtype]
        sat = (int(np.sum(codes == lo)) if spec.zero_point != lo else 0) + \
              (int(np.sum(codes == hi)) if spec.zero_point != hi else 0)
        outside = None
        if s.op == "quantize":
            scale = np.float64(np.float32(spec.scale))
            v = np.asarray(tensors[s.inputs[0]], np.float64)
            outside = int(np.sum((v < scale * (lo - spec.zero_point)) | (v > scale * (hi - spec.zero_point))))
        out[s.output] = (codes.size, sat, outside)
    return out


def drifted(n, rng):
    """Calibrated on U(-1, 1); 10 % of the values at +-(2..3), the rest within +-0.9 (far from the edges)."""
    x = rng.uniform(-0.9, 0.9, (n, 8))
    far = rng.random(x.shape) < 0.10
    x[far] = np.sign(rng.uniform(-1, 1, far.sum())) * rng.uniform(2, 3, far.sum())
    return x.astype(np.float32)


def test_as_dict_counts_match_independent_counts(mlp):
    rng = np.random.default_rng(7)
    batches = [drifted(n, rng) for n in (5, 17, 1)]
    with mlp.monitor() as m:
        for x in batches[:2]:
            mlp(x)
        mlp.run({"x": batches[2]})
        d = m.as_dict()
    json.dumps(d)  # plain values only
    assert d["calls"] == 3 and d["samples"] == 23 and d["active"] is True
    want = {}
    for x in batches:
        for name, c in expected_counts(mlp, x).items():
            prev = want.get(name, (0, 0, None))
            want[name] = (prev[0] + c[0], prev[1] + c[1], None if c[2] is None else (prev[2] or 0) + c[2])
    assert set(d["tensors"]) == set(want)
    for name, (count, sat, outside) in want.items():
        t = d["tensors"][name]
        assert (t["count"], t["saturated"], t["out_of_range"]) == (count, sat, outside), name
        assert t["saturation_rate"] == pytest.approx(sat / count)
        assert t["out_of_range_rate"] == (None if outside is None else pytest.approx(outside / count))
    assert d["elements"] == sum(c for c, _, _ in want.values())
    assert d["saturated"] == sum(s for _, s, _ in want.values())
    checked = [(c, o) for c, _, o in want.values() if o is not None]
    assert d["out_of_range"] == sum(o for _, o in checked) > 0
    assert d["out_of_range_rate"] == pytest.approx(sum(o for _, o in checked) / sum(c for c, _ in checked))
    lat = d["latency_ms"]
    assert lat["window"] == 3 and 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert not mlp.monitor().as_dict()["calls"]  # a new monitor counts from zero
    mlp.monitor().stop()


def test_latency_window_and_percentiles(mlp):
    m = mlp.monitor(window=4)
    try:
        assert m.latency_ms() == {"p50": None, "p90": None, "p99": None, "mean": None, "max": None, "window": 0}
        for ms in range(1, 11):          # 1 .. 10 ms: the window keeps 7, 8, 9, 10
            m.record(ms / 1e3, 1)
        lat = m.latency_ms()
        assert lat["window"] == 4 and lat["max"] == pytest.approx(10)
        assert lat["p50"] == pytest.approx(8.5) and lat["mean"] == pytest.approx(8.5)
        assert lat["p90"] == pytest.approx(9.7)  # linear interpolation between 9 and 10
        assert m.as_dict()["calls"] == 10        # calls are counted beyond the window
        m.reset(window=100)
        assert m.as_dict()["calls"] == 0 and m.latency_ms()["window"] == 0
        with pytest.raises(ValueError, match="window: expected an int >= 1"):
            m.reset(window=0)
    finally:
        m.stop()


def _serve_module():
    path = Path(__file__).resolve().parents[2] / "examples" / "serve_http.py"
    spec = importlib.util.spec_from_file_location("serve_http", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stdlib_http_server_serves_predictions_and_metrics(mlp):
    x = np.random.default_rng(8).uniform(-1, 1, (3, 8)).astype(np.float32)
    want = mlp(x)  # before the server's monitor starts counting
    server = _serve_module().make_server(mlp, port=0)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", json.dumps({"x": x.tolist()}).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            got = json.loads(r.read())
        name = mlp.output_names[0]
        np.testing.assert_array_equal(np.asarray(got[name], np.float32), want)
        bad = urllib.request.Request(f"http://127.0.0.1:{port}/predict", json.dumps({"x": [[1, 2]]}).encode())
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=10)
        assert e.value.code == 400 and "expected shape" in json.loads(e.value.read())["error"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            metrics = json.loads(r.read())
        assert metrics["calls"] == 1 and metrics["samples"] == 3  # the refused request never ran
        assert metrics["tensors"][mlp.plan.steps[0].output]["count"] == x.size
    finally:
        server.shutdown()
        server.server_close()
        mlp.monitor().stop()
