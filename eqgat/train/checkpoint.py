"""Training checkpoints: the resumable state after each epoch, and the best model.

Checkpoints hold only tensors, state dicts and plain metadata, and are loaded with
``torch.load(weights_only=True)``: a checkpoint carrying anything else (pickled objects, which
would run code when loaded) is refused with an error naming the file, never executed.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import torch

from preprocess.atomic import atomic_write_bytes

__all__ = ["CheckpointError", "fingerprint", "load_checkpoint", "move_aside", "save_checkpoint"]


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, truncated, or holds more than weights and metadata."""


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-serialisable run settings (resume only into the same run)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` atomically. It is serialised in memory and written with plain file I/O, so
    a full disk is a ``DiskFullError`` naming the folder (torch's zip writer would report
    "enforce fail at inline_container.cc")."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint weights-only; :class:`CheckpointError` names the file when it is not
    a readable checkpoint of tensors and plain data."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        what = "an empty file" if path.stat().st_size == 0 else "not a complete PyTorch checkpoint: truncated, or another kind of file"
        raise CheckpointError(f"{path}: not a readable checkpoint ({what})")
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickling_detail(exc)
        if "global" in detail.lower():  # an import (a class, a function): what runs code when unpickled
            raise CheckpointError(f"{path}: refused: it holds more than tensors and plain data, which could run "
                                  f"code when loaded ({detail})") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({detail})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(saved).__name__}, expected a dict)")
    return saved


def _unpickling_detail(exc: pickle.UnpicklingError) -> str:
    """The reason in torch's weights-only error, without its advice to load the file unsafely."""
    text = str(exc)
    for pattern in (r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", r"(Trying to load unsupported GLOBAL[^\n]*)"):
        match = re.search(pattern, text, re.S)
        if match:
            return " ".join(match.group(1).split()).split(" Please use ")[0]
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def move_aside(path: str | Path) -> Path:
    """Rename a damaged file to ``<name>.damaged-<time>`` beside it; returns the new path."""
    path = Path(path)
    target = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(path, target)
    return target
