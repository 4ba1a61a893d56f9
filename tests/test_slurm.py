"""The SLURM profile and Dask on SLURM, against a real one-node SLURM on this machine.

The cluster tests need root and `slurm-wlm` + `munge` (`.ci/install-slurm` installs them) and
are skipped with that hint otherwise; the profile checks at the top run everywhere.
"""
from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from slurm_cluster import SlurmCluster, unavailable_reason
from workflow_helpers import REPO, TINY_CONFIG, copy_repo, snakemake, write_config

SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
PLUGIN_HINT = "pip install snakemake-executor-plugin-slurm"
RULES = ("generate_triangle", "build_graphs", "train", "evaluate", "aggregate")


# --------------------------------------------------------------------------------------------
# The profiles (no cluster needed)
# --------------------------------------------------------------------------------------------
def test_slurm_profile_sets_every_rule():
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"
    assert {"slurm_partition", "slurm_account", "runtime", "mem_mb"} <= set(profile["default-resources"])
    per_rule = profile["set-resources"]
    assert set(RULES) <= set(per_rule)
    for rule in RULES:
        assert per_rule[rule]["runtime"] > 0 and per_rule[rule]["mem_mb"] > 0, rule
    assert per_rule["train"]["gpu"] == 1 and per_rule["evaluate"]["gpu"] == 1
    assert not any("gpu" in per_rule[r] for r in set(RULES) - {"train", "evaluate"})
    # the downloads' runtimes come from the declared archive sizes, not from a table here
    assert not any(rule.startswith("download_") for rule in per_rule)


def test_download_runtimes_come_from_the_declared_sizes(tmp_path):
    """Under the SLURM profile each download job asks for the runtime its archives' declared
    sizes give (RES, 31.6 GB: 493 min; PSR, 2 GB: 256 min), over the profile's default."""
    from eqgat.tasks import archives
    from preprocess.download import download_minutes

    declared = archives()
    assert download_minutes(declared["res"]) == 493 and download_minutes(declared["psr"]) == 256
    proc = snakemake(tmp_path, "-n", "-s", str(REPO / "Snakefile"), "--configfile", str(REPO / "config" / "config.yaml"),
                     str(REPO / "config" / "paper.yaml"),
                     "--workflow-profile", str(SLURM_PROFILE.parent), "--until", *(f"download_{d}" for d in declared))
    runtimes = dict(re.findall(r"rule (download_\w+):.*?resources: .*?runtime=(\d+)", proc.stdout, re.S))
    assert runtimes == {f"download_{d}": str(download_minutes(a)) for d, a in declared.items()}


@pytest.mark.parametrize("argv, capped", [
    (["--cores", "2", "all"], True),
    (["--executor", "local", "all"], True),
    (["--profile", "workflow/profiles/slurm", "all"], False),
    (["--profile=workflow/profiles/slurm", "all"], False),
    (["--workflow-profile", "workflow/profiles/slurm", "all"], False),
    (["-e", "slurm", "all"], False),
    (["--profile", "workflow/profiles/slurm", "--executor", "local", "all"], True),
])
def test_gpu_cap_only_for_local_runs(argv, capped, monkeypatch, capsys):
    """The default workflow profile caps GPU jobs at 1 on one machine, but never a cluster run
    (it is loaded beside `--profile` profiles and wins over them on shared keys)."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason=PLUGIN_HINT)
    from snakemake.cli import parse_args

    monkeypatch.chdir(REPO)
    monkeypatch.delenv("SNAKEMAKE_PROFILE", raising=False)
    monkeypatch.setattr(sys, "argv", ["snakemake", *argv])
    _, args = parse_args(argv)
    resources = {k: getattr(v, "value", v) for k, v in (args.resources or {}).items()}
    assert resources == ({"gpu": 1} if capped else {})


def test_dask_client_local_and_scheduler():
    from preprocess.cluster import dask_client

    with dask_client(workers=2) as client:
        env = client.run(lambda: (os.environ.get("NUMBA_NUM_THREADS"), os.environ.get("SLURM_JOB_ID")))
        assert len(env) == 2 and set(env.values()) == {("1", None)}
        info = client.scheduler_info()
        assert all(w["nthreads"] == 1 for w in info["workers"].values())
        with dask_client(scheduler=client.scheduler.address) as other:
            assert len(other.scheduler_info()["workers"]) == 2
        assert client.submit(sum, [1, 2]).result() == 3  # the connected client closed, not ours
    with pytest.raises(ValueError, match="not both"):
        with dask_client(scheduler="tcp://127.0.0.1:1", slurm={"queue": "q"}):
            pass
    with pytest.raises(ValueError, match="unknown preprocess SLURM option"):
        with dask_client(slurm={"queue": "q", "partition": "p"}):
            pass


# --------------------------------------------------------------------------------------------
# The one-node SLURM cluster
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _test_profile(workdir: Path, cluster: SlurmCluster) -> Path:
    """The copy's SLURM profile with this test cluster's partition and account, memory that
    fits the node, keeping every log and quick first status checks."""
    path = workdir / "workflow" / "profiles" / "slurm" / "config.yaml"
    profile = yaml.safe_load(path.read_text())
    profile["default-resources"].update(slurm_partition=cluster.partition,
                                        slurm_account=cluster.account, mem_mb=500)
    for resources in profile["set-resources"].values():
        resources["mem_mb"] = 500
    profile["slurm-keep-successful-logs"] = True
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["seconds-between-status-checks"] = 1
    profile["latency-wait"] = 5
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path.parent


def _slurm_jobs(workdir: Path) -> dict[str, list[str]]:
    """rule -> SLURM job ids, from the plugin's per-job logs (.snakemake/slurm_logs/rule_<rule>/<wildcards>/<jobid>.log)."""
    jobs: dict[str, list[str]] = {}
    for log in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log")):
        rule = next(p.name[len("rule_"):] for p in log.parents if p.name.startswith("rule_"))
        jobs.setdefault(rule, []).append(log.stem)
    return jobs


@pytest.mark.slow
def test_workflow_on_slurm_matches_local_run(slurm, tiny_workflow, tmp_path):
    """The tiny workflow through SLURM gives the same files as the session's local run of it."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason=PLUGIN_HINT)
    config = copy.deepcopy(TINY_CONFIG)
    local, _ = tiny_workflow
    remote = tmp_path / "slurm"
    remote.mkdir()
    copy_repo(remote)  # with the Numba kernels compiled in this checkout
    remote_cfg = write_config(remote, config)
    proc = snakemake(remote, "all", "--profile", str(_test_profile(remote, slurm)),
                     "--jobs", "2", "--configfile", str(remote_cfg), "--verbose",
                     check=False, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{output[-6000:]}\n{slurm.logs()}"

    # every job went through SLURM: one plugin log per job, each a finished job of our cluster
    jobs = _slurm_jobs(remote)
    assert {rule: len(ids) for rule, ids in jobs.items()} == {
        "generate_triangle": 1, "build_graphs": 1, "train": 2, "evaluate": 2, "aggregate": 1, "plot_test": 1}
    info = {job: slurm.job_info(job) for ids in jobs.values() for job in ids}
    for rule, ids in jobs.items():
        for job in ids:
            assert info[job]["JobState"] == "COMPLETED", (rule, info[job])
            assert info[job]["Partition"] == slurm.partition and info[job]["Account"] == slurm.account
            gpus = info[job].get("TresPerJob", "")
            if rule in ("train", "evaluate"):
                assert gpus == "gres:gpu:1", (rule, info[job])
            else:
                assert "gpu" not in gpus, (rule, info[job])
    # the sbatch calls asked for the GPU (`--gpus=1`), and the default workflow profile's
    # one-GPU cap did not hold the second training job back until the first ended
    sbatch = [line for line in output.splitlines() if "sbatch call:" in line]
    train_calls = [c for c in sbatch if "--comment rule_train_" in c]
    assert len(train_calls) == 2 and all("--gpus=1" in c for c in train_calls), sbatch
    assert "Provided resources: gpu=1" not in output
    first, second = sorted(jobs["train"], key=int)
    assert info[second]["SubmitTime"] < info[first]["EndTime"], (info[first], info[second])

    # the same numbers as the local run
    for seed in config["seeds"]:
        rel = f"results/triangle/runs/eqgat/seed{seed}/metrics.json"
        assert (remote / rel).read_bytes() == (local / rel).read_bytes(), rel
    rel = "results/summary/results.csv"
    assert (remote / rel).read_bytes() == (local / rel).read_bytes()


@pytest.mark.slow
def test_dask_slurm_cluster_builds_the_serial_shards(slurm, tmp_path):
    pytest.importorskip("dask_jobqueue", reason="pip install dask-jobqueue")
    from _graphs import build_triangle_shards
    from preprocess.cluster import dask_client
    from preprocess.triangle import generate_triangle_clouds, write_raw

    raw = tmp_path / "raw.h5"
    write_raw(raw, generate_triangle_clouds(60, seed=5, num_points=20, radius=6.0, min_dist=1.0))
    serial = build_triangle_shards(raw, tmp_path / "serial", cutoff=4.0, shard_size=8,
                                   workers=1, progress=False)
    options = {"queue": slurm.partition, "account": slurm.account, "cores": 2, "memory": "1GB",
               "walltime": "00:10:00", "jobs": 1, "log_directory": str(tmp_path / "dask-logs"),
               "wait_timeout": 120}
    with dask_client(slurm=options) as client:
        # the workers run inside a SLURM job of our cluster
        job_ids = set(client.run(lambda: os.environ.get("SLURM_JOB_ID")).values())
        assert len(job_ids) == 1 and None not in job_ids
        (job_id,) = job_ids
        assert slurm.job_info(job_id)["Partition"] == slurm.partition
        dist = build_triangle_shards(raw, tmp_path / "dask", cutoff=4.0, shard_size=8,
                                     scheduler=client.scheduler.address, progress=False)
    assert dist["splits"] == serial["splits"]
    shards = sorted(p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial").rglob("*.h5"))
    assert len(shards) == sum(len(s["shards"]) for s in serial["splits"].values()) > 3
    for rel in shards:  # shards are written without timestamps: byte-identical
        assert (tmp_path / "dask" / rel).read_bytes() == (tmp_path / "serial" / rel).read_bytes(), rel


@pytest.mark.slow
def test_two_rank_run_outlives_its_slurm_time_limit(slurm, tmp_path):
    """One training run as 2 CPU ranks (srun tasks of one SLURM job), given a 1-minute runtime
    for a minute of training on an idle 2-core machine (300 epochs: 200 fitted one job there): it
    stops before SLURM's end time for the job, Snakemake submits it again, and the resumed run
    ends where an uninterrupted 2-rank run ends."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason=PLUGIN_HINT)
    config = copy.deepcopy(TINY_CONFIG)
    config.update(seeds=[0], ranks_per_run=2, train_retries=4)
    config["triangle"]["data"].update(num_clouds=200, num_points=30)
    config["triangle"]["model"]["overrides"]["eqgat"].update(hidden_scalars=16, hidden_vectors=4, num_layers=2)
    config["triangle"]["train"].update(epochs=300, checkpoint_minutes=0.25)
    target = "results/triangle/runs/eqgat/seed0/train.json"
    remote = tmp_path / "slurm"
    remote.mkdir()
    copy_repo(remote)
    profile = _test_profile(remote, slurm)
    settings = yaml.safe_load((profile / "config.yaml").read_text())
    settings["set-resources"]["train"].update(runtime=1, mem_mb=3000, gpu=0)
    (profile / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    proc = snakemake(remote, target, "--profile", str(profile), "--jobs", "1",
                     "--configfile", str(write_config(remote, config)), check=False, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{output[-6000:]}\n{slurm.logs()}"
    run = remote / "results/triangle/runs/eqgat/seed0"
    attempts = (run / "state" / "attempts.log").read_text().splitlines()
    attempts = attempts[max(i for i, line in enumerate(attempts) if "start: new run" in line):]
    stops = [line for line in attempts if " stopped (" in line]
    # each job's ranks stop themselves before SLURM's end time; on a loaded machine a job may
    # overrun its margin, and SLURM's SIGTERM at the limit stops the ranks at the next step
    assert stops and all(" stopped (deadline" in s or " stopped (signal SIGTERM" in s for s in stops), attempts
    assert " stopped (deadline" in stops[0]
    assert len(attempts) == 2 * len(stops) + 2 and attempts[-1].endswith("finished"), attempts
    assert all("2 rank(s)" in line for line in attempts if " start: " in line)
    jobs = sorted(_slurm_jobs(remote)["train"], key=int)
    assert len(jobs) == len(stops) + 1
    for job, stop in zip(jobs, stops):
        info = slurm.job_info(job)
        assert info["TimeLimit"] == "00:01:00" and info["NumTasks"] == "2", info
        if " stopped (deadline" in stop:
            assert info["JobState"] == "FAILED", info  # exit 75, before the limit: never TIMEOUT

    # the same as 2 ranks (torchrun) without a time limit
    local = tmp_path / "local"
    local.mkdir()
    copy_repo(local)
    snakemake(local, target, "--cores", "2", "--configfile", str(write_config(local, config)))
    from test_distributed import final

    a, b = final(local / "results/triangle/runs/eqgat/seed0"), final(run)
    assert a["log"] == b["log"]
    assert all(bool((a["model"][k] == b["model"][k]).all()) for k in a["model"])
