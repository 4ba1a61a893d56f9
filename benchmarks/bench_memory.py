"""Peak memory and time of a training step with activation checkpointing and ``torch.compile``.

Every (model, variant) runs in a fresh process, so the peaks are the variant's own:

* ``plain``: the eager model;
* ``checkpoint``: ``model.set_activation_checkpointing(True)`` (each layer's activations are
  recomputed in the backward pass instead of being stored);
* ``compile``: ``torch.compile(model)``;
* ``compile+checkpoint``: both.

The batch is ``bench_model_step.make_batch`` (``--batch-size`` random clouds of ``--atoms``
atoms at protein density, cutoff 4.5; PSR: 4 x 1,500 atoms) and the model has the task's
configuration; the step is ``zero_grad``, forward, MSE loss, backward, Adam step. ``--warmup``
steps come first (the first one compiles; its time less the median step is reported as the
compile time), then the free heap is given back (``malloc_trim``), the kernel's peak-RSS mark is
reset (``/proc/self/clear_refs``) and the measured steps run.

Each variant runs twice, in two processes:

* with the allocator set up as ``python -m eqgat train`` sets it (freed memory stays in the
  process; ``EQGAT_MALLOC=default`` keeps glibc's defaults instead): ``--steps`` timed steps;
  the table gives their median, the RSS before them, the peak during them, and the process's
  peak over its whole life (with the compilation);
* with glibc's allocator told to map every block of 64 KiB or more on its own and to unmap it
  when freed (``MALLOC_MMAP_THRESHOLD_=65536``): the RSS then follows the tensors alive, and
  the peak during ``--exact-steps`` steps less the RSS before them is the step's own memory
  ("step memory": what checkpointing is meant to cut; the first allocator's heap keeps freed
  blocks, so its peak also holds blocks it could not reuse).

The load average at the end of each timed run is given, as the times depend on it. Inductor's
on-disk caches are off unless ``--warm-cache`` (a first compilation, as on a fresh machine).

``--paired`` compares the times on a busy machine instead: one process (training allocator)
takes the steps of the ``--variants`` in turn on the same model (the compiled variants share one
``torch.compile``, compiled once per checkpointing setting in the warm-up), so all of them see
the same load, and prints the medians of the wall and CPU seconds (the process's, both threads)
and their ratios to the first variant's.

    python benchmarks/bench_memory.py --config psr --batch-size 4 --atoms 1500 --threads 2 --models eqgat
    python benchmarks/bench_memory.py --config psr --batch-size 4 --atoms 1500 --threads 2 --paired --steps 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("plain", "checkpoint", "compile", "compile+checkpoint")
DYNAMIC = {"auto": None, "true": True, "false": False}


def status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current RSS; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def build(name: str, variant: str, config: str, dynamic: str):
    """The model of `name` at `config` size, set up as `variant`, and its module to call."""
    import torch

    from eqgat.models import build_model, task_model_hparams
    from eqgat.tasks import TASKS

    task = TASKS[config]
    model = build_model(name, **task_model_hparams(task, name, task.protocol["graph"]["cutoff"])).train()
    model.set_activation_checkpointing("checkpoint" in variant)
    runner = torch.compile(model, dynamic=DYNAMIC[dynamic]) if "compile" in variant else model
    return model, runner


def train_step(model, runner, opt, data) -> float:
    """One training step; returns the loss."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(runner(data), data.y)
    loss.backward()
    opt.step()
    return loss.item()


def timed(fn, *args) -> tuple[float, float]:
    """``(fn(*args), seconds)``."""
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def child(args: argparse.Namespace) -> None:
    """Measure one (model, variant) in this process and print the result as JSON."""
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    import torch

    from bench_model_step import make_batch
    from eqgat.allocator import release, tune
    from eqgat.device import set_cpu_threads

    if args.allocator == "train":
        tune()
    set_cpu_threads(args.threads)
    torch.manual_seed(args.seed)
    data = make_batch(args.config, args.batch_size, args.atoms, args.seed)
    model, runner = build(args.model, args.variant, args.config, args.dynamic)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    warm = [timed(train_step, model, runner, opt, data) for _ in range(args.warmup)]
    release()
    peak_reset = reset_peak()
    before = status_mib("VmRSS")
    steps = [timed(train_step, model, runner, opt, data)[1] for _ in range(args.steps)]
    peak = status_mib("VmHWM") if peak_reset else float("nan")
    median = statistics.median(steps)
    print(json.dumps({
        "model": args.model, "variant": args.variant, "nodes": data.num_nodes, "edges": data.edge_index.shape[1],
        "first_loss": warm[0][0], "first_step_s": warm[0][1], "compile_s": warm[0][1] - median,
        "median_step_s": median, "steps_s": [round(s, 3) for s in steps], "rss_before_mib": before,
        "peak_steps_mib": peak, "step_peak_mib": peak - before,
        "process_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": os.getloadavg()[0],
    }), flush=True)


def child_env(allocator: str, warm_cache: bool) -> dict[str, str]:
    """The environment of a child process with `allocator` ("train" or "exact"), and without
    Inductor's on-disk caches unless `warm_cache` (so the compile time is a first compilation's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if allocator == "exact":
        env.update(EQGAT_MALLOC="default", MALLOC_MMAP_THRESHOLD_="65536")
    if not warm_cache:
        env["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
    return env


def paired(args: argparse.Namespace) -> None:
    """Take the variants' steps in turn on each model in this process; print the medians."""
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    import torch

    from bench_model_step import make_batch
    from eqgat.allocator import tune
    from eqgat.device import set_cpu_threads

    tune()
    set_cpu_threads(args.threads)
    data = make_batch(args.config, args.batch_size, args.atoms, args.seed)
    print("| model | " + " | ".join(f"{v} step s, wall (CPU)" for v in args.variants) + " | "
          + " | ".join(f"{v} / {args.variants[0]}, wall (CPU)" for v in args.variants[1:]) + " | load |")
    print("|---" * (2 * len(args.variants) + 1) + "|")
    for name in args.models:
        torch.manual_seed(args.seed)
        model, compiled = build(name, "compile", args.config, args.dynamic)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        wall: dict[str, list[float]] = {v: [] for v in args.variants}
        cpu: dict[str, list[float]] = {v: [] for v in args.variants}
        for step in range(args.warmup + args.steps):
            for variant in args.variants:
                model.set_activation_checkpointing("checkpoint" in variant)
                runner = compiled if "compile" in variant else model
                cpu0 = time.process_time()
                seconds = timed(train_step, model, runner, opt, data)[1]
                if step >= args.warmup:
                    wall[variant].append(seconds)
                    cpu[variant].append(time.process_time() - cpu0)
        w = [statistics.median(wall[v]) for v in args.variants]
        c = [statistics.median(cpu[v]) for v in args.variants]
        print(f"| {name} | " + " | ".join(f"{a:.2f} ({b:.2f})" for a, b in zip(w, c)) + " | "
              + " | ".join(f"{a / w[0]:.2f} ({b / c[0]:.2f})" for a, b in zip(w[1:], c[1:]))
              + f" | {os.getloadavg()[0]:.2f} |", flush=True)


def run_variant(args: argparse.Namespace, model: str, variant: str, allocator: str) -> dict:
    """Run one (model, variant) in a fresh interpreter with `allocator` and return its result."""
    steps = args.steps if allocator == "train" else args.exact_steps
    argv = [sys.executable, __file__, "--child", "--model", model, "--variant", variant, "--allocator", allocator,
            "--config", args.config, "--batch-size", str(args.batch_size), "--atoms", str(args.atoms),
            "--threads", str(args.threads), "--warmup", str(args.warmup), "--steps", str(steps),
            "--seed", str(args.seed), "--dynamic", args.dynamic]
    proc = subprocess.run(argv, env=child_env(allocator, args.warm_cache), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{model} {variant} ({allocator} allocator) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def row(r: dict, exact: dict) -> str:
    """The Markdown table row of a variant's timed run `r` and its exact-memory run."""
    compile_s = f"{r['compile_s']:.1f}" if "compile" in r["variant"] else "-"
    return (f"| {r['model']} | {r['variant']} | {r['median_step_s']:.2f} | {r['first_step_s']:.1f} | "
            f"{compile_s} | {exact['step_peak_mib']:.0f} | {r['rss_before_mib']:.0f} | {r['peak_steps_mib']:.0f} | "
            f"{r['process_peak_mib']:.0f} | {r['first_loss']:.6f} | {r['load']:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["eqgat"], help="registered model names")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--config", choices=["triangle", "lba", "psr"], default="psr")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--atoms", type=int, default=1500, help="atoms per cloud for lba/psr")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first one compiles)")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--exact-steps", type=int, default=1, help="steps measured with every block mapped on its own")
    p.add_argument("--dynamic", choices=sorted(DYNAMIC), default="auto",
                   help="torch.compile's dynamic: auto (None, PyTorch's default), true or false")
    p.add_argument("--paired", action="store_true",
                   help="time plain and checkpointed steps alternately in one process (no memory, no compile)")
    p.add_argument("--warm-cache", action="store_true",
                   help="let torch.compile use Inductor's on-disk caches (a repeated compilation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--allocator", choices=["train", "exact"], default="train", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if args.paired:
        return paired(args)
    import torch

    print(f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, threads "
          f"{args.threads}, config {args.config}: {args.batch_size} x {args.atoms} atoms, {args.warmup} warm-up + "
          f"{args.steps} timed steps, compile dynamic={args.dynamic}, warm cache {args.warm_cache}, "
          f"EQGAT_MALLOC={os.environ.get('EQGAT_MALLOC', '')}, load {os.getloadavg()[0]:.2f}", flush=True)
    print("| model | variant | step s (median) | first step s | compile s | step memory MiB (exact) | RSS before MiB | "
          "peak in steps MiB | process peak MiB | first loss | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for model in args.models:
        for variant in args.variants:
            exact = run_variant(args, model, variant, "exact")
            print(row(run_variant(args, model, variant, "train"), exact), flush=True)


if __name__ == "__main__":
    main()
