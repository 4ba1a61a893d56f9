"""Our EQGAT against the authors' (Bayer-Group/eqgat) on PSR-sized CPU training steps.

Both models train on the same batch: ``bench_model_step.make_batch("psr", 4, 1500, seed)`` (4
random clouds of 1,500 atoms at protein density, 9 element types, cutoff 4.5, no neighbour cap),
built once by this process and saved as tensors; every variant loads that file. Each variant
runs in a fresh subprocess with ``torch.set_num_threads(--threads)``:

* ``ours``: our paper PSR configuration (``eqgat.models.build_model("eqgat", ...)`` with the PSR
  task's hyper-parameters);
* ``theirs``: their ``experiments.model.BaseModel`` built with the arguments their PSR script
  (``experiments/psr/train.py``) trains with: Fs/Fv 100/16, 5 layers, cutoff 4.5, 32 radial
  functions, 9 elements, one output, dropout 0, their norm on, vector mean aggregation, cross
  product and feature attention on. Their code is loaded from ``--authors-src`` (a folder filled
  by ``benchmarks/fetch_authors_code.sh`` from a git directory; nothing of theirs is in this
  repository); ``torch_scatter`` is replaced by ``benchmarks/authors_shims.py`` (its speed is
  part of their numbers: see that module). Their input carries the edge lengths they precompute
  in their data transform (float64, as theirs); ours computes them in its forward pass.

under two allocator settings: ``default`` (glibc's defaults, ``EQGAT_MALLOC=default``) and
``tuned`` (``eqgat.allocator.tune()``: mmap off, trim threshold 2 GiB; glibc's small-chunk caches off, as
``eqgat.allocator.start_tuned()`` restarts a command). Every child calls the
*same* ``tune()`` before torch is imported, our ``eqgat/allocator.py`` loaded by file path (so
that in their process their package, also named ``eqgat``, is the only ``eqgat``); the
environment variable decides. ``ours/tuned`` is what ``python -m eqgat train`` runs;
``theirs/default`` is what their scripts run.

The step: ``zero_grad(set_to_none=True)``, forward, MSE loss, backward, Adam step (lr 1e-4); one
warm-up step, then the median (and minimum) of ``--repeats`` steps. User and system CPU seconds
cover the timed steps; the peak RSS is the subprocess's ``ru_maxrss`` (from ``os.wait4``: the
whole process, imports and model included). The loss tensor is dropped after each step: kept
into the next forward, it keeps the step's autograd graph (thousands of small C++ nodes) alive
there, those small blocks sit in the freed space of the large tensors, and the reused heap
grows (ours, tuned: 2,671 against 2,197 MiB; docs/performance.md). ``--checkpointing`` adds ``ours+ckpt`` rows that call
``model.set_activation_checkpointing(True)`` where our model has that method.

    benchmarks/fetch_authors_code.sh /path/to/eqgat.git /tmp/authors_src
    python benchmarks/bench_authors.py --authors-src /tmp/authors_src --repeats 7 --threads 2 \\
        --rounds 2 --checkpointing

``--rounds`` repeats every variant, interleaved (every other round in reverse order); the ratio
table uses the medians over rounds and the largest peak RSS. Numbers: docs/performance.md,
"Against the authors' code".
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT = "RESULT "
SETTINGS = ("default", "tuned")
CODES = ("ours", "theirs", "ours+ckpt")

#: the arguments experiments/psr/train.py gives BaseModel in its run loop (the trained models)
THEIR_PSR_ARGS: dict[str, Any] = dict(
    sdim=100, vdim=16, depth=5, r_cutoff=4.5, num_radial=32, model_type="eqgat", graph_level=True,
    num_elements=9, out_units=1, dropout=0.0, use_norm=True, aggr="mean", cross_ablate=False, no_feat_attn=False,
)


# --------------------------------------------------------------------------- child process

def _load_allocator() -> ModuleType:
    """Our ``eqgat/allocator.py`` under another name (stdlib only; no ``eqgat`` import)."""
    spec = importlib.util.spec_from_file_location("_bench_allocator", ROOT / "eqgat" / "allocator.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


#: the tensors of make_batch's Batch; written with torch.save, read back with weights_only=True
BATCH_KEYS = ("z", "pos", "edge_index", "batch", "y", "ptr")


def save_batch(batch: Any, path: str) -> None:
    """The batch's tensors, to a file every child reads (no pickled objects)."""
    import torch

    keys = set(batch.keys()) | {"ptr"}
    if keys != set(BATCH_KEYS):
        raise RuntimeError(f"make_batch's fields changed ({sorted(keys)}); update BATCH_KEYS / load_batch")
    torch.save({k: getattr(batch, k) for k in BATCH_KEYS}, path)


def load_batch(path: str) -> Any:
    """The Batch ``make_batch`` built, rebuilt from :func:`save_batch`'s file as make_batch builds it."""
    import torch
    from torch_geometric.data import Batch

    t = torch.load(path, weights_only=True)
    b = Batch(**{k: t[k] for k in BATCH_KEYS if k != "ptr"})
    b.ptr = t["ptr"]
    b._num_graphs = int(t["ptr"].numel() - 1)
    return b


def _ours(batch: Any, checkpointing: bool) -> tuple[Any, Any, dict[str, Any]]:
    sys.path[:0] = [str(ROOT)]
    import eqgat
    from eqgat.models import build_model, task_model_hparams
    from eqgat.tasks import TASKS

    model = build_model("eqgat", **task_model_hparams(TASKS["psr"], "eqgat", 4.5))
    info: dict[str, Any] = {"eqgat_from": os.path.dirname(eqgat.__file__)}
    if checkpointing:
        switch = getattr(model, "set_activation_checkpointing", None)
        if switch is None:
            info["unavailable"] = "this checkout's model has no set_activation_checkpointing"
        else:
            switch(True)
    return model, (lambda m: m(batch)), info


def _theirs(batch: Any, authors_src: str) -> tuple[Any, Any, dict[str, Any]]:
    import torch
    from torch_geometric.data import Data

    sys.path[:0] = [str(ROOT / "benchmarks")]
    import authors_shims

    authors_shims.install()
    sys.path.insert(0, authors_src)
    import eqgat  # theirs
    from experiments.model import BaseModel

    if not os.path.abspath(eqgat.__file__).startswith(os.path.abspath(authors_src)):
        raise RuntimeError(f"their eqgat expected under {authors_src}, got {eqgat.__file__}")
    model = BaseModel(**THEIR_PSR_ARGS)
    row, col = batch.edge_index
    pos64 = batch.pos.double()  # their transform: distances in float64, then the default dtype
    dist = (pos64[row] - pos64[col]).pow(2).sum(-1).sqrt().to(torch.get_default_dtype())
    data = Data(x=batch.z, pos=batch.pos, edge_index=batch.edge_index, edge_weights=dist, batch=batch.batch,
                y=batch.y)
    commit = Path(authors_src, "COMMIT")
    info = {"eqgat_from": os.path.dirname(eqgat.__file__),
            "authors_commit": commit.read_text().strip() if commit.exists() else "unknown"}
    # their PSRmodel.forward: model(data=data).view(-1) against data.y.view(-1)
    return model, (lambda m: m(data=data).view(data.y.shape)), info


def _rss_mib() -> float:
    """The resident size now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(args: argparse.Namespace) -> None:
    what = _load_allocator().tune()  # before torch allocates anything; EQGAT_MALLOC decides
    import torch

    torch.set_num_threads(args.threads)
    batch = load_batch(args.batch_file)
    torch.manual_seed(args.seed)
    if args.code == "theirs":
        model, forward, info = _theirs(batch, args.authors_src)
    else:
        model, forward, info = _ours(batch, args.code == "ours+ckpt")
    out: dict[str, Any] = {"allocator": what.split(";")[0], "threads": torch.get_num_threads(),
                           "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad), **info}
    if "unavailable" in out:
        print(RESULT + json.dumps(out), flush=True)
        return
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times: list[float] = []
    losses: list[float] = []
    rss: list[int] = []
    r0 = None
    for it in range(args.repeats + 1):
        if it == 1:
            r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(forward(model), batch.y)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
        del loss  # the step's autograd graph goes before the next forward, as in a training loop (see below)
        rss.append(round(_rss_mib()))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    assert r0 is not None
    out.update(median_step_s=statistics.median(times[1:]), min_step_s=min(times[1:]), warmup_s=times[0],
               user_s=r1.ru_utime - r0.ru_utime, system_s=r1.ru_stime - r0.ru_stime,
               minor_faults=r1.ru_minflt - r0.ru_minflt, self_peak_rss_mib=r1.ru_maxrss / 1024,
               rss_after_step_mib=rss, first_loss=losses[0])
    print(RESULT + json.dumps(out), flush=True)


# --------------------------------------------------------------------------- parent process

def run_variant(code: str, setting: str, args: argparse.Namespace, batch_file: str, log_dir: str) -> dict[str, Any]:
    """One variant in a fresh interpreter; its JSON line plus ``ru_maxrss`` from ``os.wait4``."""
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if setting == "default":
        env["EQGAT_MALLOC"] = "default"
    else:
        env.pop("EQGAT_MALLOC", None)
        env["GLIBC_TUNABLES"] = ":".join(_load_allocator().SMALL_CACHES_OFF)  # as start_tuned() restarts a command
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--code", code, "--batch-file", batch_file,
           "--authors-src", str(args.authors_src or ""), "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--seed", str(args.seed)]
    stderr_path = Path(log_dir, f"{code}-{setting}.stderr")
    load_before = os.getloadavg()[0]
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=str(ROOT))
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{code}/{setting} failed (exit {proc.returncode}):\n{stdout}\n{stderr_path.read_text()}")
    res = json.loads(lines[-1][len(RESULT):])
    res.update(code=code, setting=setting, peak_rss_mib=usage.ru_maxrss / 1024,
               load_before=load_before, load_after=os.getloadavg()[0])
    return res


def _row(r: dict[str, Any]) -> str:
    if "unavailable" in r:
        return f"| {r['code']} | {r['setting']} | {r['parameters']:,} | {r['unavailable']} | | | | | | |"
    return (f"| {r['code']} | {r['setting']} | {r['parameters']:,} | {r['median_step_s']:.2f} | {r['min_step_s']:.2f} | "
            f"{r['user_s']:.1f} | {r['system_s']:.1f} | {r['minor_faults']:,} | {r['peak_rss_mib']:,.0f} | "
            f"{r['load_before']:.1f} / {r['load_after']:.1f} |")


def summary(results: list[dict[str, Any]]) -> str:
    """Ratios ours / theirs (step time, CPU time, peak RSS) under the same setting and under each
    one's default (ours tuned, theirs glibc's); with several rounds, of the medians over rounds
    (times) and of the largest peak RSS."""
    agg: dict[tuple[str, str], dict[str, float]] = {}
    for key in {(r["code"], r["setting"]) for r in results if "unavailable" not in r}:
        rows = [r for r in results if (r["code"], r["setting"]) == key and "unavailable" not in r]
        agg[key] = {"step": statistics.median(r["median_step_s"] for r in rows),
                    "cpu": statistics.median(r["user_s"] + r["system_s"] for r in rows),
                    "rss": max(r["peak_rss_mib"] for r in rows)}
    lines = ["| ours / theirs | step time | CPU time (user + system) | peak RSS |", "|---|---:|---:|---:|"]
    pairs = [("both glibc defaults", ("ours", "default"), ("theirs", "default")),
             ("both tuned", ("ours", "tuned"), ("theirs", "tuned")),
             ("each one's default (ours tuned, theirs glibc)", ("ours", "tuned"), ("theirs", "default"))]
    for label, a, b in pairs:
        if a in agg and b in agg:
            lines.append(f"| {label} | {agg[a]['step'] / agg[b]['step']:.2f} | {agg[a]['cpu'] / agg[b]['cpu']:.2f} | "
                         f"{agg[a]['rss'] / agg[b]['rss']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--authors-src", help="folder exported by benchmarks/fetch_authors_code.sh (needed for 'theirs')")
    p.add_argument("--codes", nargs="+", choices=CODES, default=["ours", "theirs"])
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    p.add_argument("--checkpointing", action="store_true", help="also time ours with activation checkpointing")
    p.add_argument("--rounds", type=int, default=1, help="run every variant this many times, interleaved")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--atoms", type=int, default=1500)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write every result here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--code", choices=CODES, help=argparse.SUPPRESS)
    p.add_argument("--batch-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    codes = list(args.codes) + (["ours+ckpt"] if args.checkpointing and "ours+ckpt" not in args.codes else [])
    if "theirs" in codes and not args.authors_src:
        p.error("--authors-src is needed for 'theirs' (benchmarks/fetch_authors_code.sh makes it)")
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    import torch
    from bench_model_step import make_batch

    batch = make_batch("psr", args.batch_size, args.atoms, args.seed)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_authors_") as tmp:
        batch_file = os.path.join(tmp, "batch.pt")
        save_batch(batch, batch_file)
        print(f"batch: {batch.num_graphs} graphs, {batch.num_nodes:,} atoms, {batch.edge_index.shape[1]:,} edges "
              f"(seed {args.seed}); {args.threads} threads; warm-up + median of {args.repeats} steps; "
              f"python {sys.version.split()[0]}, torch {torch.__version__}")
        print("| code | allocator | parameters | step s (median) | min | user s | system s | minor faults | peak RSS MiB | "
              "load before / after |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        unavailable: set[str] = set()
        for rnd in range(args.rounds):
            order = [(c, s) for s in args.settings for c in codes]
            for code, setting in (order if rnd % 2 == 0 else order[::-1]):
                if code in unavailable:
                    continue
                res = run_variant(code, setting, args, batch_file, tmp)
                if "unavailable" in res:
                    unavailable.add(code)
                res["round"] = rnd
                results.append(res)
                print(_row(res), flush=True)
    print()
    print(summary(results))
    for r in results:
        details = ", ".join(f"{k} {r[k]}" for k in ("eqgat_from", "authors_commit", "allocator", "first_loss", "rss_after_step_mib")
                            if k in r)
        print(f"  {r['code']}/{r['setting']} round {r['round']}: {details}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
