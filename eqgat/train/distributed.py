"""One run on several processes with torch.distributed: NCCL on GPUs, gloo on CPUs.

The ranks come from torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``) or
from ``srun`` tasks (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, with
``MASTER_ADDR``/``MASTER_PORT`` set by :mod:`eqgat.launch`). Without them a run is one process
and nothing here communicates.

The loss of a step is that of the *global* batch: every rank gathers the outputs and labels of
all ranks (:func:`gather_rows`) and computes the same loss. The gather's backward sums every
rank's gradient of its copy of the loss, and DDP averages the parameter gradients over the
ranks, so each parameter gets exactly the gradient of one process holding the global batch,
whatever the number of graphs on each rank (and for losses over a whole batch, such as RSR's
Pearson term).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["World", "all_gather_objects", "any_rank", "gather_rows"]


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> World:
        """The ranks torchrun or srun started (one process when neither did)."""
        env = dict(os.environ if env is None else env)
        if "WORLD_SIZE" in env and "RANK" in env:
            return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
        if "MASTER_ADDR" in env and "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
            return cls(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)))
        return cls()

    def device(self, requested: torch.device) -> torch.device:
        """A rank's device: on CUDA its own GPU of the node."""
        if requested.type == "cuda" and self.distributed:
            return torch.device("cuda", self.local_rank % max(1, torch.cuda.device_count()))
        return requested

    def start(self, device: torch.device, timeout_minutes: float = 30.0) -> None:
        """Join the process group (NCCL for CUDA, gloo otherwise); a no-op for one process."""
        if not self.distributed or dist.is_initialized():
            return
        os.environ.setdefault("MASTER_PORT", "29500")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                rank=self.rank, world_size=self.size, timeout=timedelta(minutes=timeout_minutes))

    def stop(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


class _GatherRows(torch.autograd.Function):
    """Concatenate every rank's rows in rank order; the backward sums the gradients of all
    ranks' copies and returns this rank's rows of the sum."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, counts: tuple[int, ...], rank: int) -> torch.Tensor:
        ctx.counts, ctx.rank = counts, rank
        return _all_gather_padded(x, counts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.counts[:ctx.rank])
        return grad[start:start + ctx.counts[ctx.rank]], None, None


def _all_gather_padded(x: torch.Tensor, counts: tuple[int, ...]) -> torch.Tensor:
    longest = max(counts)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, counts)])


def gather_rows(x: torch.Tensor, counts: tuple[int, ...], world: World) -> torch.Tensor:
    """Rows of every rank in rank order (``counts[r]`` rows from rank ``r``), differentiable
    in `x` when it requires grad; `x` itself with one rank."""
    if not world.distributed:
        return x
    if x.requires_grad:
        return _GatherRows.apply(x, tuple(counts), world.rank)
    return _all_gather_padded(x, tuple(counts))


def any_rank(flags: list[bool], world: World, device: torch.device) -> list[bool]:
    """Element-wise OR of boolean flags over the ranks (the flags themselves with one rank)."""
    if not world.distributed:
        return flags
    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def all_gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's `obj`, in rank order (our own processes' data: never data from files)."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out
