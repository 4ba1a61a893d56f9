"""The results table: mean ± std over seeds, the paper's numbers and parameter counts beside ours."""
import csv
import json

import numpy as np
import pytest

from cli_runner import run_module
from eqgat.aggregate import aggregate


def write_run(path, task, model, seed, test, num_parameters=1000):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": task, "model": model, "seed": seed, "test": test, "num_parameters": num_parameters}))
    (path.parent / "log.csv").write_text("epoch,lr,train_loss,val_loss,selection,val_selection,seconds\n"
                                         "1,0.001,2.0,3.0,loss,3.0,1\n2,0.001,1.0,1.5,loss,1.5,1\n")
    return str(path)


def test_table_has_ours_beside_the_paper(tmp_path):
    files = [
        write_run(tmp_path / "a" / "metrics.json", "triangle", "eqgat", 0, {"mse": 5.0}),
        write_run(tmp_path / "b" / "metrics.json", "triangle", "eqgat", 1, {"mse": 7.0}),
        write_run(tmp_path / "c" / "metrics.json", "triangle", "schnet", 0, {"mse": 30.0}),
        write_run(tmp_path / "d" / "metrics.json", "lba", "eqgat_nocross", 0, {"rmse": 1.5, "pearson": 0.5, "spearman": 0.4}),
    ]
    md, out_csv, png = tmp_path / "r.md", tmp_path / "r.csv", tmp_path / "c.png"
    aggregate(files, {("triangle", "eqgat", 0): str(tmp_path / "a" / "log.csv")}, str(md), str(out_csv), str(png))
    rows = {(r["task"], r["model"], r["metric"]): r for r in csv.DictReader(open(out_csv))}
    eq = rows[("triangle", "eqgat", "mse")]
    assert float(eq["mean"]) == 6.0 and float(eq["std"]) == pytest.approx(np.std([5.0, 7.0], ddof=1))
    assert float(eq["paper_mean"]) == 6.003 and eq["paper_num_parameters"] == "27400"
    assert rows[("triangle", "schnet", "mse")]["paper_num_parameters"] == "16800"
    # Table 4 ablation row for LBA
    assert float(rows[("lba", "eqgat_nocross", "rmse")]["paper_mean"]) == 1.458
    text = md.read_text()
    assert "| EQGAT | 2 | 6.000 ± 1.414 | 6.003 ± 0.432 | 1,000 | 27,400 |" in text
    # each metric carries its own direction: LBA's RMSE falls, its correlations rise
    assert {m: rows[("lba", "eqgat_nocross", m)]["direction"] for m in ("rmse", "pearson", "spearman")} == \
        {"rmse": "lower", "pearson": "higher", "spearman": "higher"}
    assert "## lba: Ligand binding affinity (ATOM3D LBA) (rmse ↓, pearson ↑, spearman ↑)" in text
    assert "| model | n | rmse ↓ (ours) | pearson ↑ (ours) | spearman ↑ (ours) |" in text
    assert "| SEGNN (paper only) | – | – | 3.875 ± 0.879 | – | 60,900 |" in text
    assert "GVP-GNN (paper only)" in text and "CNN (ATOM3D) (paper only)" in text
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_params_command_prints_counts_beside_the_paper():
    proc = run_module("eqgat", "params", "--model", "eqgat", "schnet")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "triangle      27,411    27,411    27,400" in out
    assert "psr          384,709   384,709   383,000" in out
    assert "lba          237,933   237,933   238,000" in out
    assert "triangle      16,483       n/a    16,800" in out
