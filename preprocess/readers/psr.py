"""PSR reader (shared implementation in ``ranking``): label ``scores['gdt_ts']``."""
from .ranking import PSR, parse_id, parse_target

LABELS = PSR.LABELS
samples = PSR.samples

__all__ = ["LABELS", "samples", "parse_id", "parse_target"]
