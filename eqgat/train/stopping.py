"""When a run stops early and keeps its work: a deadline, signals, and periodic resume states.

The deadline is the primary mechanism (a signal may never reach the training process, e.g.
when it goes to Snakemake's SLURM wrapper): the earliest of the end of the SLURM job
(``SLURM_JOB_END_TIME``, else ``squeue``), the job's ``runtime`` resource and the ``train``
setting ``time_limit_minutes``, both counted from the start of the process. Training stops at a
step boundary once the time left is less than twice the slowest step plus the time a resume
state takes to write plus a margin; before a validation pass that would not finish in time;
and on SIGTERM or SIGUSR1 (the handler only sets a flag). It then writes a step-level resume
state and exits with :data:`EXIT_RESUMABLE`, which Snakemake's ``retries`` turn into a resumed
attempt. Every ``checkpoint_minutes`` the state is also written, so a ``kill -9`` loses at most
that long.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

__all__ = ["ATTEMPTS_LOG", "EXIT_RESUMABLE", "StopPolicy", "Stopped", "job_deadline", "slurm_end_time", "stop_message",
           "stopped_since"]

log = logging.getLogger(__name__)

#: exit status of a run that stopped early and wrote its resume state (BSD's EX_TEMPFAIL)
EXIT_RESUMABLE = 75


#: a run's log of its processes' starts and stops, relative to the run directory
ATTEMPTS_LOG = Path("state") / "attempts.log"


class Stopped(Exception):
    """Training stopped early after writing its resume state (see :data:`EXIT_RESUMABLE`)."""


#: how an attempts-log line of a stop with the resume state written begins
_STOPPED = "stopped ("


def stop_message(reason: str, where: str) -> str:
    """The attempts-log message of a stop with the resume state written (what :func:`stopped_since` finds)."""
    return f"{_STOPPED}{reason}) at {where}"


def stopped_since(run_dir: Path, started: float) -> bool:
    """Whether the run's last attempt since `started` ended with a resume state written."""
    log_path = Path(run_dir) / ATTEMPTS_LOG
    try:
        if log_path.stat().st_mtime < started:
            return False
        lines = log_path.read_text().splitlines()
    except OSError:
        return False
    return bool(lines) and f" {_STOPPED}" in lines[-1]


def slurm_end_time(env: dict[str, str] | None = None) -> float | None:
    """The end of this SLURM job (Unix time), or None outside SLURM or without a time limit."""
    env = dict(os.environ if env is None else env)
    value = env.get("SLURM_JOB_END_TIME")
    if value and value.isdigit() and int(value) > 0:
        return float(value)
    job = env.get("SLURM_JOB_ID")
    squeue = shutil.which("squeue")
    if not job or not job.isdigit() or squeue is None:
        return None
    try:
        out = subprocess.run([squeue, "-h", "-j", job, "-o", "%e"], capture_output=True, text=True, timeout=30,
                             check=False).stdout.strip()
        return datetime.fromisoformat(out).timestamp()
    except (OSError, subprocess.SubprocessError, ValueError):
        return None  # "N/A", "UNLIMITED", or no answer


def job_deadline(started: float, runtime_minutes: float | None, time_limit_minutes: float | None,
                 env: dict[str, str] | None = None) -> float | None:
    """The earliest of SLURM's end time and the limits counted from `started` (None: no deadline)."""
    candidates = [slurm_end_time(env)]
    for minutes in (runtime_minutes, time_limit_minutes):
        if minutes is not None and minutes > 0:
            candidates.append(started + 60.0 * float(minutes))
    found = [c for c in candidates if c is not None]
    return min(found) if found else None


@dataclass
class StopPolicy:
    """Decides, at each step boundary, whether to write a resume state and whether to stop.

    Every attempt makes progress: before it has made one optimiser step or one validation pass,
    only a signal stops it (a deadline too close for any work still lets one unit through, so
    retries always end). The margin kept free before the deadline is `margin_seconds`, by
    default 5 % of the time the process was given, at least 15 s (what is left of a job after
    training stops: Snakemake's bookkeeping) and at most 60 s."""

    deadline: float | None = None
    checkpoint_minutes: float = 30.0
    margin_seconds: float | None = None
    stop_after_steps: int | None = None  # testing: stop as at a deadline after this many steps
    clock: Callable[[], float] = time.time
    _signal: str | None = field(default=None, init=False)
    _steps: int = field(default=0, init=False)
    _worked: bool = field(default=False, init=False)
    _slowest: float = field(default=0.0, init=False)
    _write_seconds: float = field(default=0.0, init=False)
    _last_write: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._last_write = self.clock()
        if self.margin_seconds is None:
            given = float("inf") if self.deadline is None else max(0.0, self.deadline - self._last_write)
            self.margin_seconds = min(60.0, max(15.0, 0.05 * given))

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGUSR1 ask training to stop at the next step (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self._signal = signal.Signals(signum).name

    def step_done(self, seconds: float) -> None:
        self._steps += 1
        self._worked = True
        self._slowest = max(self._slowest, seconds)

    def validation_done(self) -> None:
        self._worked = True

    def state_written(self, seconds: float) -> None:
        self._write_seconds = max(self._write_seconds, seconds)
        self._last_write = self.clock()

    def left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - self.clock()

    def reason_to_stop(self, next_seconds: float | None = None) -> str | None:
        """Why training should stop before work that takes `next_seconds` (default: a step)."""
        if self._signal:
            return f"signal {self._signal}"
        if not self._worked:
            return None
        if self.stop_after_steps is not None and self._steps >= self.stop_after_steps:
            return f"stop_after_steps {self.stop_after_steps}"
        need = (2 * self._slowest if next_seconds is None else next_seconds) + self._write_seconds + self.margin_seconds
        if self.left() < need:
            return f"deadline in {self.left():.0f} s"
        return None

    def state_due(self) -> bool:
        return self.checkpoint_minutes > 0 and self.clock() - self._last_write >= 60.0 * self.checkpoint_minutes
