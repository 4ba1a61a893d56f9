"""Data-parallel training runs for the tests: gloo ranks started with torch.multiprocessing
(spawn), each calling :func:`eqgat.train.loop.train` on the same small float64 dataset."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from _graphs import make_graph

from eqgat.launch import free_port

TRAIN_GRAPHS, VAL_GRAPHS = 7, 5
HPARAMS = {"hidden_scalars": 8, "hidden_vectors": 4, "num_layers": 2, "num_radial": 4}


def dataset(n: int, seed: int) -> list:
    """`n` graphs of 5 to 11 atoms (so ranks hold unequal numbers of atoms), Triangle-shaped labels."""
    gen = torch.Generator().manual_seed(seed)
    graphs = []
    for i in range(n):
        g = make_graph(5 + (3 * i) % 7, gen, cutoff=3.0, num_elements=1)
        g.y = torch.randn(1, 3, generator=gen, dtype=torch.float64)
        g.id = f"g{seed}-{i}"
        graphs.append(g)
    return graphs


def settings(batch_size: int, epochs: int = 2, **extra: Any):
    from eqgat.train.loop import TrainSettings

    base = {"epochs": epochs, "batch_size": batch_size, "lr": 1e-2, "schedule": "cosine", "warmup_epochs": 0.5,
            "clip_norm": 0.05, "checkpoint_minutes": 0, "seed": 3}
    return TrainSettings(**{**base, **extra})


def run_rank(rank: int, world_size: int, port: int, run_dir: str, batch_size: int, epochs: int,
             stop_after_steps: int | None, stopping_rank: int | None, extra: dict[str, Any]) -> None:
    """One rank of a run (world_size 1: a plain process); only `stopping_rank` (None: every rank)
    stops after `stop_after_steps`."""
    from eqgat.train.distributed import World
    from eqgat.device import set_cpu_threads
    from eqgat.train.stopping import StopPolicy, Stopped

    set_cpu_threads(1)
    if world_size > 1:
        os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                           "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)})
    world = World.from_env()
    world.start(torch.device("cpu"))
    try:
        stops = stopping_rank is None or stopping_rank == rank
        policy = StopPolicy(checkpoint_minutes=0, stop_after_steps=stop_after_steps if stops else None)
        train_once(run_dir, batch_size, epochs, policy, world, **extra)
    except Stopped:
        pass
    finally:
        world.stop()


def train_once(run_dir, batch_size: int, epochs: int, stop, world=None, val_set=None, **extra: Any) -> dict:
    """One attempt of the test run on this process (a rank of `world`); `val_set` replaces the
    validation graphs (same graphs, e.g. wrapped)."""
    from eqgat.models import build_model, task_model_hparams
    from eqgat.tasks import get_task
    from eqgat.train.loop import seed_everything, train

    task = get_task("triangle")
    spec = {"name": "eqgat", "hparams": task_model_hparams(task, "eqgat", 3.0, HPARAMS)}
    seed_everything(0)
    model = build_model("eqgat", **spec["hparams"]).double()
    return train(model, spec, task, dataset(TRAIN_GRAPHS, 1), val_set if val_set is not None else dataset(VAL_GRAPHS, 2),
                 settings(batch_size, epochs, **extra), run_dir, torch.device("cpu"), progress=False, world=world,
                 stop=stop)


def launch(world_size: int, run_dir: Path, batch_size: int, epochs: int = 2, stop_after_steps: int | None = None,
           stopping_rank: int | None = None, **extra: Any) -> None:
    """Run (or resume) one training run on `world_size` gloo ranks."""
    args = (world_size, free_port(), str(run_dir), batch_size, epochs, stop_after_steps, stopping_rank, extra)
    if world_size == 1:
        run_rank(0, *args)
        return
    mp.start_processes(run_rank, args=args, nprocs=world_size, start_method="spawn", join=True)
