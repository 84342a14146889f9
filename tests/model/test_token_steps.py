"""The C++ steps of token inputs (csrc/runtime/steps/token_inputs.cpp: embedding, additive_mask)
and float_select, from raw records: their create-time checks and their run-time checks of ids
and mask values (a bad id raises ValueError, never reads outside the table)."""
import numpy as np
import pytest

from eightbit import _core
from _records import Records

TABLE = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)


def _embedding(table=TABLE, out_shape=(-1, 4, 3), row_scale=None):
    r = Records()
    r.add_tensor("ids", "float32", (-1, 4))
    r.add_tensor("y", "float32", out_shape)
    consts = {"table": table} if row_scale is None else {"table": table, "row_scale": row_scale}
    r.step("embedding", ["ids"], "y", consts=consts)
    return r


def test_embedding_gathers_rows():
    r = _embedding()
    ids = np.array([[0, 4, 2, 2], [1, 1, 3, 0]], np.float32)
    np.testing.assert_array_equal(r.run([ids])[0], TABLE[ids.astype(int)])


@pytest.mark.parametrize("bad", [5.0, -1.0, 0.5, np.nan, np.inf, 2.0 ** 40])
def test_embedding_refuses_bad_ids_at_run_time(bad):
    r = _embedding()
    ids = np.zeros((3, 4), np.float32)
    ids[2, 3] = bad
    with pytest.raises(ValueError, match="token id .* is not an integer in \\[0, 5\\)"):
        r.run([ids])


def test_int8_table_reads_each_row_times_its_scale():
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (5, 3)).astype(np.int8)
    scale = rng.uniform(1e-3, 2.0, 5).astype(np.float32)
    ids = np.array([[0, 4, 2, 2], [1, 1, 3, 0]], np.float32)
    want = np.array([[[np.float32(v) * scale[i] for v in q[i]] for i in row] for row in ids.astype(int)], np.float32)
    np.testing.assert_array_equal(_embedding(q, row_scale=scale).run([ids])[0], want)


@pytest.mark.parametrize("table, out_shape, message", [
    (np.zeros(5, np.float32), (-1, 4, 3), "table must be a \\[V, D\\] array"),
    (np.zeros((5, 3), np.int8), (-1, 4, 3), "float32"),
    (TABLE, (-1, 4, 2), "expected \\(N, 4, 3\\)"),
    (TABLE, (-1, 3, 3), "expected \\(N, 4, 3\\)"),
])
def test_embedding_records_are_checked(table, out_shape, message):
    with pytest.raises(_core.ModelFileError, match=message):
        _embedding(table, out_shape)


@pytest.mark.parametrize("table, scale, message", [
    (np.zeros((5, 3), np.float32), np.ones(5, np.float32), "int8"),          # a scale goes with an int8 table
    (np.zeros((5, 3), np.int8), np.ones(4, np.float32), "5 values"),
    (np.zeros((5, 3), np.int8), np.array([1, 1, 0, 1, 1], np.float32), "positive and finite"),
    (np.zeros((5, 3), np.int8), np.array([1, 1, np.nan, 1, 1], np.float32), "positive and finite"),
])
def test_int8_table_records_are_checked(table, scale, message):
    with pytest.raises(_core.ModelFileError, match=message):
        _embedding(table, row_scale=scale)


def _mask(fill=-1e4, in_shape=(-1, 4), out_shape=(-1, 1, 1, 4)):
    r = Records()
    r.add_tensor("mask", "float32", in_shape)
    r.add_tensor("y", "float32", out_shape)
    r.step("additive_mask", ["mask"], "y", fill=fill)
    return r


def test_additive_mask_values():
    keep = np.array([[1, 1, 0, 0], [1, 0, 1, 1]], np.float32)
    y = _mask(fill=float(np.finfo(np.float32).min)).run([keep])[0]
    assert y.shape == (2, 1, 1, 4)
    np.testing.assert_array_equal(y[:, 0, 0], np.where(keep == 1, 0, np.finfo(np.float32).min))


@pytest.mark.parametrize("bad", [2.0, -1.0, 0.5, np.nan])
def test_additive_mask_refuses_values_other_than_0_and_1(bad):
    keep = np.ones((2, 4), np.float32)
    keep[1, 2] = bad
    with pytest.raises(ValueError, match="attention mask value"):
        _mask().run([keep])


@pytest.mark.parametrize("kwargs, message", [
    (dict(fill=float("nan")), "fill is NaN"),
    (dict(in_shape=(-1, 4, 1), out_shape=(-1, 1, 1, 4)), "must be 2-D"),
    (dict(out_shape=(-1, 1, 4, 4)), "expected \\(N, 1, 1, 4\\)"),
])
def test_additive_mask_records_are_checked(kwargs, message):
    with pytest.raises(_core.ModelFileError, match=message):
        _mask(**kwargs)


def test_float_select():
    r = Records()
    r.add_tensor("x", "float32", (-1, 3, 4, 2))
    r.add_tensor("y", "float32", (-1, 3, 2))
    r.step("float_select", ["x"], "y", axis=2, index=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 2)).astype(np.float32)
    np.testing.assert_array_equal(r.run([x])[0], x[:, :, 1, :])


@pytest.mark.parametrize("axis, index, out_shape, message", [
    (0, 0, (-1, 4), "axis must name a dimension other than the batch"),
    (1, 3, (-1, 4), "index is out of range"),
    (1, -1, (-1, 4), "index is out of range"),
    (1, 0, (-1, 5), "expected \\(N, 4\\)"),
])
def test_float_select_records_are_checked(axis, index, out_shape, message):
    r = Records()
    r.add_tensor("x", "float32", (-1, 3, 4))
    r.add_tensor("y", "float32", out_shape)
    with pytest.raises(_core.ModelFileError, match=message):
        r.step("float_select", ["x"], "y", axis=axis, index=index)


def test_padded_positions():
    r = Records()
    r.add_tensor("ids", "float32", (-1, 5))
    r.add_tensor("y", "float32", (-1, 5))
    r.step("padded_positions", ["ids"], "y", pad=1)
    ids = np.array([[1, 3, 4, 1, 9], [0, 0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(r.run([ids])[0], [[1, 2, 3, 1, 4], [2, 3, 4, 5, 6]])
    r = Records()
    r.add_tensor("ids", "float32", (-1, 5))
    r.add_tensor("y", "float32", (-1, 5))
    with pytest.raises(_core.ModelFileError, match="pad must be in"):
        r.step("padded_positions", ["ids"], "y", pad=-1)


def test_quantize_stores_large_tables_int8_per_row():
    """eb.quantize(embeddings="int8") (the default): a table of 64 KiB or more becomes int8 per row
    (symmetric, max |row| / 127), a small one stays float32; the C++ run equals the reference's
    float32(q) * scale and is within half a step of the float table; "float" keeps both float32."""
    import eightbit as eb

    rng = np.random.default_rng(3)
    big = rng.standard_normal((300, 64)).astype(np.float32)      # 76.8 KB
    small = rng.standard_normal((4, 64)).astype(np.float32)
    g = eb.Graph()
    ids, kinds = g.input("ids", (None, 7), "int64"), g.input("kinds", (None, 7), "int64")
    g.output(g.add(g.embedding(ids, big), g.embedding(kinds, small)))
    feeds = {"ids": rng.integers(0, 300, (2, 7)), "kinds": rng.integers(0, 4, (2, 7))}
    q = eb.quantize(g, [feeds], dynamic=True)
    tables = [s.consts for s in q.plan.steps if s.op == "embedding"]
    assert tables[0]["table"].dtype == np.int8 and tables[1]["table"].dtype == np.float32
    scale = np.abs(big).max(1) / np.float32(127)
    np.testing.assert_array_equal(tables[0]["row_scale"], scale.astype(np.float32))
    got = q.run(feeds)[g.outputs[0]]
    np.testing.assert_array_equal(got, q.reference_run(feeds)[g.outputs[0]])
    want = g.run(feeds)
    rows = feeds["ids"]
    assert np.all(np.abs(got - want) <= scale[rows][..., None] * 0.5 + 1e-6)
    kept = eb.quantize(g, [feeds], dynamic=True, embeddings="float")
    assert all(s.consts["table"].dtype == np.float32 for s in kept.plan.steps if s.op == "embedding")
    assert q.size_bytes < kept.size_bytes - 50_000
    with pytest.raises(ValueError, match="embeddings: expected 'int8' or 'float'"):
        eb.quantize(g, [feeds], embeddings="int4")
