"""eightbit.distributed on a LocalCluster of 2 worker processes: every result equals the
single-process one (predict: eb.load(...).run on the whole array; calibration: eb.quantize over
the same batches as a list; sensitivity and the accuracy budget: the same calls without a client)."""

import numpy as np
import pytest

pytest.importorskip("dask.distributed")
import dask.array as da  # noqa: E402
from dask.distributed import Client, LocalCluster  # noqa: E402

import eightbit as eb  # noqa: E402
import eightbit.distributed as ebd  # noqa: E402
from eightbit.distributed import dask_calibration  # noqa: E402
from eightbit.data import digits  # noqa: E402
from eightbit.quantizer import calibrate  # noqa: E402

METHODS = ["minmax", "moving_average", "percentile", "entropy", "mse"]


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def cnn():
    d = digits()
    g = eb.Graph()
    x = g.input("x", shape=(None, 1, 8, 8))
    h = g.max_pool2d(g.relu(g.conv2d(x, d.weights["cnn_conv1_w"], d.weights["cnn_conv1_b"], padding=1)), 2)
    h = g.max_pool2d(g.relu(g.conv2d(h, d.weights["cnn_conv2_w"], d.weights["cnn_conv2_b"], padding=1)), 2)
    g.output(g.linear(g.flatten(h), d.weights["cnn_fc_w"], d.weights["cnn_fc_b"]))
    return g, d


@pytest.fixture(scope="module")
def model_path(cnn, tmp_path_factory):
    g, d = cnn
    path = str(tmp_path_factory.mktemp("dist") / "digits.eb")
    eb.quantize(g, [d.calib_images], method="percentile").save(path)
    return path


def _mlp():
    """x -> relu -> linear -> relu -> linear: the first relu is all zero on an all-negative batch."""
    rng = np.random.default_rng(5)
    g = eb.Graph()
    x = g.input("x", shape=(None, 16))
    h = g.relu(g.linear(g.relu(x), rng.standard_normal((32, 16)).astype(np.float32),
                        rng.standard_normal(32).astype(np.float32)))
    g.output(g.linear(h, rng.standard_normal((8, 32)).astype(np.float32), rng.standard_normal(8).astype(np.float32)))
    return g


def _growing_data():
    """6 chunks of 40 rows; the first batch all negative, ranges growing and shrinking across chunks."""
    rng = np.random.default_rng(9)
    scales = [1.0, 0.01, 5.0, 300.0, 0.3, 2e4]
    x = np.concatenate([rng.standard_normal((40, 16)) * s for s in scales]).astype(np.float32)
    x[:16] = -np.abs(x[:16])
    return x


# ---- predict --------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [None, 33])
def test_predict_equals_one_process(client, cnn, model_path, batch_size):
    _, d = cnn
    x = d.test_images
    xd = da.from_array(x, chunks=((100, 7, 153, 100), 1, 8, 8))
    y = ebd.predict(model_path, xd, batch_size=batch_size)
    assert isinstance(y, da.Array) and y.chunks[0] == (100, 7, 153, 100) and y.dtype == np.float32
    out = y.compute()
    ref = eb.load(model_path)(x)
    assert out.dtype == ref.dtype and out.shape == ref.shape == (360, 10)
    np.testing.assert_array_equal(out, ref)
    # the model computes real predictions: the digits CNN is ~98% accurate
    assert np.mean(out.argmax(1) == d.test_labels) > 0.95


def test_predict_loads_once_per_worker_with_its_threads(client, cnn, model_path):
    _, d = cnn
    xd = da.from_array(d.test_images, chunks=30)
    ebd.predict(model_path, xd).compute()

    def cached():
        from eightbit.distributed import models
        return [id(m) for _, m in models._models.values()], eb.cpu_info()["num_threads"]

    before = client.run(cached)
    assert len(before) == 2 and all(len(ids) == 1 and threads == 1 for ids, threads in before.values())
    ebd.predict(model_path, xd).compute()                    # the same model objects serve again
    assert client.run(cached) == before


def test_predict_dataframe_rows_reshaped_to_the_input(client, cnn, model_path):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    _, d = cnn
    flat = d.test_images.reshape(len(d.test_images), 64)
    df = dd.from_pandas(pd.DataFrame(flat.astype(np.float64), columns=[f"p{i}" for i in range(64)]), npartitions=3)
    out = ebd.predict(model_path, df, batch_size=50).compute()
    np.testing.assert_array_equal(out, eb.load(model_path)(d.test_images))
    with pytest.raises(ValueError, match="must be fixed with 63 elements"):
        ebd.predict(model_path, df[df.columns[:63]])
    with pytest.raises(TypeError, match="non-numeric column"):
        ebd.predict(model_path, df.assign(p0="a"))


def test_predict_refuses_bad_arguments(client, cnn, model_path, tmp_path):
    _, d = cnn
    xd = da.from_array(d.test_images, chunks=100)
    with pytest.raises(TypeError, match="expected a dask array, a dask dataframe"):
        ebd.predict(model_path, d.test_images)
    with pytest.raises(ValueError, match="batch_size"):
        ebd.predict(model_path, xd, batch_size=0)
    with pytest.raises(ValueError, match="not an output of the model"):
        ebd.predict(model_path, xd, output="nope")
    with pytest.raises(ValueError, match=r"expected samples of shape \[N, 1, 8, 8\]"):
        ebd.predict(model_path, da.zeros((10, 64), chunks=5))
    with pytest.raises(TypeError, match="client"):
        ebd.predict(model_path, xd, client="localhost")
    # a file rewritten after the graph was built is refused, not silently mixed in
    path = str(tmp_path / "m.eb")
    with open(model_path, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    y = ebd.predict(path, xd)
    with open(path, "ab") as f:
        f.write(b"\0" * 64)
    with pytest.raises(ValueError, match="changed after the task graph was built"):
        y.compute()


# ---- calibration ----------------------------------------------------------------------------------

def test_calibration_merges_exactly_for_every_method(client, monkeypatch):
    g, x = _mlp(), _growing_data()
    batches = [x[c:c + 40][k:k + 16] for c in range(0, len(x), 40) for k in range(0, 40, 16)]
    # the premise: the first relu is all zero on batch 0 and not later (its histogram's grid comes
    # from a later partition), and the range grows by non-power-of-two factors across partitions
    assert not np.any(np.maximum(batches[0], 0)) and np.any(np.maximum(batches[3], 0))
    ref = calibrate(g, batches, methods=METHODS)
    passes = []
    compute = dask_calibration.compute
    monkeypatch.setattr(dask_calibration, "compute", lambda tasks, c: passes.append(len(tasks)) or compute(tasks, c))
    dist = calibrate(g, ebd.calibration(da.from_array(x, chunks=40), batch_size=16, client=client), methods=METHODS)
    # one pass over the 6 partitions, then the relu's histogram observed again where it started on its own grid
    assert passes[0] == 6 and len(passes) == 2 and 1 <= passes[1] < 6
    probe = np.random.default_rng(1).standard_normal((64, 16)).astype(np.float32) * 100
    for m in METHODS:
        assert list(dist[m].params.ranges.items()) == list(ref[m].params.ranges.items()), m
        a, b = ref[m].default_model(), dist[m].default_model()
        assert [(t.name, t.scale, t.zero_point) for t in a.plan.tensors.values()] == \
            [(t.name, t.scale, t.zero_point) for t in b.plan.tensors.values()], m
        np.testing.assert_array_equal(b(probe), a(probe))
        np.testing.assert_array_equal(dist[m].check_feeds["x"], ref[m].check_feeds["x"])
    # the ranges are the data's: minmax of the first relu is [0, max(x)] over every batch
    relu = g.nodes[0].output
    assert dist["minmax"].params.ranges[relu] == (0.0, float(x.max()))


def test_quantize_takes_a_dask_array(client, cnn):
    g, d = cnn
    x = d.calib_images
    xd = da.from_array(x, chunks=((64, 100, 92), 1, 8, 8))
    for method in ("entropy", "minmax"):
        a = eb.quantize(g, [x[:64], x[64:164], x[164:]], method=method)
        b = eb.quantize(g, xd, method=method, client=client)
        np.testing.assert_array_equal(b(d.test_images), a(d.test_images))
        assert [t.scale for t in b.plan.tensors.values()] == [t.scale for t in a.plan.tensors.values()]
    # bias correction streams the batches to the client: the same model
    a = eb.quantize(g, [x[:64], x[64:164], x[164:]], bias_correction=True)
    b = eb.quantize(g, xd, bias_correction=True)
    np.testing.assert_array_equal(b(d.test_images), a(d.test_images))


def test_calibration_from_a_dataframe(client, cnn):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    g, d = cnn
    x = d.calib_images
    df = dd.from_pandas(pd.DataFrame(x.reshape(len(x), 64)), npartitions=2)
    parts = [df.partitions[i].compute().to_numpy().reshape(-1, 1, 8, 8) for i in range(2)]
    a = eb.quantize(g, parts, method="mse")
    b = eb.quantize(g, df, method="mse")
    np.testing.assert_array_equal(b(d.test_images), a(d.test_images))


def test_calibration_refuses_bad_data(cnn):
    g, d = cnn
    with pytest.raises(ValueError, match="batch_size"):
        ebd.calibration(da.from_array(d.calib_images), batch_size=-1)
    bad = d.calib_images.copy()
    bad[200, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        eb.quantize(g, da.from_array(bad, chunks=64))
    with pytest.raises(ValueError, match="no non-empty batch"):
        eb.quantize(g, da.zeros((0, 1, 8, 8), chunks=10))


# ---- sensitivity and the accuracy budget ------------------------------------------------------------

def test_sensitivity_fans_out_with_the_same_ranking(client, cnn):
    g, d = cnn
    calib = [d.calib_images]
    ref = eb.sensitivity(g, calib, d.test_images, metric="sqnr")
    dist = eb.sensitivity(g, calib, d.test_images, metric="sqnr", client=client)
    rows = lambda s: [(r.node, r.metric_quant, r.drop, r.relative_drop) for r in s.nodes]
    assert rows(dist) == rows(ref) and len(ref.nodes) >= 4
    assert len({r.metric_quant for r in ref.nodes}) > 1       # the nodes really differ


def test_accuracy_budget_fans_out_with_the_same_search(client, cnn):
    g, d = cnn
    kw = dict(eval_data=d.test_images, metric="cosine", min_sqnr=None)
    default_drop = eb.quantize(g, [d.calib_images], accuracy_budget=0.5, **kw).tradeoffs[0].relative_drop
    kw["accuracy_budget"] = default_drop / 4                 # the default model fails: a search
    ref = eb.quantize(g, [d.calib_images], **kw)
    dist = eb.quantize(g, [d.calib_images], client=client, **kw)
    assert len(ref.tradeoffs) > 1
    assert [(t.float_nodes, t.metric) for t in dist.tradeoffs] == [(t.float_nodes, t.metric) for t in ref.tradeoffs]
    assert dist.float_nodes == ref.float_nodes
    np.testing.assert_array_equal(dist(d.test_images), ref(d.test_images))
