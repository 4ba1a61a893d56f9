"""Benchmark one training step of EQGAT and the baselines (forward + backward + Adam step) on CPU or GPU.

Usage (the numbers in docs/performance.md, section "Model step", come from)::

    python benchmarks/bench_model_step.py --config triangle --batch-size 32 --threads 2 --repeats 7 \\
        --models eqgat eqgat_nocross eqgat_noatt schnet painn segnn

Workloads
* ``triangle``: ``--batch-size`` Triangle clouds (100 points in a ball of radius 10,
  ``preprocess.triangle.generate_triangle_clouds``), radius graph with cutoff 10
  (``preprocess.neighbors.radius_graph_batch``), paper Triangle configuration
  (``eqgat/tasks/triangle.py``: 3 layers, Fs/Fv 32/8, sum aggregation).
* ``lba`` / ``psr``: ``--batch-size`` random clouds of ``--atoms`` atoms uniform in a cube at
  protein density (0.05 atoms / A^3), 9 random element types, cutoff 4.5, paper configuration
  (Fs/Fv 100/16, mean aggregation; 3 or 5 layers).

The step is ``zero_grad(set_to_none=True)``, forward, MSE loss, backward, Adam step
(lr 1e-4); one warm-up step is taken first, then the median of ``--repeats`` steps is
reported, together with the medians of the forward, backward and optimiser phases.
On CUDA every phase is synchronised before it is timed.

Comparing implementations: the ``eqgat`` package is imported from the normal import path,
so ``PYTHONPATH=/some/copy python benchmarks/bench_model_step.py`` times another copy.

The allocator is set up as ``python -m eqgat train`` sets it (:mod:`eqgat.allocator`);
``EQGAT_MALLOC=default`` keeps glibc's defaults, for before / after comparisons. Each row also
gives the user and system CPU seconds of its steps and the process's peak RSS so far.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np
import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(_ROOT)  # appended: PYTHONPATH / an installed copy take precedence

from eqgat.allocator import tune  # noqa: E402
from eqgat.device import set_cpu_threads  # noqa: E402
from eqgat.models import build_model, count_parameters, task_model_hparams  # noqa: E402
from eqgat.tasks import TASKS  # noqa: E402
from preprocess.neighbors import radius_graph_batch  # noqa: E402
from torch_geometric.data import Batch  # noqa: E402

DENSITY = 0.05


def make_batch(config: str, batch_size: int, atoms: int, seed: int) -> Batch:
    cfg = TASKS[config].model_preset("eqgat")
    cutoff = float(TASKS[config].protocol["graph"]["cutoff"])
    if config == "triangle":
        from preprocess.triangle import generate_triangle_clouds

        clouds = generate_triangle_clouds(batch_size, seed)
        pos = np.asarray(clouds["pos"], dtype=np.float64)  # [C, n, 3]
        z = np.asarray(clouds["z"], dtype=np.int64)
        y = np.asarray(clouds["y"], dtype=np.float32)
    else:
        rng = np.random.default_rng(seed)
        side = (atoms / DENSITY) ** (1.0 / 3.0)
        pos = rng.uniform(0.0, side, size=(batch_size, atoms, 3))
        z = rng.integers(0, cfg["num_elements"], size=(batch_size, atoms))
        y = rng.normal(size=(batch_size, cfg["out_dim"])).astype(np.float32)
    C, n = pos.shape[:2]
    flat = np.ascontiguousarray(pos.reshape(C * n, 3))
    ptr = np.arange(C + 1, dtype=np.int64) * n
    ei, eptr = radius_graph_batch(flat, ptr, cutoff)
    # local -> global node indices
    counts = np.diff(eptr)
    ei = ei + np.repeat(ptr[:-1], counts)[None, :]
    b = Batch(
        z=torch.from_numpy(z.reshape(-1)),
        pos=torch.from_numpy(flat).float(),
        edge_index=torch.from_numpy(np.ascontiguousarray(ei)).long(),
        batch=torch.repeat_interleave(torch.arange(C), n),
        y=torch.from_numpy(y).reshape(C, -1),
    )
    b.ptr = torch.from_numpy(ptr)
    b._num_graphs = C
    return b


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model: torch.nn.Module, data: Batch, repeats: int, device: torch.device) -> dict[str, float]:
    """Median forward / backward / optimiser / total seconds of `repeats` steps after a warm-up."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    fwd, bwd, stp, tot = [], [], [], []
    for it in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(data), data.y)
        _sync(device)
        t1 = time.perf_counter()
        loss.backward()
        _sync(device)
        t2 = time.perf_counter()
        opt.step()
        _sync(device)
        t3 = time.perf_counter()
        del loss  # the step's autograd graph goes before the next forward, as in the training loop
        if it == 0:
            continue  # warm-up
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
        stp.append(t3 - t2)
        tot.append(t3 - t0)
    med = statistics.median
    return {"forward": med(fwd), "backward": med(bwd), "optimiser": med(stp), "step": med(tot), "min_step": min(tot)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=["triangle", "lba", "psr"], default="triangle")
    p.add_argument("--models", nargs="+", default=["eqgat"], help="registered model names, timed on the same batch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--atoms", type=int, default=500, help="atoms per cloud for lba/psr")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    allocator = tune()
    set_cpu_threads(args.threads)
    device = torch.device(args.device)
    data = make_batch(args.config, args.batch_size, args.atoms, args.seed).to(device)

    import eqgat

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, device {device}, "
        f"threads {torch.get_num_threads()}, eqgat from {os.path.dirname(eqgat.__file__)}, allocator: {allocator}"
    )
    print(f"config {args.config}: batch {data.num_graphs} graphs, {data.num_nodes} nodes, {data.edge_index.shape[1]:,} edges")
    print("| model | parameters | step ms (median) | forward | backward | optimiser | graphs/s | user s | system s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        torch.manual_seed(args.seed)
        task = TASKS[args.config]
        model = build_model(name, **task_model_hparams(task, name, task.protocol["graph"]["cutoff"])).to(device)
        before = resource.getrusage(resource.RUSAGE_SELF)
        t = time_steps(model, data, args.repeats, device)
        after = resource.getrusage(resource.RUSAGE_SELF)
        print(
            f"| {name} | {count_parameters(model):,} | {1e3 * t['step']:.1f} | {1e3 * t['forward']:.1f} | "
            f"{1e3 * t['backward']:.1f} | {1e3 * t['optimiser']:.1f} | {data.num_graphs / t['step']:.1f} | "
            f"{after.ru_utime - before.ru_utime:.1f} | {after.ru_stime - before.ru_stime:.1f} | {after.ru_maxrss / 1024:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
