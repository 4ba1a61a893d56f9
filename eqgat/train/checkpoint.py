"""Training checkpoints: the resumable state after each epoch, and the best model."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from preprocess.atomic import atomic_path


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-serialisable run settings (resume only into the same run)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=False)
