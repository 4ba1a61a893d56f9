"""Benchmark ATOM3D -> HDF5 shard building: throughput and peak memory.

Usage (the numbers in docs/performance.md come from)::

    python benchmarks/bench_atom3d_shards.py --work /tmp/a3d_bench

Data: synthetic PSR decoys and RES records of realistic size in atom3d's LMDB format
(``benchmarks/synthetic_atom3d.py``), generated once under ``--work`` and reused.

Every build runs ``preprocess.task_shards.build_task_shards`` in a fresh Python
subprocess (``python bench_atom3d_shards.py _build ...``), so that

* wall time covers the whole build (task listing, reading, graphs, writing, manifest), for
  ``workers > 1`` including the Dask ``LocalCluster`` start (timed separately as well);
* peak memory is measured two ways: the parent samples the RSS of the subprocess and of all
  its descendants (Dask worker processes) with ``psutil`` every 20 ms, per process,
  and the subprocess reports its own exact peak (``VmHWM`` of ``/proc/self/status``) and
  ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the largest peak of its reaped children (the Dask
  workers; a lower bound of it is the driver's RSS when it spawned them, which Linux carries
  over fork + exec).

Tables:
1. throughput: structures/s (records read) and graphs/s (for RES, one graph per environment)
   with 1 (serial, in-process) and 2 workers;
2. peak memory vs dataset size: RES with 1x, 2x, 4x records at the same shard size;
3. peak memory vs shard size at a fixed dataset size (what the bound scales with).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

MiB = 2 ** 20


def cpu_seconds(who: int) -> float:
    """User + system CPU seconds of this process (RUSAGE_SELF) or of its reaped children."""
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def reap_forkserver() -> None:
    """Stop and reap the multiprocessing forkserver that forked the Dask workers (if one runs):
    the workers are its children, not this process's, so their CPU time (and its own) reaches
    ``RUSAGE_CHILDREN`` only once this process has waited for it. The next cluster starts a
    fresh one. (``_stop`` is what CPython's own tests use.)"""
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        stop()


def vm_hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------------------------
# child: one build
# ------------------------------------------------------------------------------------
def child_build(a) -> None:
    import psutil

    from eqgat.tasks import get_task
    from preprocess.task_shards import build_task_shards

    rss0 = psutil.Process().memory_info().rss
    cluster_s = None
    if a.workers > 1:  # time the cluster start alone (the build starts its own), with the build's
        # settings: a LocalCluster of Dask's defaults would leave its nanny's MALLOC_TRIM_THRESHOLD_ in
        # this process's environment (before preprocess.cluster removed it there, the parallel
        # builds of this benchmark ran with it: up to 2026-12-06)
        from preprocess.cluster import dask_client

        t0 = time.perf_counter()
        with dask_client(a.workers) as client:
            client.wait_for_workers(a.workers)
        cluster_s = time.perf_counter() - t0
        reap_forkserver()  # the build starts its own, and its CPU time counts below
    self0, children0 = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    options = {} if a.max_records is None else {"max_records": a.max_records}
    m = build_task_shards(get_task(a.task), a.source, a.out, a.cutoff, shard_size=a.shard_size,
                          workers=a.workers, progress=False, options=options)
    wall = time.perf_counter() - t0
    reap_forkserver()
    # CPU time of the build: this process, plus its Dask workers (reaped when the cluster closed,
    # by the forkserver that forked them, which is reaped here)
    driver_cpu = cpu_seconds(resource.RUSAGE_SELF) - self0
    cpu = driver_cpu + cpu_seconds(resource.RUSAGE_CHILDREN) - children0
    shards = [s for v in m["splits"].values() for s in v["shards"]]
    # VmHWM: peak RSS of this process's own address space. (ru_maxrss of RUSAGE_SELF is not
    # used: Linux carries the parent's high-water mark over fork + exec, so it reads at
    # least the RSS of the benchmark process that started this one.)
    self_ru = vm_hwm()
    child_ru = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    size = sum(p.stat().st_size for p in Path(a.out).rglob("*.h5"))
    print("RESULT " + json.dumps({
        "wall_s": wall, "cpu_s": cpu, "driver_cpu_s": driver_cpu, "cluster_start_s": cluster_s,
        "sha256": {sh["path"]: sh["sha256"] for sh in shards}, "rss_after_imports": rss0,
        "ru_maxrss_self": self_ru, "ru_maxrss_children": child_ru,
        "graphs": sum(v["num_graphs"] for v in m["splits"].values()),
        "nodes": sum(s["num_nodes"] for s in shards), "edges": sum(s["num_edges"] for s in shards),
        "shards": len(shards), "max_shard_nodes": max(s["num_nodes"] for s in shards),
        "max_shard_edges": max(s["num_edges"] for s in shards), "bytes": size}), flush=True)


# ------------------------------------------------------------------------------------
# parent: run a build in a subprocess and sample its process tree
# ------------------------------------------------------------------------------------
def run_build(task, source, out, cutoff, shard_size, workers, sample_ms: int | None = 20,
              max_records=None) -> dict:
    """One build in a subprocess; its RESULT, plus the sampled peaks every `sample_ms` (None: no
    sampling, for timings: the sampling costs this process about 8 % of a core, which a serial
    build's idle core absorbs and a parallel build's workers pay)."""
    import psutil

    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_build", "--task", task, "--source", str(source),
           "--out", str(out), "--cutoff", str(cutoff), "--shard-size", str(shard_size), "--workers", str(workers)]
    if max_records is not None:
        cmd += ["--max-records", str(max_records)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    root = psutil.Process(proc.pid)
    peak: dict[int, int] = {}
    tree_peak = 0
    while sample_ms is not None and proc.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            if rss > peak.get(p.pid, 0):
                peak[p.pid] = rss
        tree_peak = max(tree_peak, total)
        time.sleep(sample_ms / 1000)
    out_s, err_s = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"build failed ({proc.returncode}): {' '.join(cmd)}\n{err_s[-3000:]}")
    res = json.loads(next(line for line in out_s.splitlines() if line.startswith("RESULT "))[7:])
    others = sorted((v for pid, v in peak.items() if pid != proc.pid), reverse=True)
    res.update(driver_peak=peak.get(proc.pid, 0), worker_peaks=others[:workers] if workers > 1 else [],
               tree_peak=tree_peak, task=task, shard_size=shard_size, workers=workers)
    return res


def ensure_data(work: Path, task: str, records: int, seed: int, **kw) -> Path:
    """Generate (once) a synthetic dataset; its folder name encodes the parameters."""
    import synthetic_atom3d as syn

    tag = "-".join(f"{k}{v}" for k, v in sorted(kw.items()))
    root = work / f"{task}-n{records}-s{seed}{('-' + tag) if tag else ''}"
    done = root / ".complete"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        (syn.make_psr if task == "psr" else syn.make_res)(root, records, seed, **kw)
        done.write_text("ok\n")
        print(f"# generated {task} x {records} in {time.perf_counter() - t0:.1f} s: {root}", flush=True)
    return root


def num_records(task: str, root: Path) -> int:
    from preprocess.readers.lmdb_records import num_records as n

    if task == "res":
        return sum(len(open(root / "indices" / f"{s}_indices.txt").read().split()) for s in ("train", "val", "test"))
    return sum(n(p) for p in (root / "split-by-year" / "data").iterdir())


def mib(x) -> str:
    return f"{x / MiB:.0f}"


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_build":
        ap = argparse.ArgumentParser()
        for k in ("--task", "--source", "--out"):
            ap.add_argument(k, required=True)
        ap.add_argument("--cutoff", type=float, required=True)
        ap.add_argument("--shard-size", type=int, required=True)
        ap.add_argument("--workers", type=int, required=True)
        ap.add_argument("--max-records", type=int, default=None)
        child_build(ap.parse_args(argv[1:]))
        return 0

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "a3d_bench"))
    ap.add_argument("--psr-records", type=int, default=400)
    ap.add_argument("--psr-shard-size", type=int, default=50)
    ap.add_argument("--res-records", type=int, default=50, help="RES 1x size (2x, 4x are also built)")
    ap.add_argument("--res-envs", type=int, default=40, help="environments per RES record")
    ap.add_argument("--res-shard-size", type=int, default=8, help="RES records per shard")
    ap.add_argument("--shard-sweep", default="4,8,16,32", help="RES shard sizes at 2x records ('' = skip)")
    ap.add_argument("--cutoff", type=float, default=4.5)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--scaling", action="store_true",
                    help="only the speed-up table: PSR serial vs --scaling-workers Dask workers, back to back")
    ap.add_argument("--scaling-records", type=int, default=12800,
                    help="PSR decoys of the speed-up table (12,800: over 60 s serially on an idle 2-core AMD "
                         "EPYC, whose serial build of 11,200 took 59.0-72.7 s)")
    ap.add_argument("--scaling-workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="serial/parallel pairs of the speed-up table")
    a = ap.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    workers = [int(w) for w in a.workers.split(",")]

    import numba
    import numpy
    import psutil

    import atom3d
    print(f"# python {platform.python_version()}, numpy {numpy.__version__}, numba {numba.__version__}, "
          f"atom3d {atom3d.__version__ if hasattr(atom3d, '__version__') else '?'}, cpus {os.cpu_count()}, "
          f"RAM {psutil.virtual_memory().total / 2**30:.1f} GiB, load {os.getloadavg()[0]:.2f}", flush=True)
    if a.scaling:
        return scaling(a, work)
    psr = ensure_data(work, "psr", a.psr_records, a.seed)
    res = {m: ensure_data(work, "res", m * a.res_records, a.seed, envs=a.res_envs) for m in (1, 2, 4)}
    out = work / "shards"

    # 1. throughput ------------------------------------------------------------------
    rows = []
    for task, src, ss in [] if a.skip_throughput else [("psr", psr, a.psr_shard_size), ("res", res[1], a.res_shard_size)]:
        # one untimed build first: numba cache, page cache of the LMDB
        run_build(task, src, out, a.cutoff, ss, 1)
        for w in workers:
            r = run_build(task, src, out, a.cutoff, ss, w)
            r["records"] = num_records(task, src)
            rows.append(r)
            print(f"# {task} workers={w}: {r['wall_s']:.1f} s, load {os.getloadavg()[0]:.2f}", flush=True)
    if rows:
        print("\n## Shard building throughput (cutoff %.1f A)\n" % a.cutoff)
        print("| task | records | graphs | heavy atoms | edges | shards (size) | workers | wall s | cluster start s "
              "| structures/s | graphs/s | MB written | driver peak MiB | worker peak MiB |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            cs = f"{r['cluster_start_s']:.1f}" if r["cluster_start_s"] else "-"
            wp = " / ".join(mib(x) for x in r["worker_peaks"]) or "-"
            print(f"| {r['task']} | {r['records']} | {r['graphs']} | {r['nodes']:,} | {r['edges']:,} | "
                  f"{r['shards']} ({r['shard_size']}) | {r['workers']} | {r['wall_s']:.1f} | {cs} | "
                  f"{r['records'] / r['wall_s']:.1f} | {r['graphs'] / r['wall_s']:.0f} | {r['bytes'] / 1e6:.0f} | "
                  f"{mib(r['driver_peak'])} | {wp} |")
    if a.skip_memory:
        return 0

    # 2. memory vs dataset size -------------------------------------------------------
    mem = []
    for w in workers:
        for m in (1, 2, 4):
            r = run_build("res", res[m], out, a.cutoff, a.res_shard_size, w)
            r["mult"], r["records"] = m, num_records("res", res[m])
            mem.append(r)
            print(f"# res {m}x workers={w}: {r['wall_s']:.1f} s", flush=True)
    print(f"\n## Peak memory vs dataset size (RES, {a.res_shard_size} records = ~{a.res_shard_size * a.res_envs} "
          f"environments per shard)\n")
    _memory_table(mem, "dataset")

    # 3. memory vs shard size ---------------------------------------------------------
    sweep = [int(s) for s in a.shard_sweep.split(",") if s]
    if sweep:
        rows3 = []
        for ss in sweep:
            r = run_build("res", res[2], out, a.cutoff, ss, 1)
            r["mult"], r["records"] = 2, num_records("res", res[2])
            rows3.append(r)
            print(f"# res 2x shard_size={ss}: {r['wall_s']:.1f} s", flush=True)
        print("\n## Peak memory vs shard size (RES 2x, serial)\n")
        _memory_table(rows3, "shard")
        # fit: driver peak = base + k * largest shard's edges
        import numpy as np

        e = np.array([r["max_shard_edges"] for r in rows3], float)
        p = np.array([r["ru_maxrss_self"] for r in rows3], float)
        k, base = np.polyfit(e, p, 1)
        n = np.array([r["max_shard_nodes"] for r in rows3], float)
        print(f"\nfit over the sweep: driver peak (VmHWM) = {base / MiB:.0f} MiB + {k:.0f} B x (edges of the largest shard); "
              f"largest shards have {np.mean(e / n):.1f} edges per atom, i.e. ~{k * np.mean(e / n):.0f} B per atom")
    shutil.rmtree(out, ignore_errors=True)
    return 0


def scaling(a, work: Path) -> int:
    """Speed-up of ``--scaling-workers`` Dask workers over the serial build, and the CPU seconds
    per shard of each: pairs of builds back to back (their order alternating), so that a
    machine whose load drifts affects both members of a pair alike."""
    import statistics

    src = ensure_data(work, "psr", a.scaling_records, a.seed)
    out, w = work / "shards", a.scaling_workers
    for f in src.rglob("*.mdb"):  # page cache: every build reads the records from memory
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    run_build("psr", src, out, a.cutoff, a.psr_shard_size, 1, max_records=a.psr_shard_size)  # Numba cache
    # no memory sampling here: the table reports time, and the sampler's CPU would be charged to the
    # parallel build only (it runs on the serial build's idle core)
    pairs = []
    for k in range(a.repeats):
        pair = {}
        for workers in ((1, w) if k % 2 == 0 else (w, 1)):
            load = os.getloadavg()[0]
            r = run_build("psr", src, out, a.cutoff, a.psr_shard_size, workers, sample_ms=None)
            r["load_before"] = load
            pair[workers] = r
            print(f"# pair {k + 1}, workers={workers}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} CPU-s "
                  f"({r['driver_cpu_s']:.1f} in the build process), load before {load:.2f}", flush=True)
        if pair[1]["sha256"] != pair[w]["sha256"]:
            raise SystemExit(f"pair {k + 1}: the parallel shards differ from the serial ones")
        pairs.append(pair)
    r0 = pairs[0][1]
    print(f"\n## Graph-building speed-up (PSR, {a.scaling_records} decoys, {r0['nodes']:,} heavy atoms, "
          f"{r0['edges']:,} edges, {r0['shards']} shards of {a.psr_shard_size}, cutoff {a.cutoff:g} A; "
          f"{os.cpu_count()} CPUs)\n")
    print(f"| pair | load before | serial wall s | serial CPU-s/shard | {w} workers wall s | "
          f"{w} workers CPU-s/shard | speed-up |")
    print("|---|---|---|---|---|---|---|")
    speedups = []
    for k, pair in enumerate(pairs, 1):
        s_, p_ = pair[1], pair[w]
        speedups.append(s_["wall_s"] / p_["wall_s"])
        print(f"| {k} | {s_['load_before']:.2f} / {p_['load_before']:.2f} | {s_['wall_s']:.1f} | "
              f"{s_['cpu_s'] / s_['shards']:.2f} | {p_['wall_s']:.1f} | {p_['cpu_s'] / p_['shards']:.2f} | "
              f"{speedups[-1]:.2f}x |")
    print(f"\nmedian speed-up {statistics.median(speedups):.2f}x (min {min(speedups):.2f}x, max {max(speedups):.2f}x); "
          f"shards identical serial vs parallel (SHA-256) in every pair")
    shutil.rmtree(out, ignore_errors=True)
    return 0


def _memory_table(rows, kind) -> None:
    print("| records | graphs | shard size (records) | largest shard: atoms / edges | workers | wall s "
          "| driver after imports MiB | driver peak MiB (VmHWM / sampled) | worker peaks MiB (sampled) "
          "| workers' ru_maxrss MiB | tree peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        wp = " / ".join(mib(x) for x in r["worker_peaks"]) or "-"
        wru = mib(r["ru_maxrss_children"]) if r["workers"] > 1 else "-"
        print(f"| {r['records']} ({r['mult']}x) | {r['graphs']} | {r['shard_size']} | {r['max_shard_nodes']:,} / "
              f"{r['max_shard_edges']:,} | {r['workers']} | {r['wall_s']:.1f} | {mib(r['rss_after_imports'])} | "
              f"{mib(r['ru_maxrss_self'])} / {mib(r['driver_peak'])} | {wp} | {wru} | {mib(r['tree_peak'])} |")


if __name__ == "__main__":
    sys.exit(main())
