"""``python -m eqgat gpu-check``: what a GPU node does with this project, in a few minutes.

Five items, one table (and ``--out`` JSON), all through the project's own code: the task
declarations and their protocols, ``build_model``/``task_model_hparams``, shards built by
``build_task_shards`` (synthetic records of realistic size from :mod:`preprocess.synthetic`
read by each task's own reader; Triangle from its generator), the task's dataset class,
``make_loader`` and ``train_one_epoch`` (loss, clipping, Adam, bfloat16 autocast):

1. ``parity``: EQGAT (the PSR preset) forward and parameter gradients on one PSR batch, CUDA
   float32 against CPU float32; CPU float32 against CPU float64 beside it, for scale;
2. ``bfloat16``: one training step under autocast, then the output's rotation error
   (invariant outputs: ``max|f(Rx) - f(x)| / max|f(x)|``) in float32 and in bfloat16, and
   the bfloat16 output's distance from the float32 one;
3. ``throughput``: training steps (loading, forward, backward, clipping, Adam) of Triangle,
   PSR, RES and PPI at their protocols' batch sizes, float32 and bfloat16: graphs/s, peak
   CUDA memory, and an epoch estimate from the training split's size;
4. ``real-run``: ``python -m eqgat train`` (its ``main``, in this process) for one epoch of the
   paper's Triangle (50,000 clouds, 40,000 for training);
5. ``cuda-tests``: ``pytest -m cuda`` in the checkout's ``tests/``.

Without CUDA the CUDA rows say ``skipped: no CUDA``; the same code still runs on the CPU where
that is cheap (``--tiny`` makes every size small; the test suite runs it so).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

NO_CUDA = "skipped: no CUDA"
ITEMS = ("parity", "bfloat16", "throughput", "real-run", "cuda-tests")
THROUGHPUT_TASKS = ("triangle", "psr", "res", "ppi")
#: the issue's expectation for CUDA vs CPU float32 (max relative difference)
PARITY_TOLERANCE = 1e-4
#: without CUDA the real run runs on the CPU up to this many clouds (seconds to a minute)
CPU_REAL_RUN_MAX = 1000
#: ATOM3D training splits (graphs per epoch before PPI's pair drawing): PSR split-by-year 25,400
#: decoys; RES split by CATH topology about 3.7 M environments; PPI DIPS-split about 87,300
#: complexes. Triangle's comes from its protocol (80 % of 50,000 clouds).
ATOM3D_TRAIN_SIZES = {"psr": 25_400, "res": 3_700_000, "ppi": 87_300}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big the check's data are; ``batch`` None means the protocols' batch sizes."""

    batch: Mapping[str, int] | None = None
    parity_graphs: int = 4  # PSR decoys of the parity and bfloat16 batch (its CPU side took ~0.8 GiB per decoy)
    steps: int = 5  # timed training steps per throughput row (after one warm-up step)
    psr_heavy: tuple[int, int] = (1000, 2000)  # heavy atoms per PSR decoy
    protein_residues: tuple[int, int] = (150, 300)  # residues of a RES protein, of a PPI partner
    res_envs: int = 40  # environments per RES protein
    triangle_points: int = 100
    real_clouds: int = 50_000  # clouds of the real Triangle run (80 % train)

    def batch_size(self, task) -> int:
        return int(self.batch[task.name]) if self.batch else int(task.protocol["train"]["batch_size"])


FULL = Sizes()
TINY = Sizes(batch={t: 2 for t in THROUGHPUT_TASKS}, parity_graphs=2, steps=2, psr_heavy=(40, 60), protein_residues=(12, 18),
             res_envs=4, triangle_points=20, real_clouds=30)


# -- measurements -------------------------------------------------------------------------------

def max_rel_diff(reference: Sequence[torch.Tensor | None], other: Sequence[torch.Tensor | None]) -> float:
    """Largest ``max|a - b| / max|a|`` over pairs of tensors (a the reference); a pair with one
    side missing (a gradient that is None on one side only) is infinitely far."""
    worst = 0.0
    for a, b in zip(reference, other, strict=True):
        if a is None and b is None:
            continue
        if a is None or b is None:
            return math.inf
        a, b = a.detach().double().cpu(), b.detach().double().cpu()
        scale = float(a.abs().max()) if a.numel() else 0.0
        diff = float((a - b).abs().max()) if a.numel() else 0.0
        worst = max(worst, diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf))
    return worst


def random_rotation(seed: int, dtype=torch.float64) -> torch.Tensor:
    """A proper rotation (det +1) drawn uniformly: QR of a Gaussian matrix, signs fixed."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def rotated(batch, rotation: torch.Tensor):
    """A copy of the batch with every position rotated (``pos @ R^T``)."""
    out = batch.clone()
    out.pos = batch.pos @ rotation.to(batch.pos.device, batch.pos.dtype).T
    return out


@torch.no_grad()
def rotation_error(model: Callable, batch, rotation: torch.Tensor, amp: bool = False) -> tuple[float, torch.Tensor]:
    """``max|f(Rx) - f(x)| / max|f(x)|`` of an invariant output (every readout of the tasks is
    invariant), and ``f(x)`` in float32; `amp`: under bfloat16 autocast."""
    from eqgat.device import autocast

    turned = rotated(batch, rotation)  # in float32: autocast would round the rotated positions to bfloat16
    with autocast(batch.pos.device, amp):
        out = model(batch).float()
        out_rot = model(turned).float()
    return max_rel_diff([out], [out_rot]), out


def forward_backward(model: torch.nn.Module, batch, loss_fn) -> list[torch.Tensor | None]:
    """The output and every parameter's gradient of one loss evaluation."""
    model.zero_grad(set_to_none=True)
    out = model(batch)
    loss_fn(out, batch.y).backward()
    return [out.detach()] + [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- data: the project's shards of synthetic records ----------------------------------------------

def protocol_section(task) -> dict[str, Any]:
    from eqgat.tasks.config import task_section

    return task_section(task, None)


def _records_needed(task_name: str, graphs: int, sizes: Sizes) -> int:
    if task_name == "res":
        return math.ceil(graphs / sizes.res_envs)
    if task_name == "ppi":  # 2 pairs per listed contact (up to 10), a few contacts per synthetic complex
        return max(1, graphs // 4)
    return graphs


def record_maker(task_name: str, sizes: Sizes, seed: int) -> Callable[[int], dict]:
    from preprocess import synthetic

    lo, hi = sizes.protein_residues
    if task_name == "psr":
        return functools.partial(synthetic.psr_record, seed=seed, min_heavy=sizes.psr_heavy[0],
                                 max_heavy=sizes.psr_heavy[1])
    if task_name == "res":
        return functools.partial(synthetic.res_record, seed=seed, envs=sizes.res_envs, min_res=lo, max_res=hi)
    if task_name == "ppi":
        return functools.partial(synthetic.ppi_record, seed=seed, min_res=lo, max_res=hi)
    raise ValueError(f"no synthetic records for task {task_name!r}")


def triangle_shards(out: Path, clouds: int, points: int, section: Mapping[str, Any]) -> Path:
    """Triangle clouds from the generator (the protocol's seed, radius, spacing), as shards."""
    from eqgat.tasks import get_task
    from preprocess.task_shards import build_task_shards
    from preprocess.triangle import generate_triangle_clouds, write_raw

    data = section["data"]
    raw = out.parent / f"{out.name}.raw.h5"
    write_raw(raw, generate_triangle_clouds(clouds, data["seed"], num_points=points, radius=data["radius"],
                                            min_dist=data["min_dist"]))
    build_task_shards(get_task("triangle"), raw, out, cutoff=section["graph"]["cutoff"],
                      max_degree=section["graph"]["max_degree"], shard_size=5000, progress=False)
    return out


def task_shards(task, out: Path, graphs: int, sizes: Sizes, section: Mapping[str, Any], seed: int = 0) -> Path:
    """Shards holding at least `graphs` training graphs of the task (PPI: complexes enough for
    about that many pairs), built by ``build_task_shards``."""
    from preprocess.synthetic import SyntheticSource
    from preprocess.task_shards import build_task_shards

    if task.name == "triangle":
        from preprocess.triangle import SPLIT_FRACTIONS

        return triangle_shards(out, math.ceil(graphs / SPLIT_FRACTIONS[0]) + 10, sizes.triangle_points, section)
    records = _records_needed(task.name, graphs, sizes)
    source = SyntheticSource(record_maker(task.name, sizes, seed), {"train": records})
    build_task_shards(dataclasses.replace(task, source=source), out, out, cutoff=section["graph"]["cutoff"],
                      max_degree=section["graph"].get("max_degree"), shard_size=64, progress=False)
    return out


def train_dataset(task, shards: Path, section: Mapping[str, Any], seed: int = 0):
    """The task's training split, as ``python -m eqgat train`` opens it."""
    from eqgat.cli import split_dataset

    return split_dataset(task, shards / "manifest.json", "train", section, seed)


def first_batch(dataset, batch_size: int, device: torch.device):
    from eqgat.train.loop import make_loader

    return next(iter(make_loader(dataset, batch_size, list(range(min(batch_size, len(dataset)))), 0))).to(device)


def task_model(task, section: Mapping[str, Any], seed: int = 0) -> torch.nn.Module:
    from eqgat.models import build_model, task_model_hparams

    torch.manual_seed(seed)
    return build_model("eqgat", **task_model_hparams(task, "eqgat", section["graph"]["cutoff"]))


# -- the items ---------------------------------------------------------------------------------------

def row(item: str, case: str, device: str, status: str, result: str, **values: Any) -> dict[str, Any]:
    return {"item": item, "case": case, "device": device, "status": status, "result": result, **values}


def check_parity(psr_batch, task, section, cuda: bool) -> list[dict]:
    """CPU float32 vs CPU float64 (always) and CUDA float32 vs CPU float32."""
    from eqgat.tasks.losses import get_loss

    loss_fn = get_loss(section["train"]["loss"])
    batch = psr_batch.to("cpu")
    model = task_model(task, section).train()
    ref32 = forward_backward(model, batch, loss_fn)
    model64 = task_model(task, section).double().train()
    model64.load_state_dict(model.state_dict())
    batch64 = batch.clone()
    batch64.pos = batch64.pos.double()
    ref64 = forward_backward(model64, batch64, loss_fn)
    what = f"PSR batch of {batch.num_graphs} ({batch.num_nodes:,} atoms, {batch.edge_index.shape[1]:,} edges)"

    def rows_for(device: str, reference, other, status_fn, label) -> list[dict]:
        fwd, grad = max_rel_diff(reference[:1], other[:1]), max_rel_diff(reference[1:], other[1:])
        return [row("parity", f"{label}, {what}: {part}", device, status_fn(v), f"max rel diff {v:.2e}",
                    max_rel_diff=v, graphs=batch.num_graphs)
                for part, v in (("forward", fwd), ("gradients", grad))]

    def verdict(v: float) -> str:
        return "ok" if v <= PARITY_TOLERANCE else f"FAIL: above {PARITY_TOLERANCE:g}"

    rows = rows_for("cpu", ref64, ref32, verdict, "cpu float32 vs cpu float64")
    if not cuda:
        rows.append(row("parity", f"cuda float32 vs cpu float32, {what}", "cuda", NO_CUDA, "-"))
        return rows
    model_cuda = task_model(task, section).to("cuda").train()
    model_cuda.load_state_dict(model.state_dict())
    return rows + rows_for("cuda", ref32, forward_backward(model_cuda, batch.to("cuda"), loss_fn), verdict,
                           "cuda float32 vs cpu float32")


def check_bfloat16(psr_batch, task, section, device: torch.device, seed: int = 0) -> list[dict]:
    """One autocast training step, then the rotation error in float32 and bfloat16."""
    from eqgat.device import mixed_precision_available
    from eqgat.tasks.losses import get_loss
    from eqgat.train.loop import TrainSettings, train_one_epoch
    from eqgat.train.schedule import LearningRate

    settings = TrainSettings.from_section(section["train"])
    model = task_model(task, section).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    schedule = LearningRate(optimizer, settings, 1, higher_is_better=False)
    amp_ok = mixed_precision_available(device, True)
    if device.type == "cuda" and not amp_ok:  # a GPU without bfloat16: nothing to run
        return [row("bfloat16", "autocast training step (PSR)", "cuda", "skipped: GPU without bfloat16", "-")]
    status = "ok" if amp_ok else NO_CUDA  # without CUDA: the CPU's autocast stands in
    try:
        loss, _ = train_one_epoch(model, [psr_batch], get_loss(settings.loss), optimizer, schedule,
                                  settings.clip_norm, device, progress=False, amp=True)
    except (RuntimeError, FloatingPointError) as exc:
        return [row("bfloat16", "autocast training step (PSR)", device.type, f"FAIL: {exc}", "-")]
    rotation = random_rotation(seed)
    model.eval()
    err32, out32 = rotation_error(model, psr_batch, rotation)
    err16, out16 = rotation_error(model, psr_batch, rotation, amp=True)
    gap = max_rel_diff([out32], [out16])
    step_status = status if math.isfinite(loss) else "FAIL: non-finite loss"
    return [
        row("bfloat16", "autocast training step (PSR)", device.type, step_status, f"loss {loss:.4g}", loss=loss),
        row("bfloat16", "rotation error, float32", device.type, "ok" if err32 <= PARITY_TOLERANCE else
            f"FAIL: above {PARITY_TOLERANCE:g}", f"{err32:.2e}", rotation_error=err32),
        row("bfloat16", "rotation error, bfloat16 autocast", device.type, status, f"{err16:.2e} "
            f"({err16 - err32:+.2e} vs float32)", rotation_error=err16, minus_float32=err16 - err32),
        row("bfloat16", "bfloat16 output vs float32 output", device.type, status, f"max rel diff {gap:.2e}",
            max_rel_diff=gap),
    ]


def train_split_size(task, section: Mapping[str, Any]) -> tuple[int, str]:
    """Graphs of one training epoch at the paper's scale, and what they are."""
    if task.name == "triangle":
        from preprocess.triangle import split_assignment

        data = section["data"]
        return int((split_assignment(data["num_clouds"], data["seed"]) == 0).sum()), "clouds"
    if task.name == "ppi":
        from eqgat.data.pairs import PairSampling, num_drawn

        big = 10**6  # complexes with plenty of listed pairs and residues: the most pairs drawn
        per_complex = sum(num_drawn(big, big, big, PairSampling.from_section(section.get("pairs"))))
        return ATOM3D_TRAIN_SIZES["ppi"] * per_complex, f"pairs (at most {per_complex} per complex)"
    return ATOM3D_TRAIN_SIZES[task.name], "graphs"


def time_training(dataset, model, section, device: torch.device, batch_size: int, steps: int, amp: bool) -> dict:
    """One warm-up step, then `steps` timed steps of ``train_one_epoch`` over the dataset."""
    from eqgat.tasks.losses import get_loss
    from eqgat.train.loop import TrainSettings, make_loader, train_one_epoch
    from eqgat.train.schedule import LearningRate

    settings = TrainSettings.from_section(section["train"])
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    schedule = LearningRate(optimizer, settings, steps + 1, higher_is_better=False)
    loss_fn = get_loss(settings.loss)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(1)
    order = [i % len(dataset) for i in range(batch_size * (steps + 1))]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    args = (loss_fn, optimizer, schedule, settings.clip_norm, device, False, amp)
    train_one_epoch(model, make_loader(dataset, batch_size, order[:batch_size], 0), *args)
    _sync(device)
    start = time.perf_counter()
    loss, done = train_one_epoch(model, make_loader(dataset, batch_size, order[batch_size:], 0), *args)
    _sync(device)
    seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"steps": done, "seconds": seconds, "graphs_per_s": batch_size * done / seconds,
            "step_ms": 1e3 * seconds / done, "peak_memory_mib": memory, "loss": loss}


def check_throughput(tasks: Sequence[str], sizes: Sizes, work: Path, device: torch.device,
                     psr_data=None) -> list[dict]:
    from eqgat.device import mixed_precision_available
    from eqgat.tasks import get_task

    rows = []
    for name in tasks:
        task = get_task(name)
        section = protocol_section(task)
        batch = sizes.batch_size(task)
        dataset = psr_data if (name == "psr" and psr_data is not None) else train_dataset(
            task, task_shards(task, work / f"{name}-graphs", batch * (sizes.steps + 1), sizes, section), section)
        split, unit = train_split_size(task, section)
        for precision in ("float32", "bfloat16"):
            case = f"{name}, batch {batch}, {precision}"
            amp = precision == "bfloat16"
            if amp and not mixed_precision_available(device, True):
                rows.append(row("throughput", case, device.type, NO_CUDA if device.type != "cuda"
                                else "skipped: GPU without bfloat16", "-"))
                continue
            t = time_training(dataset, task_model(task, section), section, device, batch, sizes.steps, amp)
            epoch_s = split / t["graphs_per_s"]
            memory = "n/a" if t["peak_memory_mib"] is None else f"{t['peak_memory_mib']:,.0f} MiB"
            rows.append(row("throughput", case, device.type, "ok" if math.isfinite(t["loss"]) else "FAIL: non-finite loss",
                            f"{t['graphs_per_s']:,.1f} graphs/s, {t['step_ms']:,.0f} ms/step, peak {memory}, "
                            f"epoch of {split:,} {unit} ≈ {format_duration(epoch_s)}",
                            **t, train_split=split, train_unit=unit, epoch_estimate_s=epoch_s))
    return rows


def check_real_run(sizes: Sizes, work: Path, device: torch.device, threads: int) -> list[dict]:
    """One epoch of the paper's Triangle through ``python -m eqgat train`` (its main)."""
    from eqgat import cli
    from eqgat.tasks import get_task
    from eqgat.train.loop import RunPaths
    from preprocess.shards import read_manifest

    task = get_task("triangle")
    section = protocol_section(task)
    section["data"] = {**section["data"], "num_clouds": sizes.real_clouds, "num_points": sizes.triangle_points}
    graphs = triangle_shards(work / "triangle-real-graphs", sizes.real_clouds, sizes.triangle_points, section)
    run_dir = work / "triangle-real-run"
    argv = ["train", "--task", "triangle", "--data", str(graphs), "--out", str(run_dir), "--device", device.type,
            "--threads", str(threads), "--section", json.dumps(section), "--epochs", "1", "--no-progress"]
    start = time.perf_counter()
    rc = cli.main(argv)
    wall = time.perf_counter() - start
    case = f"python -m eqgat train: 1 epoch of Triangle, {sizes.real_clouds:,} clouds"
    if rc != 0:
        return [row("real-run", case, device.type, f"FAIL: exit status {rc}", "-", wall_s=wall)]
    log = RunPaths(run_dir).log_csv.read_text().splitlines()
    epoch = dict(zip(log[0].split(","), log[1].split(",")))
    n_train = read_manifest(graphs / "manifest.json")["splits"]["train"]["num_graphs"]
    status = "ok" if device.type == "cuda" else NO_CUDA
    return [row("real-run", case, device.type, status,
                f"wall {wall:.1f} s (epoch {float(epoch['seconds']):.1f} s: {n_train:,} training + validation), "
                f"val loss {float(epoch['val_loss']):.4g}", wall_s=wall, epoch_s=float(epoch["seconds"]),
                train_graphs=n_train, val_loss=float(epoch["val_loss"]))]


def check_cuda_tests(cuda: bool) -> list[dict]:
    """``pytest -m cuda`` in the checkout's tests folder."""
    case = "pytest -m cuda"
    tests = Path(__file__).resolve().parents[1] / "tests"
    if not cuda:
        return [row("cuda-tests", case, "cuda", NO_CUDA, "-")]
    if not tests.is_dir():
        return [row("cuda-tests", case, "cuda", f"skipped: no tests folder at {tests}", "-")]
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", str(tests)],
                              cwd=tests.parent, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return [row("cuda-tests", case, "cuda", "FAIL: still running after 600 s", "-")]
    last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    status = "ok" if proc.returncode == 0 else f"FAIL: pytest exit status {proc.returncode}"
    return [row("cuda-tests", case, "cuda", status, last, returncode=proc.returncode)]


# -- the whole check ---------------------------------------------------------------------------------

def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def environment(device: torch.device, sizes: Sizes, threads: int) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": platform.python_version(),
        "torch": torch.__version__, "cuda_runtime": torch.version.cuda, "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "bfloat16": bool(cuda and torch.cuda.is_bf16_supported()),
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "torch_threads": threads,
        "sizes": dataclasses.asdict(sizes),
        "authors_code": "not run: the comparison with Bayer-Group/eqgat is not part of this check",
    }


@contextmanager
def _workdir(work: Path | None) -> Iterator[Path]:
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        yield work
        return
    with tempfile.TemporaryDirectory(prefix="eqgat-gpu-check-") as tmp:
        yield Path(tmp)


def run_check(sizes: Sizes = FULL, device: torch.device | None = None, work: Path | None = None,
              items: Sequence[str] = ITEMS, tasks: Sequence[str] = THROUGHPUT_TASKS,
              threads: int | None = None) -> dict[str, Any]:
    """Run the chosen items; returns ``{"environment": ..., "rows": [...]}``."""
    from eqgat.device import select_device
    from eqgat.tasks import get_task

    device = device or select_device("auto")
    threads = threads or torch.get_num_threads()
    cuda = device.type == "cuda"
    rows: list[dict] = []
    with _workdir(work) as tmp:
        psr = get_task("psr")
        section = protocol_section(psr)
        psr_data = None
        if {"parity", "bfloat16"} & set(items) or ("psr" in tasks and "throughput" in items):
            batch = sizes.batch_size(psr)
            psr_data = train_dataset(psr, task_shards(psr, tmp / "psr-graphs", batch * (sizes.steps + 1), sizes,
                                                      section), section)
            psr_batch = first_batch(psr_data, sizes.parity_graphs, torch.device("cpu"))
        if "parity" in items:
            rows += check_parity(psr_batch, psr, section, cuda)
        if "bfloat16" in items:
            rows += check_bfloat16(psr_batch.to(device), psr, section, device)
        if "throughput" in items:
            rows += check_throughput(tasks, sizes, tmp, device, psr_data)
        if "real-run" in items:
            if cuda or sizes.real_clouds <= CPU_REAL_RUN_MAX:
                rows += check_real_run(sizes, tmp, device, threads)
            else:
                rows.append(row("real-run", f"1 epoch of Triangle, {sizes.real_clouds:,} clouds", "cuda", NO_CUDA, "-"))
        if "cuda-tests" in items:
            rows += check_cuda_tests(cuda)
        if psr_data is not None:
            psr_data.close()
    env = environment(device, sizes, threads)
    env["peak_rss_mib"] = round(peak_rss_mib(), 1)
    return {"environment": env, "rows": rows}


def format_table(report: Mapping[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# eqgat gpu-check: torch {env['torch']} (CUDA {env['cuda_runtime']}), device {env['device']}, "
             f"GPU {env['gpu'] or 'none'}, {env['cpus']} CPUs, {env['torch_threads']} torch threads, "
             f"peak RSS {env['peak_rss_mib']:,.0f} MiB",
             "", "| item | case | device | result | status |", "|---|---|---|---|---|"]
    lines += [f"| {r['item']} | {r['case']} | {r['device']} | {r['result']} | {r['status']} |" for r in report["rows"]]
    return "\n".join(lines)


def add_parser(sub) -> None:
    """The ``gpu-check`` subcommand of ``python -m eqgat``."""
    p = sub.add_parser("gpu-check", help="check a GPU node: CUDA parity, bfloat16, training speed and memory, "
                                         "a real epoch, the CUDA tests")
    p.add_argument("--out", default=None, help="write the table as JSON here")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (seconds on a CPU; what the test suite runs)")
    p.add_argument("--items", nargs="+", default=list(ITEMS), choices=ITEMS)
    p.add_argument("--tasks", nargs="+", default=list(THROUGHPUT_TASKS), choices=THROUGHPUT_TASKS,
                   help="tasks of the throughput item")
    p.add_argument("--steps", type=int, default=None, help="timed training steps per throughput row")
    p.add_argument("--real-clouds", type=int, default=None,
                   help="Triangle clouds of the real run (default: the paper's 50,000; 80 %% train)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--work", default=None, help="folder for the synthetic shards and the run (default: a temporary one)")
    p.set_defaults(func=cmd_gpu_check)


def cmd_gpu_check(args: argparse.Namespace) -> None:
    from eqgat.device import select_device
    from preprocess.atomic import write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = TINY if args.tiny else FULL
    overrides = {k: v for k, v in (("steps", args.steps), ("real_clouds", args.real_clouds)) if v is not None}
    sizes = dataclasses.replace(sizes, **overrides)
    if sizes.steps < 1 or sizes.real_clouds < 10:
        raise ValueError("--steps must be >= 1 and --real-clouds >= 10")
    report = run_check(sizes, select_device(args.device), Path(args.work) if args.work else None,
                       args.items, args.tasks, args.threads)
    print(format_table(report), flush=True)
    if args.out:
        write_json_atomic(Path(args.out), report)
    failed = [f"{r['item']}: {r['case']}" for r in report["rows"] if r["status"].startswith("FAIL")]
    if failed:
        raise RuntimeError(f"gpu-check: {len(failed)} row(s) failed: {'; '.join(failed)}")
