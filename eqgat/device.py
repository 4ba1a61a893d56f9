"""Device choice: CUDA when available, CPU otherwise."""

from __future__ import annotations

import logging
import os
import sys
import warnings

import torch

__all__ = ["autocast", "mixed_precision_available", "select_device", "set_cpu_threads"]

log = logging.getLogger(__name__)


def select_device(preferred: str | None = None) -> torch.device:
    """``None``/``"auto"``: ``cuda`` if available else ``cpu``.  An explicit ``"cpu"`` is
    honoured; an explicit ``"cuda"``/``"cuda:N"`` is honoured when CUDA is available and
    otherwise falls back to ``cpu`` with a warning."""
    if preferred is None or str(preferred).lower() == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")  # the first of CUDA_VISIBLE_DEVICES
        log.warning("no CUDA device available: running on the CPU")
        return torch.device("cpu")
    dev = torch.device(preferred)
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = f"device {preferred!r} requested but CUDA is not available; using cpu"
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        log.warning(msg)
        return torch.device("cpu")
    return dev


def mixed_precision_available(device: torch.device, requested: bool) -> bool:
    """Whether bfloat16 autocast can be used; says why not in the log when it was requested."""
    if not requested:
        return False
    if device.type != "cuda":
        log.warning("mixed precision requested but the device is %s: training in float32", device)
        return False
    if not torch.cuda.is_bf16_supported():
        log.warning("mixed precision requested but this GPU has no bfloat16: training in float32")
        return False
    return True


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast of the forward pass when `enabled` (see mixed_precision_available)."""
    import contextlib

    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def set_cpu_threads(threads: int) -> None:
    """Use `threads` CPU threads in torch, and in Numba's kernels (radius graphs) in this process.

    Both run on one OpenMP runtime. When Numba's pool starts after torch has run, it sets torch's
    thread count to Numba's, by default every CPU: a command told to use 1 thread, or each of N
    ranks on N cores, would run torch on all CPUs after its first radius graph (PPI pairs, predict).
    """
    numba = sys.modules.get("numba")
    if numba is None:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)  # read when Numba is imported
    else:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # starts its pool now
    torch.set_num_threads(threads)
