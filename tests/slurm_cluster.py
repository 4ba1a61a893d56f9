"""A throw-away one-node SLURM cluster on this machine, for the SLURM tests.

``SlurmCluster`` writes ``/etc/slurm/slurm.conf`` and ``/etc/slurm/gres.conf`` (the executor
plugin strips ``SLURM_CONF`` before ``srun``, so the configuration must live at the default
path), starts ``munged`` (as user munge, unless one already answers), ``slurmctld -i`` and
``slurmd`` in the foreground as child processes, and waits until ``sinfo`` shows the node idle.
``stop()`` cancels the cluster's jobs, ends exactly the daemons it started, by PID, and puts
back any configuration file it replaced (or removes the ones it created).

The node: ``NodeName=$(hostname -s)`` with the CPUs and memory ``slurmd -C`` reports, one fake
GPU (``Gres=gpu:fake:1``, ``File=/dev/null`` in gres.conf) so that GPU requests are exercised,
no accounting (job status comes from ``squeue``; ``MinJobAge=600`` keeps finished jobs there).

Needs root and the Debian packages ``slurm-wlm`` and ``munge``: run ``.ci/install-slurm``.
``unavailable_reason()`` says why a cluster cannot be started here (``None`` if it can).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SLURM_DIR = Path("/etc/slurm")
CONFIG_FILES = ("slurm.conf", "gres.conf")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("munge", "unmunge", "sinfo", "squeue", "sbatch", "srun", "scontrol", "scancel")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_SOCKET_DIR = Path("/run/munge")
CTLD_PORT, SLURMD_PORT = 6817, 6818
INSTALL_HINT = "run `.ci/install-slurm` as root (Debian: apt-get install slurm-wlm munge)"


def _which(name: str) -> str | None:
    # the daemons live in /usr/sbin, which is not always on a root PATH inside containers
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def unavailable_reason() -> str | None:
    """Why a test cluster cannot be started on this machine, or None if it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"the one-node SLURM test cluster needs root; {INSTALL_HINT}"
    missing = [n for n in DAEMONS + CLIENTS if _which(n) is None]
    if missing:
        return f"SLURM/munge binaries missing ({', '.join(missing)}); {INSTALL_HINT}"
    if not MUNGE_KEY.exists():
        return f"{MUNGE_KEY} is missing; {INSTALL_HINT}"
    busy = [p for p in (CTLD_PORT, SLURMD_PORT) if _port_in_use(p)]
    if busy:
        return (f"a SLURM daemon already listens on port(s) {busy}: this machine runs its own "
                "SLURM, whose configuration the test will not replace")
    return None


def _node_hardware() -> tuple[int, int]:
    """(CPUs, RealMemory in MB) as slurmd sees them (``slurmd -C``), else from the OS."""
    cpus, mem = os.cpu_count() or 1, None
    try:
        out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True,
                             timeout=30).stdout
        fields = dict(tok.split("=", 1) for tok in out.split() if "=" in tok)
        cpus = int(fields.get("CPUs", cpus))
        mem = int(fields["RealMemory"]) if "RealMemory" in fields else None
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    if mem is None:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        mem = kib // 1024
    return cpus, mem


class SlurmCluster:
    """One-node SLURM cluster: ``with SlurmCluster(tmpdir) as cluster: ...``."""

    def __init__(self, workdir: str | os.PathLike | None = None, partition: str = "eqgattest",
                 account: str = "eqgattest", start_timeout: float = 90.0):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="slurm-test-"))
        self.partition = partition
        self.account = account  # without accounting any account name is accepted
        self.start_timeout = start_timeout
        self.node = socket.gethostname().split(".")[0]  # = hostname -s
        self.cpus, self.real_memory = _node_hardware()
        self._procs: dict[str, subprocess.Popen] = {}  # daemons we started, by name
        self._saved: dict[Path, tuple[bytes, int] | None] = {}  # replaced config files
        self._created_dirs: list[Path] = []

    # ------------------------------------------------------------------ configuration
    def slurm_conf(self) -> str:
        w = self.workdir
        return "\n".join([
            "# Written by tests/slurm_cluster.py for the SLURM tests; restored at the end.",
            "ClusterName=eqgattest",
            f"SlurmctldHost={self.node}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"SlurmctldPort={CTLD_PORT}",
            f"SlurmdPort={SLURMD_PORT}",
            f"StateSaveLocation={w}/state",
            f"SlurmdSpoolDir={w}/spool",
            f"SlurmctldPidFile={w}/slurmctld.pid",
            f"SlurmdPidFile={w}/slurmd.pid",
            f"SlurmctldLogFile={w}/slurmctld.log",
            f"SlurmdLogFile={w}/slurmd.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "MinJobAge=600",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "InactiveLimit=0",
            "KillWait=5",
            "GresTypes=gpu",
            f"NodeName={self.node} CPUs={self.cpus} RealMemory={self.real_memory} "
            "Gres=gpu:fake:1 State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE "
            "State=UP",
            "",
        ])

    def gres_conf(self) -> str:
        return f"NodeName={self.node} Name=gpu Type=fake File=/dev/null\n"

    def _install_config(self) -> None:
        if not SLURM_DIR.exists():
            SLURM_DIR.mkdir(parents=True)
            self._created_dirs.append(SLURM_DIR)
        for name, text in (("slurm.conf", self.slurm_conf()), ("gres.conf", self.gres_conf())):
            path = SLURM_DIR / name
            if path not in self._saved:
                self._saved[path] = ((path.read_bytes(), path.stat().st_mode & 0o7777)
                                     if path.exists() else None)
            path.write_text(text)
            path.chmod(0o644)

    def _restore_config(self) -> None:
        for path, saved in self._saved.items():
            if saved is None:
                path.unlink(missing_ok=True)
            else:
                data, mode = saved
                path.write_bytes(data)
                path.chmod(mode)
        self._saved.clear()
        for d in reversed(self._created_dirs):
            try:
                d.rmdir()
            except OSError:
                pass
        self._created_dirs.clear()

    # ------------------------------------------------------------------ daemons
    def _start(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.out", "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        log.close()
        self._procs[name] = proc
        return proc

    @staticmethod
    def munge_works() -> bool:
        try:
            cred = subprocess.run([_which("munge"), "-n"], capture_output=True, timeout=10)
            if cred.returncode != 0:
                return False
            check = subprocess.run([_which("unmunge")], input=cred.stdout, capture_output=True,
                                   timeout=10)
            return check.returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def _start_munge(self) -> None:
        if self.munge_works():  # a munged of the machine already runs: use it, leave it
            return
        import grp
        import pwd

        uid, gid = pwd.getpwnam("munge").pw_uid, grp.getgrnam("munge").gr_gid
        for d in (MUNGE_SOCKET_DIR, Path("/var/lib/munge"), Path("/var/log/munge")):
            if not d.exists():
                d.mkdir(parents=True, mode=0o755)
                os.chown(d, uid, gid)
        self._start("munged", [_which("munged"), "--foreground"], user=uid, group=gid)
        self._wait(self.munge_works, "munged to answer", "munged")

    def _wait(self, ready, what: str, *daemons: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while time.monotonic() < deadline:
            if ready():
                return
            for name in daemons:
                proc = self._procs.get(name)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for "
                                       f"{what}\n{self.logs()}")
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}\n{self.logs()}")

    def node_state(self) -> str:
        proc = subprocess.run([_which("sinfo"), "-h", "-n", self.node, "-o", "%t"],
                              capture_output=True, text=True, timeout=15)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def start(self) -> SlurmCluster:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        for sub in ("state", "spool"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        try:
            self._install_config()
            self._start_munge()
            self._start("slurmctld", [_which("slurmctld"), "-D", "-i"])
            self._wait(lambda: subprocess.run([_which("scontrol"), "ping"], capture_output=True,
                                              timeout=15).returncode == 0,
                       "slurmctld to answer `scontrol ping`", "slurmctld")
            self._start("slurmd", [_which("slurmd"), "-D"])
            self._wait(lambda: self.node_state() == "idle", f"node {self.node} to be idle",
                       "slurmctld", "slurmd")
        except BaseException:
            self.stop()
            raise
        return self

    def _cancel_jobs(self) -> None:
        squeue, scancel = _which("squeue"), _which("scancel")
        if "slurmctld" not in self._procs or self._procs["slurmctld"].poll() is not None:
            return

        def active() -> list[str]:
            proc = subprocess.run([squeue, "-h", "-o", "%i", "-t",
                                   "PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING"],
                                  capture_output=True, text=True, timeout=15)
            return proc.stdout.split() if proc.returncode == 0 else []

        try:
            jobs = active()
            if jobs:
                subprocess.run([scancel, *jobs], capture_output=True, timeout=30)
                deadline = time.monotonic() + 30
                while active() and time.monotonic() < deadline:
                    time.sleep(0.5)
        except (OSError, subprocess.SubprocessError):
            pass

    def stop(self) -> None:
        """Cancel the jobs, end the daemons this object started (by PID), restore configs."""
        try:
            self._cancel_jobs()
        finally:
            for name in ("slurmd", "slurmctld", "munged"):
                proc = self._procs.pop(name, None)
                if proc is None or proc.poll() is not None:
                    continue
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            self._restore_config()

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers for tests
    def logs(self, tail: int = 3000) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munged.out", "slurmctld.out", "slurmd.out"):
            path = self.workdir / name
            if path.exists():
                parts.append(f"--- {path} (tail) ---\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def job_info(self, job_id: str | int) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (finished jobs stay listed for MinJobAge=600 s)."""
        proc = subprocess.run([_which("scontrol"), "show", "job", "-o", str(job_id)],
                              capture_output=True, text=True, timeout=15)
        if proc.returncode != 0:
            raise RuntimeError(f"scontrol show job {job_id}: {proc.stderr.strip()}")
        info = {}
        for tok in proc.stdout.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                info.setdefault(k, v)
        return info
