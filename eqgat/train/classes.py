"""Class labels that make a classification result meaningless, found before training (one
class only: refused) or when evaluating (a class the training split never showed: a warning
in the log and in ``metrics.json``)."""
from __future__ import annotations

import logging
from collections import Counter
from typing import Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["check_trainable", "class_counts", "unseen_class_warnings"]


def class_counts(labels: np.ndarray, names: Sequence[str]) -> Counter:
    """How many graphs carry each class name (labels outside the names count under their number)."""
    values, counts = np.unique(np.asarray(labels, dtype=np.int64).reshape(-1), return_counts=True)
    return Counter({names[v] if 0 <= v < len(names) else str(v): int(c) for v, c in zip(values, counts)})


def check_trainable(names: Sequence[str], train_labels: np.ndarray, where: str) -> Counter:
    """Refuse a classifier whose training graphs (or declared classes) are all one class, naming
    it: such a model has nothing to learn and would report accuracy 1.0. Returns the counts."""
    counts = class_counts(train_labels, names)
    if len(names) < 2 or len(counts) < 2:
        only = next(iter(counts), names[0] if names else "?")
        declared = f"; the labels name only {list(names)}" if len(names) < 2 else f" (of the classes {list(names)})"
        raise ValueError(f"{where}: every training graph is of class {only!r}{declared}: a classifier needs "
                         "examples of at least two classes (check the labels)")
    return counts


def unseen_class_warnings(names: Sequence[str], train_counts: Mapping[str, int],
                          splits: Mapping[str, np.ndarray]) -> list[str]:
    """One warning per split holding classes that no training graph has (logged too)."""
    warnings = []
    for split, labels in splits.items():
        unseen = sorted(set(class_counts(labels, names)) - set(train_counts))
        if unseen:
            warnings.append(f"the {split} split has classes that no training graph has: {', '.join(map(repr, unseen))} "
                            "(the model cannot predict them; its metrics there mean little)")
            log.warning(warnings[-1])
    return warnings
