"""The plan executor against the step interpreter, in one run (issue 4).

    python bench/plan_table.py            # ~15 s
    python bench/plan_table.py -t 2       # seconds of timing per row

Rows: a one-layer model (quantize -> linear 16->4 -> dequantize, batch 1): ``qm(x)`` against the
time the executor spends inside the core (``last_run_seconds``): the difference is the per-call
Python + binding overhead. Then a ResNet-like stack (stem 3x3/2 -> 3 residual blocks of two 3x3
convs + add -> max pool -> global average pool -> linear -> dequantize) at batch 1 and 8:
``qm(x)`` (one C++ call) against ``qm.run_steps`` (run_plan with eightbit.ops, one call per step).
Both use the same kernels and return the same bits.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import eightbit as eb
from eightbit.model import Plan, QuantizedModel, Step, TensorSpec

U8, F32 = np.dtype(np.uint8), np.dtype(np.float32)


def median_time(fn, seconds: float) -> float:
    fn()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


class PlanBuilder:
    def __init__(self, rng):
        self.rng, self.t, self.steps = rng, {}, []

    def q(self, name, shape, zp=0):
        self.t[name] = TensorSpec(name, U8, (None, *shape), float(self.rng.uniform(0.02, 0.05)), zp)
        return name

    def f(self, name, shape):
        self.t[name] = TensorSpec(name, F32, (None, *shape))
        return name

    def conv(self, x, out, shape, cin, k=3, stride=1, activation="relu"):
        o = shape[-1]
        consts = dict(w=self.rng.integers(-127, 128, (o, cin, k, k)).astype(np.int8),
                      w_scale=np.full(o, 0.5 / (127 * np.sqrt(cin * k * k)), np.float32),
                      bias=self.rng.integers(-100, 100, o).astype(np.int32))
        p = k // 2
        self.steps.append(Step("conv", (x,), self.q(out, shape), dict(strides=(stride, stride), pads=(p, p, p, p),
                                                                     activation=activation), consts))
        return out


def resnet_like(rng, c=64, hw=64, blocks=3) -> Plan:
    b = PlanBuilder(rng)
    b.f("x", (3, hw, hw))
    b.steps.append(Step("quantize", ("x",), b.q("xq", (hw, hw, 3), 128)))
    s = hw // 2
    h = b.conv("xq", "stem", (s, s, c), 3, stride=2)
    for i in range(blocks):
        r = b.conv(h, f"b{i}a", (s, s, c), c)
        r = b.conv(r, f"b{i}b", (s, s, c), c, activation=None)
        b.steps.append(Step("add", (r, h), b.q(f"b{i}", (s, s, c))))
        h = f"b{i}"
    b.steps.append(Step("max_pool", (h,), b.q("p", (s // 2, s // 2, c)), dict(kernel=(2, 2), strides=(2, 2),
                                                                              pads=(0, 0, 0, 0))))
    b.t["p"] = TensorSpec("p", U8, (None, s // 2, s // 2, c), b.t[h].scale, b.t[h].zero_point)
    b.steps.append(Step("global_avg_pool", ("p",), b.q("g", (1, 1, c))))
    b.steps.append(Step("reshape", ("g",), b.q("f", (c,)), dict(shape=(None, c))))
    b.t["f"] = TensorSpec("f", U8, (None, c), b.t["g"].scale, b.t["g"].zero_point)
    consts = dict(w=rng.integers(-127, 128, (10, c)).astype(np.int8), w_scale=np.full(10, 0.001, np.float32),
                  bias=np.zeros(10, np.int32))
    b.steps.append(Step("linear", ("f",), b.q("yq", (10,), 128), {}, consts))
    b.steps.append(Step("dequantize", ("yq",), b.f("y", (10,))))
    return Plan(b.t, b.steps, ["x"], ["y"])


def tiny(rng) -> Plan:
    t = {"x": TensorSpec("x", F32, (None, 16)), "xq": TensorSpec("xq", U8, (None, 16), 0.02, 128),
         "yq": TensorSpec("yq", U8, (None, 4), 0.05, 128), "y": TensorSpec("y", F32, (None, 4))}
    consts = dict(w=rng.integers(-127, 128, (4, 16)).astype(np.int8), w_scale=np.full(4, 0.01, np.float32),
                  bias=np.zeros(4, np.int32))
    steps = [Step("quantize", ("x",), "xq"), Step("linear", ("xq",), "yq", {}, consts),
             Step("dequantize", ("yq",), "y")]
    return Plan(t, steps, ["x"], ["y"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-t", "--seconds", type=float, default=1.0, help="timing per row")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    info = eb.cpu_info()
    print(f"isa {info['isa']}, {info['num_threads']} thread(s)")

    qm = QuantizedModel(tiny(rng))
    ex = qm._executor
    x = rng.uniform(-1, 1, (1, 16)).astype(np.float32)
    call = median_time(lambda: qm(x), args.seconds)
    run = median_time(lambda: ex.run((x,)), args.seconds)
    cores = []
    for _ in range(2000):
        ex.run((x,))
        cores.append(ex.last_run_seconds)
    core = float(np.median(cores))
    steps = median_time(lambda: qm.run_steps({"x": x}), args.seconds)
    print("\none-layer model (linear 16->4, batch 1), median per call:")
    print(f"  qm(x)                {call * 1e6:8.1f} us")
    print(f"  executor.run((x,))   {run * 1e6:8.1f} us")
    print(f"  inside the core      {core * 1e6:8.1f} us   (median of last_run_seconds)")
    print(f"  overhead of qm(x)    {(call - core) * 1e6:8.1f} us   (qm(x) - core)")
    print(f"  qm.run_steps (ops)   {steps * 1e6:8.1f} us")

    plan = resnet_like(rng)
    qm = QuantizedModel(plan)
    print("\nResNet-like stack (3x64x64 -> stem 3x3/2 64ch -> 3 residual blocks at 32x32 -> pools -> fc), "
          "median per call:")
    print(f"  {'batch':>5}  {'qm(x) ms':>9}  {'run_steps ms':>12}  {'ratio':>6}  arena KiB")
    for batch in (1, 8):
        xb = rng.uniform(-1, 1, (batch, 3, 64, 64)).astype(np.float32)
        assert np.array_equal(qm(xb), qm.run_steps({"x": xb})["y"])
        t_ex = median_time(lambda: qm(xb), args.seconds)
        t_steps = median_time(lambda: qm.run_steps({"x": xb}), args.seconds)
        print(f"  {batch:>5}  {t_ex * 1e3:9.3f}  {t_steps * 1e3:12.3f}  {t_steps / t_ex:6.2f}  "
              f"{qm._executor.arena_bytes / 1024:9.0f}")


if __name__ == "__main__":
    main()
