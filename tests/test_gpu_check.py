"""``python -m eqgat gpu-check`` at tiny sizes on the CPU: every item runs (the CUDA ones say
so), its numbers are what they claim to be, and the rotation check would catch a model that is
not invariant."""
from __future__ import annotations

import json
import math

import pytest
import torch

from eqgat import gpu_check as gc
from eqgat.cli import main
from eqgat.tasks import get_task


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    work = tmp_path_factory.mktemp("gpu_check")
    out = work / "check.json"
    threads = torch.get_num_threads()
    try:
        assert main(["gpu-check", "--tiny", "--device", "cpu", "--threads", "1", "--work", str(work),
                     "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return json.loads(out.read_text())


def rows_of(report, item):
    return [r for r in report["rows"] if r["item"] == item]


def test_every_item_has_its_rows_and_cuda_rows_say_skipped(report):
    rows = report["rows"]
    assert [r["item"] for r in rows] == ["parity"] * 3 + ["bfloat16"] * 4 + ["throughput"] * 8 + ["real-run", "cuda-tests"]
    cuda_rows = [r for r in rows if r["device"] == "cuda"]
    assert {r["item"] for r in cuda_rows} == {"parity", "cuda-tests"} and all(r["status"] == gc.NO_CUDA for r in cuda_rows)
    throughput = rows_of(report, "throughput")
    assert [r["case"] for r in throughput] == [f"{t}, batch 2, {p}" for t in gc.THROUGHPUT_TASKS
                                               for p in ("float32", "bfloat16")]
    assert all(r["status"] == ("ok" if "float32" in r["case"] else gc.NO_CUDA) for r in throughput)
    assert report["environment"]["gpu"] is None and report["environment"]["device"] == "cpu"
    assert "not run" in report["environment"]["authors_code"]
    table = gc.format_table(report).splitlines()
    assert table[2] == "| item | case | device | result | status |" and len(table) == 4 + len(rows)


def test_parity_compares_two_precisions_within_tolerance(report):
    cpu = [r for r in rows_of(report, "parity") if r["device"] == "cpu"]
    assert [r["case"].rsplit(": ", 1)[1] for r in cpu] == ["forward", "gradients"]
    for r in cpu:
        # float32 against float64 differs (both sides really ran in their precision), but little
        assert 0 < r["max_rel_diff"] < gc.PARITY_TOLERANCE and r["status"] == "ok"


def test_rotation_errors_and_bfloat16_on_the_cpu_stand_in(report):
    step, err32, err16, gap = rows_of(report, "bfloat16")
    assert math.isfinite(step["loss"]) and step["status"] == gc.NO_CUDA
    assert err32["rotation_error"] < 1e-4 and err32["status"] == "ok"
    # autocast really ran: bfloat16 moves the output, by about bfloat16's resolution (~4e-3); the
    # rotation error stays of that order or below (it can be 0: both outputs round alike)
    assert 0 < gap["max_rel_diff"] < 0.05 and 0 <= err16["rotation_error"] < 0.05
    assert err16["minus_float32"] == pytest.approx(err16["rotation_error"] - err32["rotation_error"])


def test_rotation_error_catches_a_model_that_is_not_invariant():
    task = get_task("psr")
    section = gc.protocol_section(task)
    torch.manual_seed(0)
    from torch_geometric.data import Batch, Data

    graphs = []
    for n in (7, 9):
        pos = 3 * torch.randn(n, 3)
        ei = torch.combinations(torch.arange(n)).T
        graphs.append(Data(z=torch.randint(0, 9, (n,)), pos=pos, edge_index=torch.cat([ei, ei.flip(0)], 1)))
    batch = Batch.from_data_list(graphs)
    model = gc.task_model(task, section).eval()
    R = gc.random_rotation(3)
    assert torch.allclose(R @ R.T, torch.eye(3, dtype=R.dtype), atol=1e-12) and torch.det(R) == pytest.approx(1.0)
    assert not torch.allclose(R, gc.random_rotation(4)) and (R - torch.eye(3, dtype=R.dtype)).abs().max() > 0.1
    assert gc.rotation_error(model, batch, R)[0] < 1e-5
    # the first atom's x coordinate leaks into the output, at 1 % of its scale: caught
    leak = lambda b: model(b) + 1e-2 * b.pos[b.ptr[:-1], :1]
    assert gc.rotation_error(leak, batch, R)[0] > 1e-3


def test_max_rel_diff():
    a = torch.tensor([1.0, -4.0, 2.0], dtype=torch.float64)
    assert gc.max_rel_diff([a], [a + torch.tensor([0.0, 0.0, 4e-3])]) == pytest.approx(1e-3)
    assert gc.max_rel_diff([a, None], [a, None]) == 0.0
    assert gc.max_rel_diff([a, a], [a, None]) == math.inf


def test_throughput_numbers_and_epoch_estimates(report):
    sizes = {"triangle": 40_000, "psr": 25_400, "res": 3_700_000, "ppi": 87_300 * 20}
    for r in rows_of(report, "throughput"):
        if r["status"] != "ok":
            continue
        task = r["case"].split(",")[0]
        assert r["steps"] == gc.TINY.steps and r["seconds"] > 0 and r["peak_memory_mib"] is None
        assert r["graphs_per_s"] == pytest.approx(2 * r["steps"] / r["seconds"])
        assert r["train_split"] == sizes[task]
        assert r["epoch_estimate_s"] == pytest.approx(r["train_split"] / r["graphs_per_s"])


def test_real_run_trains_one_epoch_through_the_cli(report):
    (run,) = rows_of(report, "real-run")
    assert run["status"] == gc.NO_CUDA and run["device"] == "cpu"
    assert run["train_graphs"] == 24  # 80 % of the 30 tiny clouds
    assert run["wall_s"] > run["epoch_s"] > 0 and math.isfinite(run["val_loss"])
