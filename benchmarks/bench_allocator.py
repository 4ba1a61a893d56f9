"""glibc's defaults against :func:`eqgat.allocator.tune` on PSR-sized EQGAT training steps.

Each mode runs in a fresh process (``default``: ``EQGAT_MALLOC=default``, glibc's defaults;
``caches-on``: :func:`eqgat.allocator.tune` alone; ``tuned``: what a command runs, ``tune`` with
glibc's small-chunk caches off, as :func:`eqgat.allocator.start_tuned` restarts it): `--steps`
training steps cycling over `--batches` batches of different sizes (4 random clouds of
`--atoms` ± 30 % atoms each, protein density, cutoff 4.5, the PSR configuration), as a real
epoch does. Reported per mode: the median step, user and system CPU seconds, minor page
faults, the peak RSS and the resident size after each step (does it settle or keep growing?).

    python benchmarks/bench_allocator.py --steps 12 --threads 2
    python benchmarks/bench_allocator.py --steps 8 --threads 1 --batches 1   # one batch repeated
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(args: argparse.Namespace) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    import numpy as np
    import torch

    from bench_model_step import make_batch
    from eqgat.allocator import tune
    from eqgat.device import set_cpu_threads
    from eqgat.models import build_model, task_model_hparams
    from eqgat.tasks import TASKS

    what = tune()
    set_cpu_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sizes = [int(args.atoms * f) for f in rng.uniform(0.7, 1.3, args.batches)]
    batches = [make_batch("psr", 4, n, seed) for seed, n in enumerate(sizes)]
    model = build_model("eqgat", **task_model_hparams(TASKS["psr"], "eqgat", 4.5))
    model.set_activation_checkpointing(args.checkpointing)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times, rss = [], []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for step in range(args.steps):
        data = batches[step % len(batches)]
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(data), data.y).backward()
        opt.step()
        times.append(time.perf_counter() - t)
        rss.append(round(rss_mib()))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "allocator": what.split(";")[0], "atoms_per_batch": [4 * n for n in sizes],
        "median_step_s": statistics.median(times[1:]), "steps_s": [round(x, 2) for x in times],
        "user_s": r1.ru_utime - r0.ru_utime, "system_s": r1.ru_stime - r0.ru_stime,
        "minor_faults": r1.ru_minflt - r0.ru_minflt, "peak_rss_mib": r1.ru_maxrss / 1024, "rss_mib": rss,
        "params_checksum": float(sum(p.detach().double().sum() for p in model.parameters())),
    }), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--atoms", type=int, default=1500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", nargs="+", default=["default", "caches-on", "tuned"],
                   help="default: glibc's defaults; caches-on: tune() with glibc's small-chunk caches on; "
                        "tuned: what commands run; tcache-off: the tcache alone off")
    p.add_argument("--checkpointing", action="store_true", help="with activation checkpointing")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    sys.path.insert(0, str(ROOT))
    from eqgat.allocator import SMALL_CACHES_OFF

    for mode in args.modes:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("EQGAT_MALLOC", None)
        env.pop("GLIBC_TUNABLES", None)
        if mode == "default":
            env["EQGAT_MALLOC"] = "default"
        elif mode == "tuned":  # as a command runs after eqgat.allocator.start_tuned()
            env["GLIBC_TUNABLES"] = ":".join(SMALL_CACHES_OFF)
        elif mode == "tcache-off":  # what commands ran before the fastbins were turned off too
            env["GLIBC_TUNABLES"] = SMALL_CACHES_OFF[0]
        argv = [sys.executable, __file__, "--child", "--steps", str(args.steps), "--batches", str(args.batches),
                "--atoms", str(args.atoms), "--threads", str(args.threads), *(["--checkpointing"] * args.checkpointing)]
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        cpu = result["user_s"] + result["system_s"]
        print(f"{mode}: median step {result['median_step_s']:.2f} s, system {result['system_s']:.1f} s of "
              f"{cpu:.1f} s CPU ({100 * result['system_s'] / cpu:.0f} %), {result['minor_faults']:,} minor faults, "
              f"peak RSS {result['peak_rss_mib']:.0f} MiB")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
