"""Paper configurations of EQGAT (paper Table 2, appendix B) and their parameter counts.

``build_model("eqgat", **PAPER_CONFIGS[task])`` builds the model of a task.
``python -m eqgat.configs`` prints our parameter counts next to the paper's.
"""

from __future__ import annotations

from torch import nn

__all__ = ["PAPER_CONFIGS", "PAPER_PARAM_COUNTS", "count_parameters", "param_table", "main"]

_ATOM3D = dict(
    num_elements=9,
    hidden_scalars=100,
    hidden_vectors=16,
    num_radial=32,
    cutoff=4.5,
    vector_aggr="mean",
)

PAPER_CONFIGS: dict[str, dict] = {
    "lba": dict(_ATOM3D, num_layers=3, out_dim=1, readout="graph"),
    "psr": dict(_ATOM3D, num_layers=5, out_dim=1, readout="graph"),
    "rsr": dict(_ATOM3D, num_layers=5, out_dim=1, readout="graph"),
    "res": dict(_ATOM3D, num_layers=5, out_dim=20, readout="node"),
    "ppi": dict(_ATOM3D, num_layers=5, out_dim=1, readout="pair"),
    "triangle": dict(
        num_elements=2,
        hidden_scalars=32,
        hidden_vectors=8,
        num_layers=3,
        num_radial=16,
        cutoff=10.0,
        out_dim=3,
        vector_aggr="sum",
        readout="graph",
    ),
}

# Rounded counts reported by the paper (Table 2 and Table 3); PPI is not reported.
PAPER_PARAM_COUNTS: dict[str, int] = {
    "lba": 238_000,
    "psr": 383_000,
    "rsr": 383_000,
    "res": 386_000,
    "triangle": 27_400,
}


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def param_table(model_name: str = "eqgat") -> list[tuple[str, int, int | None, float | None]]:
    """Rows ``(task, ours, paper or None, relative difference or None)``."""
    from .models import build_model

    rows = []
    for task, cfg in PAPER_CONFIGS.items():
        ours = count_parameters(build_model(model_name, **cfg))
        paper = PAPER_PARAM_COUNTS.get(task)
        rel = None if paper is None else (ours - paper) / paper
        rows.append((task, ours, paper, rel))
    return rows


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="eqgat", help="registered model name (default: eqgat)")
    args = parser.parse_args(argv)
    print(f"{'task':<10}{'ours':>10}{'paper':>10}{'rel. diff':>11}")
    for task, ours, paper, rel in param_table(args.model):
        p = "n/a" if paper is None else f"{paper:,}"
        r = "n/a" if rel is None else f"{100 * rel:+.2f}%"
        print(f"{task:<10}{ours:>10,}{p:>10}{r:>11}")


if __name__ == "__main__":
    main()
