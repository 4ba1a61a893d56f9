"""A command's CPU thread count holds after Numba's kernels start (torch and Numba share OpenMP).

When Numba's OpenMP pool starts after torch has run, it sets torch's thread count to Numba's (every
CPU by default): a 1-thread command ran torch on all CPUs after its first radius graph, and two
1-thread ranks on two cores each ran two threads (2-rank throughput 0.3-0.5 of one process).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs: with one, every count is 1")

SCRIPT = """
import json, sys
import numpy as np
import torch
{before}
from eqgat.cli import set_threads
set_threads(1)
torch.ones(10**6).sum()  # torch works first (a model, a batch): its OpenMP pool is in use
from preprocess.neighbors import radius_graph_batch
import numba.np.ufunc.parallel as pool
pos = np.random.default_rng(0).uniform(0.0, 12.6, size=(200, 3))
radius_graph_batch(pos, np.array([0, 100, 200]), 4.5)
print(json.dumps({{"torch": torch.get_num_threads(), "pool_started": bool(pool._is_initialized)}}))
"""

NUMBA_IMPORTED = """
from preprocess.neighbors import radius_graph_batch  # Numba imported, its pool not started yet
"""

NUMBA_RUNNING = """
from preprocess.neighbors import radius_graph_batch
radius_graph_batch(np.zeros((2, 3)), np.array([0, 2]), 4.5)  # Numba's pool started with every CPU
"""


def run_fresh(before: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(before=before)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("before", ["", NUMBA_IMPORTED, NUMBA_RUNNING],
                         ids=["numba-imported-later", "numba-imported-first", "numba-running-first"])
def test_one_thread_stays_one_after_a_radius_graph(before):
    result = run_fresh(before)
    assert result["pool_started"], "the radius graph did not start Numba's parallel pool: the test proves nothing"
    assert result["torch"] == 1
