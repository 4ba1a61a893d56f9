"""Start the ranks of one training run: ``python -m eqgat.launch --ranks N [--threads T] -- <train arguments>``.

* one rank: ``python -m eqgat train`` in this process;
* several ranks inside a SLURM allocation (``SLURM_JOB_ID`` set, ``srun`` found): ``srun`` tasks,
  one per rank, possibly on several nodes; rank 0 listens on this host (the allocation's first
  node) at a free port (``MASTER_ADDR`` / ``MASTER_PORT``);
* several ranks elsewhere: ``torchrun --standalone --nproc-per-node N`` on this machine.

Arguments reach the ranks as a list, never through a shell. The exit status is the run's:
:data:`eqgat.train.stopping.EXIT_RESUMABLE` when it stopped early with its resume state written
(torchrun reports any stopped worker as a failure, so the run's attempts log decides).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from eqgat.train.stopping import EXIT_RESUMABLE, stopped_since  # standard library only: the launcher stays light


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def in_slurm_allocation(env: dict[str, str]) -> bool:
    return bool(env.get("SLURM_JOB_ID")) and shutil.which("srun") is not None


def rank_command(ranks: int, threads: int, gpus_per_rank: int, train_args: list[str],
                 env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command that starts the ranks, and its environment."""
    train = [sys.executable, "-m", "eqgat", "train", *train_args]
    if in_slurm_allocation(env):
        env = {**env, "MASTER_ADDR": socket.gethostname(), "MASTER_PORT": str(free_port())}
        command = [shutil.which("srun") or "srun", f"--ntasks={ranks}", f"--cpus-per-task={threads}",
                   "--kill-on-bad-exit=1", f"--job-name={env.get('SLURM_JOB_NAME', 'eqgat-train')}"]
        if gpus_per_rank > 0:
            command.append(f"--gpus-per-task={gpus_per_rank}")
        return [*command, *train], env
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
            "-m", "eqgat", "train", *train_args], env


def out_dir(train_args: list[str]) -> Path | None:
    for i, arg in enumerate(train_args):
        if arg == "--out" and i + 1 < len(train_args):
            return Path(train_args[i + 1])
        if arg.startswith("--out="):
            return Path(arg.split("=", 1)[1])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eqgat.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=1, help="processes of the run (one per GPU, or gloo CPU ranks)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (cores) per rank")
    parser.add_argument("--gpus-per-rank", type=int, default=0, help="GPUs each srun task gets")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then the arguments of python -m eqgat train")
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    if args.ranks < 1:
        parser.error("--ranks must be >= 1")
    if args.ranks == 1:
        from eqgat.cli import main as eqgat_main

        return eqgat_main(["train", *train_args])
    started = time.time()
    command, env = rank_command(args.ranks, args.threads, args.gpus_per_rank, train_args, dict(os.environ))
    print("launching:", " ".join(command), file=sys.stderr, flush=True)
    status = subprocess.run(command, env=env, check=False).returncode
    run_dir = out_dir(train_args)
    if status not in (0, EXIT_RESUMABLE) and run_dir is not None and stopped_since(run_dir, started):
        return EXIT_RESUMABLE
    return status


if __name__ == "__main__":
    from eqgat.allocator import start_tuned

    start_tuned()  # re-executes once with glibc's small-chunk caches off; the ranks inherit it
    sys.exit(main())
