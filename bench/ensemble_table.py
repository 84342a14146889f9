"""eb.Ensemble: members one after another vs on threads (parallel=False / True / None=auto), by
intra-op thread count and batch size, against the members' own times, all in one run.

    python bench/ensemble_table.py [--members 3] [--repeats 50]

Members: the shipped digits CNN quantized with different calibration methods (same shapes). Median
wall time of ``ens(x)``; "sum of members" is the members run alone, one after another, in Python.
"""
import argparse
import platform
import time

import numpy as np

import eightbit as eb
from eightbit.data import cnn_graph, digits


def median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    d = digits()
    g = cnn_graph(d.weights)
    calib = [d.calib_images[i:i + 64] for i in range(0, len(d.calib_images), 64)]
    methods = ["minmax", "percentile", "mse", "entropy", "moving_average"]
    members = [eb.quantize(g, calib, method=methods[i % len(methods)]) for i in range(args.members)]
    x_all = np.concatenate([d.test_images] * 3)
    cores = eb.cpu_info()["num_threads"]
    print(f"{platform.processor() or platform.machine()}, isa {eb.cpu_info()['isa']}, {cores} threads available, "
          f"{args.members} members")
    print(f"{'threads':>7} {'batch':>5} {'sum of members':>14} {'sequential':>10} {'threads':>10} {'auto':>10}  (ms)")
    try:
        for threads in sorted({1, cores}):
            eb.set_num_threads(threads)
            for batch in (1, 32, 1080):
                x = x_all[:batch]
                alone = sum(median_ms(lambda m=m: m(x), args.repeats) for m in members)
                row = [median_ms(lambda e=eb.Ensemble(members, "mean", parallel=p): e(x), args.repeats)
                       for p in (False, True, None)]
                print(f"{threads:>7} {batch:>5} {alone:>14.3f} {row[0]:>10.3f} {row[1]:>10.3f} {row[2]:>10.3f}")
    finally:
        eb.set_num_threads(cores)


if __name__ == "__main__":
    main()
