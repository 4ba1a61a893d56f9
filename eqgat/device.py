"""Device choice: CUDA when available, CPU otherwise."""

from __future__ import annotations

import logging
import warnings

import torch

__all__ = ["select_device"]

log = logging.getLogger(__name__)


def select_device(preferred: str | None = None) -> torch.device:
    """``None``/``"auto"``: ``cuda`` if available else ``cpu``.  An explicit ``"cpu"`` is
    honoured; an explicit ``"cuda"``/``"cuda:N"`` is honoured when CUDA is available and
    otherwise falls back to ``cpu`` with a warning."""
    if preferred is None or str(preferred).lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(preferred)
    if dev.type == "cuda" and not torch.cuda.is_available():
        msg = f"device {preferred!r} requested but CUDA is not available; using cpu"
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        log.warning(msg)
        return torch.device("cpu")
    return dev
