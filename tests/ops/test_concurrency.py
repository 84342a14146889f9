"""Inference stays bit-exact while another Python thread changes the thread count or the ISA, and
one QuantizedModel serves many Python threads at once (issue 12: a resize during a run dropped
work parts, leaving outputs partly uninitialised, with no error).

Every check compares against eightbit.reference (or QuantizedModel.reference_run), computed once
before the hammering starts. Two inputs alternate and each output is poisoned once checked: a
dropped part would otherwise leave a buffer holding the previous, equally correct, result."""

import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

import eightbit as eb
from eightbit import reference

AVAILABLE = eb.cpu_info()["available"]
THREAD_COUNTS = (1, 2, 3, 4)
SECONDS = 1.0  # of hammering per test: a few thousand flips on a 2-core machine


@contextmanager
def flipping(setter, values):
    """Runs setter(v) over `values`, round and round, in a background thread for the block;
    yields a list whose length is the number of flips done; restores ISA and thread count."""
    before = eb.cpu_info()
    stop, flips, errors = threading.Event(), [], []

    def loop():
        try:
            while not stop.is_set():
                setter(values[len(flips) % len(values)])
                flips.append(None)
        except BaseException as e:  # reported by the test, not lost in the thread
            errors.append(e)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield flips
    finally:
        stop.set()
        t.join()
        eb.set_num_threads(before["num_threads"])
        eb.set_isa(before["isa"])
    assert not errors, errors


def hammer(cases, seconds=SECONDS, min_rounds=20):
    """Calls each (fn, want) repeatedly for `seconds`; returns the calls made.

    Fails on the first output that is not byte-identical to `want`."""
    calls, end = 0, time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < end or rounds < min_rounds:
        for i, (fn, want) in enumerate(cases):
            y = fn()
            if y.dtype != want.dtype or y.shape != want.shape or y.tobytes() != want.tobytes():
                bad = np.flatnonzero(y.reshape(-1).view(np.uint8) != want.reshape(-1).view(np.uint8))
                pytest.fail(f"case {i}, call {calls}: {bad.size} of {want.nbytes} bytes differ "
                            f"(first at byte {bad[:1]})")
            y.reshape(-1).view(np.uint8)[:] = 0xA5  # poison: a recycled buffer must not look right
            calls += 1
        rounds += 1
    return calls


def with_flips(cases, setter, values):
    with flipping(setter, values) as flips:
        calls = hammer(cases)
    # The test means something only if flips happened during the calls.
    assert len(flips) >= 10 and calls >= 40, (len(flips), calls)


# ----------------------------------------------------------------------------- operators

def gemm_cases(rng):
    """matmul_integer (int32, uint8 A) and qlinear_matmul (uint8 out, int8 A: A is copied on the
    pool), big enough (>= 4 M MACs) that every thread count splits them."""
    b = rng.integers(-128, 128, (320, 176), dtype=np.int8)
    pw = eb.pack_weights(b)
    cases = []
    for _ in range(2):
        a = rng.integers(0, 256, (100, 320), dtype=np.uint8)
        cases.append((lambda a=a: eb.ops.matmul_integer(a, pw, np.uint8(7)),
                      reference.matmul_integer(a, b, np.uint8(7))))
    bq = rng.integers(0, 256, (320, 144), dtype=np.uint8)
    pq = eb.pack_weights(bq, np.uint8(131))
    args = (np.float32(0.02), np.int8(-5), None, np.float32(0.01), np.uint8(131), np.float32(2.5), np.uint8(120))
    for _ in range(2):
        a = rng.integers(-128, 128, (130, 320), dtype=np.int8)
        call = (lambda a=a: eb.ops.qlinear_matmul(a, *args[:2], pq, *args[3:]))
        cases.append((call, reference.qlinear_matmul(a, *args[:2], bq, *args[3:])))
    return cases


def conv_cases(rng):
    """A 3x3 convolution (patches built on the pool), one large enough that its patches are
    streamed per chunk (> 1 MiB), and a depthwise one."""
    cases = []
    for n, cin, cout, hw, group in [(2, 16, 32, 24, 1), (2, 32, 32, 48, 1), (4, 64, 64, 24, 64)]:
        w = rng.integers(-127, 128, (cout, cin // group, 3, 3), dtype=np.int8)
        pw = eb.pack_conv_weights(w, np.int8(0), group=group)
        w_scale = rng.uniform(0.002, 0.01, cout).astype(np.float32)
        bias = rng.integers(-3000, 3000, cout, dtype=np.int32)
        kw = dict(pads=(1, 1, 1, 1), group=group, activation="relu")
        for _ in range(2):
            x = rng.integers(0, 256, (n, cin, hw, hw), dtype=np.uint8)
            q = (np.float32(0.02), np.uint8(128))
            out = (w_scale, np.int8(0), np.float32(0.05), np.uint8(10), bias)
            cases.append((lambda x=x, pw=pw, q=q, out=out, kw=kw: eb.ops.qlinear_conv(x, *q, pw, *out, **kw),
                          reference.qlinear_conv(x, *q, w, *out, **kw)))
    return cases


@pytest.fixture(scope="module")
def op_cases():
    rng = np.random.default_rng(12)
    return {"gemm": gemm_cases(rng), "conv": conv_cases(rng)}


@pytest.mark.parametrize("kind", ["gemm", "conv"])
def test_ops_exact_while_thread_count_flips(op_cases, kind):
    with_flips(op_cases[kind], eb.set_num_threads, THREAD_COUNTS)


@pytest.mark.skipif(len(AVAILABLE) < 2, reason="one ISA on this CPU: nothing to flip")
@pytest.mark.parametrize("kind", ["gemm", "conv"])
def test_ops_exact_while_isa_flips(op_cases, kind):
    eb.set_num_threads(2)
    with_flips(op_cases[kind], eb.set_isa, AVAILABLE)


# ----------------------------------------------------------------------------- whole models

def cnn(rng):
    """conv 3x3 + relu, max pool, conv 3x3 + relu, depthwise conv 3x3, residual add, average
    pool, linear: every int8 step kind of a small vision model."""
    g = eb.Graph()
    x = g.input("x", (None, 3, 16, 16))
    w = lambda *s: rng.normal(0, 0.4 / np.sqrt(np.prod(s[1:])), s).astype(np.float32)
    bias = lambda n: rng.normal(0, 0.1, n).astype(np.float32)
    h = g.max_pool2d(g.relu(g.conv2d(x, w(16, 3, 3, 3), bias(16), padding=1)), 2)
    h = g.relu(g.conv2d(h, w(32, 16, 3, 3), bias(32), padding=1))
    h = g.add(h, g.conv2d(h, w(32, 1, 3, 3), bias(32), padding=1, groups=32))
    h = g.flatten(g.avg_pool2d(h, 2))
    g.output(g.linear(h, w(10, 512), bias(10), name="y"))
    return g


def mlp(rng):
    g = eb.Graph()
    x = g.input("x", (None, 256))
    w = lambda *s: rng.normal(0, 1.0 / np.sqrt(s[1]), s).astype(np.float32)
    bias = lambda n: rng.normal(0, 0.1, n).astype(np.float32)
    h = g.relu(g.linear(x, w(512, 256), bias(512)))
    h = g.relu(g.linear(h, w(256, 512), bias(256)))
    g.output(g.linear(h, w(10, 256), bias(10), name="y"))
    return g


BUILDERS = {"cnn": (cnn, (3, 16, 16)), "mlp": (mlp, (256,))}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def model(request):
    """(quantized model, [(input, reference output)] x 8): batches of 64, so that every step is
    split over the pool."""
    rng = np.random.default_rng(1212)
    build, shape = BUILDERS[request.param]
    qm = eb.quantize(build(rng), [rng.normal(0, 1, (32, *shape)).astype(np.float32) for _ in range(2)])
    pairs = []
    for _ in range(8):
        x = rng.normal(0, 1, (64, *shape)).astype(np.float32)
        pairs.append((x, qm.reference_run({"x": x})["y"]))
    return qm, pairs


def test_model_exact_while_thread_count_flips(model):
    qm, pairs = model
    with_flips([(lambda x=x: qm(x), want) for x, want in pairs[:2]], eb.set_num_threads, THREAD_COUNTS)


@pytest.mark.skipif(len(AVAILABLE) < 2, reason="one ISA on this CPU: nothing to flip")
def test_model_exact_while_isa_flips(model):
    qm, pairs = model
    eb.set_num_threads(2)
    with_flips([(lambda x=x: qm(x), want) for x, want in pairs[:2]], eb.set_isa, AVAILABLE)


def test_one_model_many_python_threads(model):
    """8 threads call the same model at once (the core runs one call at a time per model, on the
    shared pool); each gets its own input's exact result, every time."""
    qm, pairs = model
    start, errors, calls = threading.Barrier(len(pairs)), [], [0] * len(pairs)

    def worker(i):
        x, want = pairs[i]
        try:
            start.wait()
            end = time.monotonic() + SECONDS
            while time.monotonic() < end or calls[i] < 5:
                y = qm(x)
                if y.tobytes() != want.tobytes():
                    errors.append((i, calls[i], int(np.sum(y != want))))
                    return
                y[...] = np.nan  # poison: a recycled buffer must not look right
                calls[i] += 1
        except BaseException as e:
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert min(calls) >= 5, calls
