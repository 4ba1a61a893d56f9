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
  its descendants (Dask worker processes) with ``psutil`` every ``--sample-ms``, per process,
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
    if a.workers > 1:  # time the cluster start alone (the build starts its own)
        from dask.distributed import LocalCluster

        t0 = time.perf_counter()
        c = LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True, dashboard_address=None)
        c.close()
        cluster_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    m = build_task_shards(get_task(a.task), a.source, a.out, a.cutoff, shard_size=a.shard_size,
                          workers=a.workers, progress=False)
    wall = time.perf_counter() - t0
    shards = [s for v in m["splits"].values() for s in v["shards"]]
    # VmHWM: peak RSS of this process's own address space. (ru_maxrss of RUSAGE_SELF is not
    # used: Linux carries the parent's high-water mark over fork + exec, so it reads at
    # least the RSS of the benchmark process that started this one.)
    self_ru = vm_hwm()
    child_ru = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    size = sum(p.stat().st_size for p in Path(a.out).rglob("*.h5"))
    print("RESULT " + json.dumps({
        "wall_s": wall, "cluster_start_s": cluster_s, "rss_after_imports": rss0,
        "ru_maxrss_self": self_ru, "ru_maxrss_children": child_ru,
        "graphs": sum(v["num_graphs"] for v in m["splits"].values()),
        "nodes": sum(s["num_nodes"] for s in shards), "edges": sum(s["num_edges"] for s in shards),
        "shards": len(shards), "max_shard_nodes": max(s["num_nodes"] for s in shards),
        "max_shard_edges": max(s["num_edges"] for s in shards), "bytes": size}), flush=True)


# ------------------------------------------------------------------------------------
# parent: run a build in a subprocess and sample its process tree
# ------------------------------------------------------------------------------------
def run_build(task, source, out, cutoff, shard_size, workers, sample_ms=20) -> dict:
    import psutil

    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_build", "--task", task, "--source", str(source),
           "--out", str(out), "--cutoff", str(cutoff), "--shard-size", str(shard_size), "--workers", str(workers)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    root = psutil.Process(proc.pid)
    peak: dict[int, int] = {}
    tree_peak = 0
    while proc.poll() is None:
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
