"""Epoch times of whole training runs, the way the workflow trains: CPU vs GPU, float32 vs
bfloat16 mixed precision, on the default Triangle task and on a PSR-sized ATOM3D dataset.

Each run is ``python -m eqgat train`` in a fresh run directory (so nothing resumes), with the
workflow's settings for the task (its protocol with config/config.yaml laid over it: batch
size, learning rate, model). The epoch times come from the run's ``log.csv`` (training + validation pass). The
first epoch carries the start-up (CUDA context, Numba/PyTorch warm-up) and is reported apart;
"epoch" is the median of the others.

Usage (the numbers in docs/performance.md, section "Epoch times", come from)::

    python benchmarks/bench_epochs.py --devices cpu --threads 2              # our CPU machine
    python benchmarks/bench_epochs.py --devices cpu cuda --amp off on        # a GPU machine

Data: Triangle = ``--triangle-clouds`` clouds generated with the default seed, radius graphs
at 10; PSR = ``--psr-records`` synthetic decoys of 1,000-2,000 heavy atoms in the real atom3d
LMDB format (``benchmarks/synthetic_atom3d.py``), radius graphs at 4.5. Both are built once
under ``--work`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(_ROOT))

import yaml  # noqa: E402

from eqgat.tasks.config import validate_config  # noqa: E402

# the embedded default's task sections (each task's protocol with config/config.yaml laid over it)
CONFIG = validate_config(yaml.safe_load((_ROOT / "config" / "config.yaml").read_text()))


def run(cmd: list[str], log: Path) -> None:
    """Run a command from the repository root; on failure show the end of its log."""
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=_ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.stderr.write(log.read_text()[-4000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")


def triangle_graphs(work: Path, clouds: int, workers: int) -> Path:
    out = work / f"triangle{clouds}" / "graphs"
    if (out / "manifest.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    data = CONFIG["triangle"]["data"]
    raw = out.parent / "raw.h5"
    run([sys.executable, "-m", "preprocess", "generate-triangle", "--num-clouds", str(clouds),
         "--seed", str(data["seed"]), "--out", str(raw)], out.parent / "generate.log")
    run([sys.executable, "-m", "eqgat.tasks", "build-graphs", "--task", "triangle", "--raw", str(raw),
         "--out", str(out), "--cutoff", str(CONFIG["triangle"]["graph"]["cutoff"]),
         "--workers", str(workers), "--no-progress"], out.parent / "graphs.log")
    return out


def psr_graphs(work: Path, records: int, workers: int) -> Path:
    out = work / f"psr{records}" / "graphs"
    if (out / "manifest.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    source = out.parent / "source"
    run([sys.executable, "benchmarks/synthetic_atom3d.py", "psr", "--records", str(records),
         "--out", str(source)], out.parent / "synthetic.log")
    run([sys.executable, "-m", "eqgat.tasks", "build-graphs", "--task", "psr", "--source", str(source),
         "--out", str(out), "--cutoff", str(CONFIG["psr"]["graph"]["cutoff"]),
         "--workers", str(workers), "--no-progress"], out.parent / "graphs.log")
    return out


def split_sizes(graphs: Path) -> dict[str, int]:
    manifest = json.loads((graphs / "manifest.json").read_text())
    return {name: info["num_graphs"] for name, info in manifest["splits"].items()}


def train_once(task: str, graphs: Path, run_dir: Path, device: str, amp: bool, epochs: int, threads: int) -> list[float]:
    """Seconds of every epoch of one fresh training run."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    cmd = [sys.executable, "-m", "eqgat", "train", "--task", task, "--model", "eqgat", "--seed", "0",
           "--data", str(graphs), "--out", str(run_dir), "--device", device, "--threads", str(threads),
           "--section", json.dumps(CONFIG[task]), "--epochs", str(epochs), "--no-progress"]
    if amp:
        cmd.append("--amp")
    run(cmd, run_dir.parent / f"{run_dir.name}.log")
    lines = (run_dir / "log.csv").read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("seconds")
    return [float(line.split(",")[col]) for line in lines[1:]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/eqgat_bench_epochs"))
    ap.add_argument("--devices", nargs="+", default=["cpu"], choices=("cpu", "cuda"))
    ap.add_argument("--amp", nargs="+", default=["off"], choices=("off", "on"), help="bfloat16 autocast (CUDA only)")
    ap.add_argument("--tasks", nargs="+", default=["triangle", "psr"], choices=("triangle", "psr"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of the training process")
    ap.add_argument("--workers", type=int, default=2, help="Dask workers for graph building")
    ap.add_argument("--triangle-clouds", type=int, default=CONFIG["triangle"]["data"]["num_clouds"])
    ap.add_argument("--psr-records", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch is reported apart)")

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, GPU: {gpu}, {args.threads} training threads")
    builders = {"triangle": lambda: triangle_graphs(args.work, args.triangle_clouds, args.workers),
                "psr": lambda: psr_graphs(args.work, args.psr_records, args.workers)}
    rows = []
    print("| task | train graphs | batch | device | mixed precision | first epoch s | epoch s | train graphs / epoch s |")
    print("|---|---:|---:|---|---|---:|---:|---:|")
    for task in args.tasks:
        graphs = builders[task]()
        n_train = split_sizes(graphs)["train"]
        for device in args.devices:
            for amp in args.amp:
                if amp == "on" and device != "cuda":
                    continue  # mixed precision is a CUDA feature: the CPU run would be float32 again
                start = time.perf_counter()
                secs = train_once(task, graphs, args.work / "runs" / f"{task}-{device}-amp{amp}",
                                  device, amp == "on", args.epochs, args.threads)
                epoch = statistics.median(secs[1:])
                row = {"task": task, "train_graphs": n_train, "batch_size": CONFIG[task]["train"]["batch_size"],
                       "device": device, "gpu": gpu if device == "cuda" else None, "mixed_precision": amp == "on",
                       "first_epoch_s": secs[0], "epoch_s": epoch, "epochs": secs,
                       "wall_s": round(time.perf_counter() - start, 1)}
                rows.append(row)
                print(f"| {task} | {n_train} | {row['batch_size']} | {device} | {amp} | {secs[0]:.2f} | "
                      f"{epoch:.2f} | {n_train / epoch:.1f} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
