"""eb.Ensemble: combine rules against NumPy computed from the members' own outputs, weights, ties,
member checks, parallel runs, eb.evaluate rows, and the one-file save / load round trip."""
import numpy as np
import pytest

import eightbit as eb
from _ensemble_models import calib, mlp


def member_logits(members, x):
    return [m(x).astype(np.float64) for m in members]


def vote_shares(logits, weights):
    """Independent reference: weighted vote counts by a loop over samples."""
    n, classes = logits[0].shape
    out = np.zeros((n, classes))
    for y, w in zip(logits, weights):
        for i in range(n):
            out[i, int(np.argmax(y[i]))] += w
    return out / sum(weights)


def test_mean_is_the_mean_of_the_members_outputs(members, x):
    logits = member_logits(members, x)
    y = eb.Ensemble(members, "mean")(x)
    assert y.dtype == np.float32 and y.shape == (64, 5)
    np.testing.assert_allclose(y, (logits[0] + logits[1] + logits[2]) / 3, rtol=1e-6, atol=1e-6)


def test_weighted_mean(members, x):
    logits = member_logits(members, x)
    w = [0.5, 2.0, 1.5]
    y = eb.Ensemble(members, "mean", weights=w)(x)
    want = sum(wi * li for wi, li in zip(w, logits)) / sum(w)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


def test_vote_shares_and_predict(members, x):
    logits = member_logits(members, x)
    ens = eb.Ensemble(members, "vote")
    shares = ens(x)
    np.testing.assert_allclose(shares, vote_shares(logits, [1, 1, 1]), rtol=0, atol=1e-7)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=1e-6)
    winners = [np.argmax(y, axis=1) for y in logits]
    for i, p in enumerate(ens.predict(x)):
        counts = np.bincount([w[i] for w in winners], minlength=5)
        assert p == np.flatnonzero(counts == counts.max())[0]  # majority; a tie goes to the lowest class


def test_vote_tie_goes_to_the_lowest_class(members, x):
    two = members[:2]
    a, b = (np.argmax(y, axis=1) for y in member_logits(two, x))
    differ = a != b
    assert differ.sum() >= 3, "the fixture members should disagree on some samples"
    pred = eb.Ensemble(two, "vote").predict(x)
    np.testing.assert_array_equal(pred[differ], np.minimum(a, b)[differ])  # 1 vote each: a tie
    np.testing.assert_array_equal(pred[~differ], a[~differ])


def test_vote_weights(members, x):
    logits = member_logits(members, x)
    first = np.argmax(logits[0], axis=1)
    # 3 > 1 + 1: the first member always wins
    np.testing.assert_array_equal(eb.Ensemble(members, "vote", weights=[3, 1, 1]).predict(x), first)
    y = eb.Ensemble(members, "vote", weights=[1, 2, 0.5])(x)
    np.testing.assert_allclose(y, vote_shares(logits, [1, 2, 0.5]), rtol=0, atol=1e-7)
    # a zero weight drops a member
    np.testing.assert_array_equal(eb.Ensemble(members, "vote", weights=[1, 1, 0]).predict(x),
                                  eb.Ensemble(members[:2], "vote").predict(x))


def test_callable_combine_gets_the_list_of_outputs(members, x):
    logits = member_logits(members, x)
    seen = []

    def median(ys):
        seen.append(len(ys))
        return np.median(np.stack(ys), axis=0)

    y = eb.Ensemble(members, median)(x)
    assert seen == [3]
    np.testing.assert_allclose(y, np.median(np.stack(logits), axis=0), rtol=1e-6)


@pytest.mark.parametrize("parallel", [True, False, None])
def test_parallel_and_sequential_runs_agree(members, x, parallel):
    want = eb.Ensemble(members, "mean", parallel=False)(x)
    ens = eb.Ensemble(members, "mean", parallel=parallel)
    for _ in range(3):  # None decides from the previous run's timings: several calls
        np.testing.assert_array_equal(ens(x), want)
        np.testing.assert_array_equal(ens.run({"x": x})[ens.output_names[0]], want)


@pytest.fixture
def threads():
    before = eb.cpu_info()["num_threads"]
    yield eb.set_num_threads
    eb.set_num_threads(before)


@pytest.mark.parametrize("n_threads", [2, 3])
def test_members_side_by_side_on_the_pool_agree(members, x, threads, n_threads):
    """With at least as many members as intra-op threads the members run side by side on the
    pool, one thread each (_core.run_many): the same bits as one after another; a monitored
    member sends the ensemble back to plain runs (its monitor times them)."""
    threads(n_threads)
    want = [m(x) for m in members]
    ens = eb.Ensemble(members, "mean", parallel=True)
    assert ens._on_the_pool()
    for got, w in zip(ens.member_outputs({"x": x}), want):
        np.testing.assert_array_equal(got[0], w)
    np.testing.assert_array_equal(ens(x), eb.Ensemble(members, "mean", parallel=False)(x))
    with pytest.raises(ValueError, match="input"):      # a missing input is named, as for one model
        ens.member_outputs({"y": x})
    mon = members[0].monitor()
    try:
        assert not ens._on_the_pool()
        np.testing.assert_array_equal(ens(x), eb.Ensemble(members, "mean", parallel=False)(x))
    finally:
        mon.stop()
    threads(4)                                            # more threads than members: one after another
    assert not ens._on_the_pool()


def test_run_many_checks_its_arguments(members, x):
    from eightbit.runtime import core
    with pytest.raises(ValueError, match="2 executors but 1 input lists"):
        core.run_many([members[0]._executor, members[1]._executor], [[x]])
    with pytest.raises(ValueError, match="expected shape"):
        core.run_many([members[0]._executor], [[x[:, :5]]])


def test_save_load_round_trip(members, x, tmp_path):
    for combine, weights in (("mean", [0.1, 0.7, 0.2]), ("vote", None), ("vote", [2, 1, 1])):
        ens = eb.Ensemble(members, combine, weights=weights, names=["a", "b", "c"])
        path = tmp_path / f"{combine}.ebe"
        ens.save(path)
        back = eb.load(path)
        assert isinstance(back, eb.Ensemble)
        assert back.combine == combine and back.names == ["a", "b", "c"]
        assert (back.weights is None) == (weights is None)
        np.testing.assert_array_equal(back(x), ens(x))
        for m0, m1 in zip(members, back.members):
            np.testing.assert_array_equal(m1(x), m0(x))
    single = tmp_path / "one.eb"
    members[0].save(single)
    assert isinstance(eb.load(single), eb.QuantizedModel)


def test_callable_combine_cannot_be_saved(members, tmp_path):
    with pytest.raises(ValueError, match="callable combine cannot be saved"):
        eb.Ensemble(members, lambda ys: ys[0]).save(tmp_path / "x.ebe")


def test_members_that_do_not_fit_are_rejected(members):
    wide = eb.quantize(mlp(4, features=10), calib(4, features=10))
    with pytest.raises(ValueError, match=r"members\[1\]: input 'x' is float32 \(N, 10\), members\[0\]'s is "
                                         r"float32 \(N, 12\)"):
        eb.Ensemble([members[0], wide])
    four = eb.quantize(mlp(5, classes=4), calib(5))
    with pytest.raises(ValueError, match=r"members\[2\]: output 0 .* has shape \(N, 4\), members\[0\]'s .* \(N, 5\)"):
        eb.Ensemble([members[0], members[1], four])
    g = eb.Graph()
    h = g.input("features", (None, 12))
    g.output(g.linear(h, np.ones((5, 12), np.float32), np.zeros(5, np.float32)))
    renamed = eb.quantize(g, [{"features": c} for c in calib(6)])
    with pytest.raises(ValueError, match=r"members\[1\]: inputs \['features'\] differ from members\[0\]'s \['x'\]"):
        eb.Ensemble([members[0], renamed])


@pytest.mark.parametrize("args, kwargs, error, match", [
    (([],), {}, ValueError, "empty"),
    (("m",), {}, TypeError, "list of QuantizedModels"),
    (([object()],), {}, TypeError, r"members\[0\]: expected a QuantizedModel"),
    ((None, "median"), {}, ValueError, "combine: expected one of"),
    ((None, 3), {}, TypeError, "combine: expected one of"),
    ((None, "mean"), {"weights": [1, 1]}, ValueError, "weights: expected 3 numbers"),
    ((None, "mean"), {"weights": [1, -1, 1]}, ValueError, ">= 0"),
    ((None, "vote"), {"weights": [0, 0, 0]}, ValueError, "not all zero"),
    ((None, "vote"), {"weights": [1, float("nan"), 1]}, ValueError, "finite"),
    ((None, np.mean), {"weights": [1, 1, 1]}, ValueError, "weights: they weigh"),
    ((None, "mean"), {"names": ["a", "a", "b"]}, ValueError, "unique"),
    ((None, "mean"), {"names": ["a", "b/c", "d"]}, ValueError, "without '/'"),
    ((None, "mean"), {"parallel": 1}, TypeError, "parallel"),
])
def test_bad_arguments(members, args, kwargs, error, match):
    args = (members if args[0] is None else args[0],) + args[1:]
    with pytest.raises(error, match=match):
        eb.Ensemble(*args, **kwargs)


def test_evaluate_reports_the_ensemble_and_each_member(members, x):
    labels = np.random.default_rng(5).integers(0, 5, len(x))
    ens = eb.Ensemble(members, "vote", names=["a", "b", "c"])
    ev = eb.evaluate({"float": mlp(1), "ens": ens}, x, labels, metrics=["accuracy"], repeats=2)
    assert [r["name"] for r in ev.rows] == ["float", "ens", "ens/a", "ens/b", "ens/c"]
    assert ev.row("ens")["kind"] == "ensemble" and ev.row("ens/a")["kind"] == "quantized"
    assert ev.row("ens")["accuracy"] == pytest.approx(np.mean(ens.predict(x) == labels))
    for name, m in zip("abc", members):
        assert ev.row(f"ens/{name}")["accuracy"] == pytest.approx(np.mean(np.argmax(m(x), axis=1) == labels))
    assert ev.row("ens")["model_bytes"] == sum(m.size_bytes for m in members)
    assert ev.row("ens")["peak_bytes"] == sum(ev.row(f"ens/{n}")["peak_bytes"] for n in "abc")
    with pytest.raises(ValueError, match="names both a model and a member"):
        eb.evaluate({"ens": ens, "ens/a": members[0]}, x, labels, metrics=["accuracy"], repeats=1)
