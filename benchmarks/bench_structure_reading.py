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

``--ab`` times, in this one process and alternating, ``read_structure`` as it is and with its
bounded read swapped for the unbounded one of the version before the caps (``gzip.open(path)
.read()`` / ``path.read_bytes()``): on a busy machine an A/B in one process is steadier than
two processes compared.
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
    parser.add_argument("--ab", action="store_true", help="bounded vs unbounded reads, alternating in this process")
    args = parser.parse_args()
    if args.ab:
        return ab(args.rounds, args.repeats)

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


def _unbounded_read_bytes(path: Path, max_bytes=None) -> bytes:
    """The read before the caps: the whole file, decompressed."""
    import gzip

    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def ab(rounds: int, repeats: int) -> None:
    from structure_dataset import write_dataset

    import preprocess.readers.structures as structures

    bounded = structures._read_bytes
    times: dict[str, list[float]] = {"bounded": [], "unbounded": []}
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp), 40, seed=1)
        files = sorted(str(p) for p in Path(tmp).rglob("mol*"))
        for _ in range(repeats):
            for name, read in (("bounded", bounded), ("unbounded", _unbounded_read_bytes)):
                structures._read_bytes = read
                start = time.perf_counter()
                for _ in range(rounds):
                    for f in files:
                        structures.read_structure(f)
                times[name].append((time.perf_counter() - start) / (rounds * len(files)))
        structures._read_bytes = bounded
    for name, values in times.items():
        print(f"read_structure, {name} read: {1e6 * statistics.median(values):.0f} µs per file "
              f"(median of {repeats}; min {1e6 * min(values):.0f})")


if __name__ == "__main__":
    main()
