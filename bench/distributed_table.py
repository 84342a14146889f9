"""eightbit.distributed.predict throughput on 1 vs 2 local Dask workers (target: >= 1.7x).

    python bench/distributed_table.py                  # 8192 32x32 RGB images through a small CNN
    python bench/distributed_table.py --images 16384 --chunk 512 --repeats 5

A batch-heavy model (3 int8 3x3 convolutions, pooling, a linear head: ~0.1 GOP per image) is
quantized, saved as .eb, and run by ``ebd.predict`` over a dask array generated and persisted on
the workers (so the clock sees inference, not data transfer from the client). Each cluster has
workers of 1 thread (eightbit's pool sized to it); each row is the best of ``--repeats`` timed
``.compute()`` calls after one warm-up (which loads the model on every worker). The same
process first times the model in one process, 1 thread, on a quarter of the images: the
per-worker ceiling. On a shared machine the 2-worker ratio measures the cores it actually got:
report the load (printed) with the numbers.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np


def cnn(rng):
    import eightbit as eb

    def w(*shape):
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    g = eb.Graph()
    x = g.input("x", shape=(None, 3, 32, 32))
    h = g.relu(g.conv2d(x, w(32, 3, 3, 3), np.zeros(32, np.float32), padding=1))
    h = g.max_pool2d(g.relu(g.conv2d(h, w(64, 32, 3, 3), np.zeros(64, np.float32), padding=1)), 2)
    h = g.max_pool2d(g.relu(g.conv2d(h, w(64, 64, 3, 3), np.zeros(64, np.float32), padding=1)), 2)
    g.output(g.linear(g.flatten(h), w(10, 64 * 8 * 8), np.zeros(10, np.float32)))
    return g


def best_time(fn, repeats):
    fn()                                      # warm-up: every worker loads the model
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8192)
    ap.add_argument("--chunk", type=int, default=512, help="images per partition")
    ap.add_argument("--batch-size", type=int, default=128, help="images per executor call")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import dask.array as da
    from dask.distributed import Client, LocalCluster

    import eightbit as eb
    import eightbit.distributed as ebd

    rng = np.random.default_rng(0)
    g = cnn(rng)
    qm = eb.quantize(g, [rng.standard_normal((64, 3, 32, 32)).astype(np.float32)], min_sqnr=None)
    path = os.path.join(tempfile.mkdtemp(), "cnn.eb")
    qm.save(path)

    eb.set_num_threads(1)
    x = rng.standard_normal((args.images // 4, 3, 32, 32)).astype(np.float32)
    one = best_time(lambda: [qm(x[i:i + args.batch_size]) for i in range(0, len(x), args.batch_size)], args.repeats)
    single = len(x) / one

    rows = []
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            xd = da.random.default_rng(1).standard_normal((args.images, 3, 32, 32), chunks=(args.chunk, 3, 32, 32),
                                                          dtype=np.float32).persist()
            client.wait_for_workers(workers)
            y = ebd.predict(path, xd, batch_size=args.batch_size)
            rows.append((workers, args.images / best_time(lambda: y.compute(), args.repeats)))

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; eightbit ISA {eb.cpu_info()['isa']}")
    print(f"# {args.images} images 3x32x32, partitions of {args.chunk}, executor batches of {args.batch_size}; "
          f"best of {args.repeats}")
    print("| setting | images/s | vs 1 worker |")
    print("|---|---:|---:|")
    print(f"| one process, 1 thread, no Dask | {single:.0f} | {single / rows[0][1]:.2f}x |")
    for workers, rate in rows:
        print(f"| {workers} worker(s) x 1 thread | {rate:.0f} | {rate / rows[0][1]:.2f}x |")


if __name__ == "__main__":
    main()
