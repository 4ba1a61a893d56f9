"""Throughput of one training run on N gloo ranks against one process, same global batch.

Usage (the numbers in docs/performance.md, "One run on several processes", come from)::

    python benchmarks/bench_ddp.py --config lba --graphs 8 --atoms 400 --steps 6 --ranks 1 2

Each variant runs in fresh processes (``torch.multiprocessing`` spawn): ``--ranks N`` starts N
ranks of 1 thread each, every rank training on ``--graphs / N`` graphs per step with the
training loop's own step (:func:`eqgat.train.loop.train_step`: DDP, the global batch's loss,
clipping, Adam); one rank trains on all ``--graphs``. Graphs are random clouds at protein
density with the task's paper model (see ``bench_model_step.make_batch``). After one warm-up
step, rank 0 times ``--steps`` steps between barriers and reports graphs per second; the
table gives the ratio to one rank.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch
import torch.multiprocessing as mp

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(_ROOT)
sys.path.append(os.path.join(_ROOT, "benchmarks"))

from eqgat.launch import free_port  # noqa: E402


def rank_main(rank: int, ranks: int, port: int, args: argparse.Namespace, results) -> None:
    from bench_model_step import make_batch

    from eqgat.allocator import tune
    from eqgat.device import set_cpu_threads
    from eqgat.models import build_model, task_model_hparams
    from eqgat.tasks import TASKS
    from eqgat.tasks.losses import get_loss
    from eqgat.train.distributed import World
    from eqgat.train.loop import TrainSettings, training_module, train_step
    from eqgat.train.schedule import LearningRate

    tune()
    set_cpu_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(ranks), "LOCAL_RANK": str(rank)})
    world = World.from_env()
    device = torch.device("cpu")
    world.start(device)
    task = TASKS[args.config]
    cutoff = float(task.protocol["graph"]["cutoff"])
    torch.manual_seed(0)
    model = build_model("eqgat", **task_model_hparams(task, "eqgat", cutoff, {}))
    net = training_module(model, device, world, False)
    per_rank = args.graphs // ranks
    batch = make_batch(args.config, per_rank, args.atoms, seed=rank)
    batch.id = [f"g{i}" for i in range(per_rank)]
    counts = [per_rank] * ranks
    settings = TrainSettings(epochs=1, batch_size=per_rank, lr=1e-4)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    schedule = LearningRate(optimizer, settings, args.steps + 1, higher_is_better=False)
    loss_fn = get_loss("mse")
    net.train()

    def step() -> None:
        train_step(net, batch, loss_fn, optimizer, schedule, 10.0, device, False, None, world, counts, model.parameters())

    step()
    if world.distributed:
        torch.distributed.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if world.distributed:
        torch.distributed.barrier()
    seconds = time.perf_counter() - start
    if torch.get_num_threads() != 1:
        raise RuntimeError(f"rank {rank} ran {torch.get_num_threads()} torch threads, not 1: the ratio would be meaningless")
    if world.is_main:
        results[ranks] = args.graphs * args.steps / seconds
    world.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="lba", choices=["lba", "psr"])
    parser.add_argument("--graphs", type=int, default=8, help="global batch (graphs per step, all ranks together)")
    parser.add_argument("--atoms", type=int, default=400)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    manager = mp.Manager()
    results = manager.dict()
    for ranks in args.ranks:
        mp.start_processes(rank_main, args=(ranks, free_port(), args, results), nprocs=ranks, start_method="spawn")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}; "
          f"{args.config} model, {args.graphs} graphs of {args.atoms} atoms per step, {args.steps} steps")
    print("| ranks (1 thread each) | graphs/s | ratio to 1 rank |")
    print("|---|---|---|")
    for ranks in args.ranks:
        print(f"| {ranks} | {results[ranks]:.2f} | {results[ranks] / results[args.ranks[0]]:.2f} |")


if __name__ == "__main__":
    main()
