"""Which training settings make the ``structures`` task learn on a small folder of real proteins?

Builds a folder of crops of real protein chains (``tests/real_structures.py``: MDAnalysisTests'
PDB files, label = 300 + 4 x radius of gyration), its graphs (4.5 Å, as the task's protocol),
then trains and evaluates EQGAT per recipe and seed the way the workflow does (``python -m
eqgat train`` / ``evaluate``, one thread per run, the seeds at once) and prints per run the
test RMSE beside the training-mean predictor's, the best epoch and the wall time.

    python benchmarks/bench_structures_defaults.py --work /tmp/st_bench --n 200 \\
        --recipes default psr --seeds 0 1

A recipe is a name below or a JSON object of ``train`` settings laid over the task's protocol
(``'{"epochs": 20, "lr": 1e-3}'``); ``default`` is the protocol itself (no training settings).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from eqgat.tasks import TASKS  # noqa: E402
from eqgat.tasks.config import task_section  # noqa: E402
from preprocess.task_shards import build_task_shards  # noqa: E402
from real_structures import write_crops  # noqa: E402

#: named recipes: train settings laid over the structures protocol
RECIPES = {
    "default": {},
    # the protocol before standardised targets: PSR's (30 epochs, batch 16, lr 1e-4 on plateau)
    "psr": {"epochs": 30, "batch_size": 16, "lr": 1e-4, "schedule": "plateau", "warmup_epochs": 0,
            "decay_epochs": None, "standardize_targets": False},
    "psr_scaled": {"epochs": 30, "batch_size": 16, "lr": 1e-4, "schedule": "plateau", "warmup_epochs": 0,
                   "decay_epochs": None, "standardize_targets": True},
}


def prepare(work: Path, n: int, seed: int) -> tuple[Path, dict]:
    data = work / "data"
    if not (data / "labels.csv").exists():
        write_crops(data, n, seed)
    section = {"files": str(data), "labels": str(data / "labels.csv")}
    graphs = work / "graphs"
    if not (graphs / "manifest.json").exists():
        build_task_shards(TASKS["structures"], data, graphs, 4.5, shard_size=500, progress=False,
                          options=task_section(TASKS["structures"], section))
    return graphs, section


def run_recipe(name: str, train: dict, graphs: Path, section: dict, seeds: list[int], work: Path,
               threads: int) -> list[dict]:
    sec = json.dumps({**section, "train": train} if train else section)
    common = ["--task", "structures", "--data", str(graphs), "--section", sec, "--device", "cpu",
              "--threads", str(threads)]
    procs, out = [], []
    start = time.perf_counter()
    for seed in seeds:
        run = work / "runs" / name / f"seed{seed}"
        run.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "eqgat", "train", *common, "--seed", str(seed), "--out", str(run), "--no-progress"]
        with open(run / "train.log", "w") as log_file:
            procs.append((seed, run, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log_file)))
    for seed, run, proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"{name} seed {seed} failed: see {run / 'train.log'}")
        wall = time.perf_counter() - start
        subprocess.run([sys.executable, "-m", "eqgat", "evaluate", *common, "--seed", str(seed), "--checkpoint",
                        str(run / "best.pt"), "--out", str(run / "metrics.json"), "--predictions",
                        str(run / "test_predictions.csv")], cwd=ROOT, check=True, capture_output=True)
        m = json.loads((run / "metrics.json").read_text())
        log = list(csv.DictReader(open(run / "log.csv")))
        out.append({"recipe": name, "seed": seed, "rmse": m["test"]["rmse"], "spearman": m["test"]["spearman"],
                    "trivial_rmse": m["trivial"]["test"]["rmse"], "ratio": m["trivial"]["test"]["rmse"] / m["test"]["rmse"],
                    "learned": m.get("learned"), "best_epoch": m["best_epoch"], "epochs": len(log),
                    "train_wall_s": round(wall, 1), "val_loss": [round(float(r["val_loss"]), 3) for r in log]})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True)
    p.add_argument("--n", type=int, default=200, help="crops in the folder")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--recipes", nargs="+", default=["default"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (the seeds run at once)")
    args = p.parse_args()
    work = Path(args.work)
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    t0 = time.perf_counter()
    graphs, section = prepare(work, args.n, args.data_seed)
    print(f"folder and graphs: {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for i, recipe in enumerate(args.recipes):
        train = RECIPES[recipe] if recipe in RECIPES else json.loads(recipe)
        name = recipe if recipe in RECIPES else f"recipe{i}"
        rows += run_recipe(name, train, graphs, section, args.seeds, work, args.threads)
    print("| recipe | seed | test RMSE | training-mean RMSE | ratio | Spearman | best epoch | train wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['seed']} | {r['rmse']:.3f} | {r['trivial_rmse']:.3f} | {r['ratio']:.2f} | "
              f"{r['spearman']:.3f} | {r['best_epoch']} | {r['train_wall_s']} |")


if __name__ == "__main__":
    main()
