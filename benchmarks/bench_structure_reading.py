"""Benchmark reading users' structure files: what the read caps cost on the normal path.

Usage (the numbers in docs/performance.md come from)::

    python benchmarks/bench_structure_reading.py --rounds 100 --repeats 5

Writes the tests' small structures dataset (``tests/structure_dataset.py``: 40 molecules of
12-30 atoms as ``.pdb``, ``.cif.gz`` and ``.ent``) to a temporary folder, then times
``preprocess.readers.structures.read_structure`` over every file, ``--rounds`` times, and
``eqgat.predict.read_graph`` (the file as a structures model's graph: reading, the radius graph,
a PyG ``Data``) over every file ``--rounds // 5`` times. Small files are where a fixed cost per
file (opening and checking the file, the caps) shows most. Each measurement is repeated
``--repeats`` times; the median is printed. Run it with ``PYTHONPATH`` at two checkouts to compare
them: the script uses only what both versions have.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from structure_dataset import write_dataset

    from eqgat.predict import ReadingSettings, read_graph
    from preprocess.elements import ELEMENTS
    from preprocess.readers.structures import read_structure

    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp), 40, seed=1)
        files = sorted(str(p) for p in Path(tmp).rglob("mol*"))
        settings = ReadingSettings("structures", 4.5, None, "regression", ("label",), {}, tuple(ELEMENTS))
        for f in files:  # warm up: imports, Numba, page cache
            read_graph(f, settings)

        def reads() -> None:
            for _ in range(args.rounds):
                for f in files:
                    read_structure(f)

        def graphs() -> None:
            for _ in range(max(1, args.rounds // 5)):
                for f in files:
                    read_graph(f, settings)

        n_reads, n_graphs = args.rounds * len(files), max(1, args.rounds // 5) * len(files)
        t_reads, t_graphs = _time(reads, args.repeats), _time(graphs, args.repeats)
    print(f"read_structure: {n_reads} reads in {t_reads:.3f} s, {1e6 * t_reads / n_reads:.0f} µs per file")
    print(f"read_graph:     {n_graphs} graphs in {t_graphs:.3f} s, {1e6 * t_graphs / n_graphs:.0f} µs per file")


if __name__ == "__main__":
    main()
