"""Resuming from every kind of stop: a signal during validation, a kill right after a resume
state was written, a deadline. Each resumed run equals the uninterrupted one, bit for bit."""
from __future__ import annotations

import os
import signal

import pytest
import torch

from ddp_harness import VAL_GRAPHS, dataset, train_once
from test_distributed import final

from eqgat.train.stopping import StopPolicy, Stopped, job_deadline, slurm_end_time

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class SignalDuringValidation(torch.utils.data.Dataset):
    """The validation graphs; reading the third one sends this process SIGUSR1 (once)."""

    def __init__(self) -> None:
        self.graphs = dataset(VAL_GRAPHS, 2)
        self.sent = False

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i):
        if i == 2 and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGUSR1)
        return self.graphs[i]


class Killed(Exception):
    pass


class KillAfterWrite(StopPolicy):
    """Writes a resume state after every step and dies right after the `n`-th write."""

    def __init__(self, n: int) -> None:
        super().__init__(checkpoint_minutes=1e-9)
        self.writes, self.n = 0, n

    def state_written(self, seconds: float) -> None:
        super().state_written(seconds)
        self.writes += 1
        if self.writes == self.n:
            raise Killed


@pytest.fixture
def reference(tmp_path):
    train_once(tmp_path / "ref", 4, 2, StopPolicy(checkpoint_minutes=0))
    return final(tmp_path / "ref")


def assert_same(ref: dict, run: dict) -> None:
    assert ref["log"] == run["log"]
    for key in ("model", "best"):
        assert all(torch.equal(ref[key][k], run[key][k]) for k in ref[key])


def test_signal_during_validation(tmp_path, reference):
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    stop = StopPolicy(checkpoint_minutes=0)
    stop.install_signal_handlers()
    try:
        with pytest.raises(Stopped, match="signal SIGUSR1"):
            train_once(tmp_path / "run", 4, 2, stop, val_set=SignalDuringValidation())
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    saved = torch.load(tmp_path / "run" / "state" / "last.pt", weights_only=True)
    assert saved["epoch"] == 1 and saved["position"] is None  # the epoch and its validation were kept
    train_once(tmp_path / "run", 4, 2, StopPolicy(checkpoint_minutes=0))
    assert_same(reference, final(tmp_path / "run"))
    assert "after validation" in (tmp_path / "run" / "state" / "attempts.log").read_text()


@pytest.mark.parametrize("writes,epoch,step", [(1, 1, 1), (3, 1, None), (4, 2, 1)])
def test_killed_right_after_a_state_write(tmp_path, reference, writes, epoch, step):
    """2 steps per epoch, a state after each step and each epoch: killed after the first step,
    after epoch 1's validation, and after the first step of epoch 2."""
    with pytest.raises(Killed):
        train_once(tmp_path / "run", 4, 2, KillAfterWrite(writes))
    saved = torch.load(tmp_path / "run" / "state" / "last.pt", weights_only=True)
    where = saved["position"]
    assert (where["epoch"], where["step"]) == (epoch, step) if step else (saved["epoch"], where) == (epoch, None)
    train_once(tmp_path / "run", 4, 2, StopPolicy(checkpoint_minutes=0))
    assert_same(reference, final(tmp_path / "run"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_deadline_stops_before_a_step_would_cross_it():
    clock = FakeClock()
    stop = StopPolicy(deadline=1100.0, checkpoint_minutes=0, clock=clock)
    assert stop.margin_seconds == 15.0  # 5 % of the 100 s given, but at least 15 s
    assert StopPolicy(deadline=1000.0 + 400, clock=clock).margin_seconds == pytest.approx(20.0)  # 5 % of 400 s
    assert StopPolicy(deadline=1000.0 + 86400, clock=clock).margin_seconds == 60.0
    assert stop.reason_to_stop() is None  # no work yet: an attempt always makes progress
    stop.step_done(10.0)
    clock.now = 1060.0  # 40 s left > 2 x 10 s + 15 s
    assert stop.reason_to_stop() is None
    clock.now = 1066.0  # 34 s left < 35 s
    assert stop.reason_to_stop().startswith("deadline")
    clock.now = 1050.0
    assert stop.reason_to_stop(next_seconds=60.0).startswith("deadline")  # a validation that would not fit


def test_periodic_state_writes():
    clock = FakeClock()
    stop = StopPolicy(checkpoint_minutes=30, clock=clock)
    clock.now += 29 * 60
    assert not stop.state_due()
    clock.now += 61
    assert stop.state_due()
    stop.state_written(1.0)
    assert not stop.state_due()
    assert not StopPolicy(checkpoint_minutes=0, clock=clock).state_due()


def test_deadline_sources(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no squeue
    env = {"SLURM_JOB_ID": "12", "SLURM_JOB_END_TIME": "5000"}
    assert slurm_end_time(env) == 5000.0
    assert slurm_end_time({"SLURM_JOB_ID": "12"}) is None
    assert job_deadline(1000.0, 100, None, env) == 5000.0  # SLURM's end comes first (7000 from the runtime)
    assert job_deadline(1000.0, 10, 5, env) == 1300.0
    assert job_deadline(1000.0, None, None, {}) is None


def test_activation_checkpointing_trains_to_the_same_weights(tmp_path, reference):
    """`train.activation_checkpointing` recomputes each layer in the backward pass: the run
    ends with the weights and log of one without it (and resumes into the same run)."""
    with pytest.raises(Stopped):
        train_once(tmp_path / "run", 4, 2, StopPolicy(checkpoint_minutes=0, stop_after_steps=3),
                   activation_checkpointing=True)
    train_once(tmp_path / "run", 4, 2, StopPolicy(checkpoint_minutes=0))  # resumed without it
    run = final(tmp_path / "run")
    assert reference["log"] == run["log"]
    for k in reference["model"]:
        torch.testing.assert_close(run["model"][k], reference["model"][k], rtol=1e-12, atol=1e-14)
