"""Benchmark exact neighbour search: ours vs scipy cKDTree (vs vesin if installed).

Usage (the numbers in docs/performance.md come from)::

    python benchmarks/bench_neighbors.py --threads 2 --repeats 11

Workloads
* single clouds of 2k / 10k / 50k atoms, uniform in a cube at protein density
  (0.05 atoms / A^3), cutoff 4.5 A.  Every method must produce the same
  int64 [2, E] edge list (row 0 = source j, row 1 = target i, sorted by (i, j));
  the time includes that (for cKDTree: query_pairs + mirroring + sorting).
* 10,000 "Triangle" clouds of 100 points uniform in a ball of radius 10,
  cutoff 10: ours batched (``radius_graph_batch``, default int64 output and
  ``dtype=np.int32`` / ``np.int16``) vs cKDTree per cloud, plus the memory
  floor: ``np.empty`` of the output's size and dtype + one parallel write of
  every element (what just producing the output costs: page faults + memory
  traffic, no distance computation).

The Numba JIT is warmed up before timing; the median of ``--repeats`` runs is
reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numba  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from preprocess.neighbors import radius_graph, radius_graph_batch  # noqa: E402

try:
    import vesin  # noqa: E402
except ImportError:  # optional
    vesin = None

DENSITY = 0.05
CUTOFF = 4.5


@numba.njit(parallel=True)
def _write_all(a):
    """Write every element once, split over the Numba threads (the output
    memory floor: page faults of a fresh array + store traffic)."""
    n = a.shape[0]
    nt = numba.get_num_threads()
    for t in numba.prange(nt):
        for k in range(n * t // nt, n * (t + 1) // nt):
            a[k] = k & 127


def _sorted_edges(i, j):
    """Mirror-free helper: given directed pairs (j -> i) build the sorted
    [2, E] int64 array (row 0 = j, row 1 = i)."""
    key = i.astype(np.int64) * (int(max(i.max(initial=0), j.max(initial=0))) + 1) + j
    o = np.argsort(key, kind="stable")
    return np.stack([j[o], i[o]]).astype(np.int64, copy=False)


def ckdtree_edges(pos, cutoff):
    pairs = cKDTree(pos).query_pairs(cutoff, output_type="ndarray")
    a = pairs[:, 0].astype(np.int64)
    b = pairs[:, 1].astype(np.int64)
    j = np.concatenate([a, b])
    i = np.concatenate([b, a])
    return _sorted_edges(i, j)


def vesin_edges(pos, cutoff):
    nl = vesin.NeighborList(cutoff=cutoff, full_list=True)
    i, j = nl.compute(points=pos, box=np.zeros((3, 3)), periodic=False,
                      quantities="ij")
    # vesin's i is the centre: edges j -> i
    return _sorted_edges(np.asarray(i, np.int64), np.asarray(j, np.int64))


def timeit(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def cube_cloud(n, rng):
    side = (n / DENSITY) ** (1.0 / 3.0)
    return rng.uniform(0.0, side, size=(n, 3))


def ball_clouds(nclouds, npts, radius, rng):
    v = rng.normal(size=(nclouds * npts, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    r = radius * rng.uniform(size=(nclouds * npts, 1)) ** (1.0 / 3.0)
    return v * r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15, help="timed runs per case (median reported)")
    ap.add_argument("--threads", type=int, default=None,
                    help="numba.set_num_threads (default: numba's default)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000, 50000])
    ap.add_argument("--clouds", type=int, default=10000, help="number of Triangle clouds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads is not None:
        numba.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    print(f"python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
          f"cpus {os.cpu_count()}, numba threads {numba.get_num_threads()}, "
          f"vesin {'%s' % vesin.__version__ if vesin else 'not installed (column skipped)'}")
    print(f"single cloud: uniform cube, {DENSITY} atoms/A^3, cutoff {CUTOFF} A, "
          f"median of {args.repeats} runs, identical sorted int64 [2, E] output\n")

    hdr = f"| {'atoms':>6} | {'edges':>9} | {'cKDTree ms':>10} | {'vesin ms':>8} | {'ours ms':>7} | {'cKDTree/ours':>12} |"
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    # warm up the JIT (all code paths)
    w = cube_cloud(8192, rng)
    radius_graph(w, CUTOFF)
    radius_graph(w[:1000], CUTOFF)
    for n in args.sizes:
        pos = cube_cloud(n, rng)
        ours = radius_graph(pos, CUTOFF)
        ref = ckdtree_edges(pos, CUTOFF)
        assert np.array_equal(ours, ref), "mismatch vs cKDTree"
        t_kd = timeit(lambda: ckdtree_edges(pos, CUTOFF), args.repeats)
        t_us = timeit(lambda: radius_graph(pos, CUTOFF), args.repeats)
        if vesin is not None:
            assert np.array_equal(vesin_edges(pos, CUTOFF), ref), "mismatch vs vesin"
            t_ve = f"{1e3 * timeit(lambda: vesin_edges(pos, CUTOFF), args.repeats):8.2f}"
        else:
            t_ve = f"{'n/a':>8}"
        print(f"| {n:>6} | {ours.shape[1]:>9} | {1e3 * t_kd:10.2f} | {t_ve} | {1e3 * t_us:7.2f} | {t_kd / t_us:12.1f} |")

    # Triangle clouds
    nc, npts, radius = args.clouds, 100, 10.0
    pos = ball_clouds(nc, npts, radius, rng)
    ptr = np.arange(0, nc * npts + 1, npts, dtype=np.int64)
    radius_graph_batch(pos[: 10 * npts], ptr[:11], radius)  # warm-up
    ei, ep = radius_graph_batch(pos, ptr, radius)
    for b in range(0, nc, max(1, nc // 20)):  # spot check vs cKDTree
        assert np.array_equal(ei[:, ep[b]:ep[b + 1]], ckdtree_edges(pos[ptr[b]:ptr[b + 1]], radius))

    def kd_all():
        for b in range(nc):
            ckdtree_edges(pos[ptr[b]:ptr[b + 1]], radius)

    for dt in (np.int32, np.int16):
        e2, p2 = radius_graph_batch(pos, ptr, radius, dtype=dt)
        assert e2.dtype == dt and np.array_equal(e2, ei) and np.array_equal(p2, ep)
    del e2, p2
    n_out = ei.size
    del ei, ep
    _write_all(np.empty(16, np.int64))  # compile
    _write_all(np.empty(16, np.int32))

    reps_small = max(3, args.repeats // 3)
    rows = []
    for dt in (np.int64, np.int32, np.int16):
        t = timeit(lambda: radius_graph_batch(pos, ptr, radius, dtype=dt), args.repeats)
        rows.append((f"ours, radius_graph_batch, dtype={np.dtype(dt).name}", t))
    t_b = rows[0][1]
    for dt in (np.int64, np.int32):
        t = timeit(lambda: _write_all(np.empty(n_out, dt)), args.repeats)
        rows.append((f"floor: np.empty({n_out}, {np.dtype(dt).name}) + write every element", t))
    t_k = timeit(kd_all, reps_small)
    rows.append(("cKDTree per cloud (query_pairs + mirror + sort, int64)", t_k))
    print(f"\nTriangle: {nc} clouds x {npts} points (ball r={radius}, cutoff {radius}), "
          f"{n_out / 2 / nc:.0f} edges/cloud")
    print("| method | us per cloud |")
    print("|--------|--------------|")
    for name, t in rows:
        print(f"| {name} | {1e6 * t / nc:.1f} |")
    print(f"| ratio cKDTree/ours (int64) | {t_k / t_b:.1f} |")


if __name__ == "__main__":
    main()
