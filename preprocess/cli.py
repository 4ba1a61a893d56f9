"""Command line: ``python -m preprocess generate-triangle ...``; with the task declarations
(``python -m eqgat.tasks``, which passes them to :func:`main`) also ``build-graphs``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Mapping

from .spec import DEFAULT_MAX_DEGREE

log = logging.getLogger("preprocess")


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S", force=True)
    logging.getLogger("distributed").setLevel(max(level, logging.WARNING))


def _cmd_generate_triangle(args) -> int:
    from .build import set_numba_threads
    from .triangle import generate_triangle_clouds, write_raw

    set_numba_threads(args.threads)
    t0 = time.perf_counter()
    data = generate_triangle_clouds(args.num_clouds, args.seed, num_points=args.num_points,
                                    radius=args.radius, min_dist=args.min_dist)
    write_raw(args.out, data)
    log.info("wrote %d Triangle clouds (seed %d) to %s in %.1f s", args.num_clouds, args.seed,
             args.out, time.perf_counter() - t0)
    return 0


def _cmd_build_graphs(args) -> int:
    from .task_shards import build_task_shards

    t0 = time.perf_counter()
    task = args.tasks[args.task]
    location = args.source or args.raw
    if not location:
        raise ValueError(f"build-graphs --task {args.task} needs --source (the generated file, the extracted "
                         f"download or the structure folder)")
    options = json.loads(args.options) if args.options else {}
    if args.max_records is not None:
        options["max_records"] = args.max_records
    for key in ("max_file_bytes", "max_atoms"):
        value = getattr(args, key)
        if value is not None:
            if key not in task.reader_options:
                raise ValueError(f"build-graphs --{key.replace('_', '-')}: task {task.name} reads no structure files "
                                 f"(the read caps are options of the structures task)")
            options[key] = None if value == -1 else value
    manifest = build_task_shards(
        task, location, args.out, cutoff=args.cutoff, max_neighbors=args.max_neighbors, max_degree=args.max_degree,
        shard_size=args.shard_size,
        workers=args.workers, scheduler=args.scheduler or None, threads=args.threads,
        strict=args.strict or bool(options.get("strict")), options=options,
        progress=not args.no_progress, compression=args.compression,
        slurm=json.loads(args.dask_slurm) if args.dask_slurm else None)
    n = sum(s["num_graphs"] for s in manifest["splits"].values())
    log.info("built %d graphs in %.1f s -> %s/manifest.json", n, time.perf_counter() - t0, args.out)
    return 0


def build_parser(tasks: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """The parser; `tasks` (task name -> declaration) adds ``build-graphs``."""
    p = argparse.ArgumentParser(prog="python -m preprocess" if tasks is None else "python -m eqgat.tasks",
                                description="Preprocessing for the EQGAT workflow.")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate-triangle", help="generate the raw synthetic Triangle data")
    g.add_argument("--num-clouds", type=int, required=True)
    g.add_argument("--seed", type=int, required=True)
    g.add_argument("--out", required=True, help="raw HDF5 file to write")
    g.add_argument("--num-points", type=int, default=100)
    g.add_argument("--radius", type=float, default=10.0)
    g.add_argument("--min-dist", type=float, default=2.0)
    g.add_argument("--threads", type=int, default=1, help="Numba threads")
    g.set_defaults(func=_cmd_generate_triangle)
    if tasks is None:
        return p

    b = sub.add_parser("build-graphs", help="build HDF5 graph shards + manifest.json")
    b.add_argument("--task", required=True, choices=list(tasks))
    b.add_argument("--source", help="the task's data: the raw Triangle file, the folder an ATOM3D download was "
                                    "extracted into, or a structure folder")
    b.add_argument("--raw", help="same as --source (the raw Triangle file)")
    b.add_argument("--options", default=None, help="JSON: the task's config keys its source and reader read "
                                                   "(e.g. the LBA split, a folder's labels)")
    b.add_argument("--strict", action="store_true", help="a bad record is an error (default: skip and count)")
    b.add_argument("--max-records", type=int, default=None, help="read at most this many records per split")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--cutoff", type=float, required=True)
    b.add_argument("--max-neighbors", type=int, default=None)
    b.add_argument("--max-degree", type=int, default=DEFAULT_MAX_DEGREE,
                   help="a structure with an atom of more neighbours within the cutoff (after --max-neighbors) "
                        "is skipped and counted as too_many_neighbors, or with --strict an error "
                        f"(default {DEFAULT_MAX_DEGREE}; -1: no limit)")
    b.add_argument("--max-file-bytes", type=int, default=None,
                   help="structures task: a file holding more bytes (after decompression) is skipped and counted as "
                        "file_too_large (default: --options' max_file_bytes, else the reader's, 100000000; -1: no limit)")
    b.add_argument("--max-atoms", type=int, default=None,
                   help="structures task: a structure of more atoms is skipped and counted as too_many_atoms "
                        "(default: --options' max_atoms, else the reader's, 100000; -1: no limit)")
    b.add_argument("--shard-size", type=int, default=1000)
    b.add_argument("--workers", type=int, default=1,
                   help="Dask worker processes (0/1: serial, in-process)")
    b.add_argument("--threads", type=int, default=1, help="Numba threads in serial mode")
    b.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    b.add_argument("--dask-slurm", default=None, help="JSON settings of a dask-jobqueue SLURMCluster (see preprocess.cluster)")
    b.add_argument("--compression", default=None, help="HDF5 filter (e.g. gzip, lzf)")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_cmd_build_graphs, tasks=tasks)
    return p


def main(argv=None, tasks: Mapping[str, Any] | None = None) -> int:
    """Run a command; `tasks` are the task declarations by name (:mod:`eqgat.tasks` passes them)."""
    parser = build_parser(tasks)
    argv = sys.argv[1:] if argv is None else list(argv)
    if tasks is None and "build-graphs" in argv:
        parser.error("build-graphs needs the task declarations: run python -m eqgat.tasks build-graphs ...")
    args = parser.parse_args(argv)
    _setup_logging(-1 if args.quiet else args.verbose)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:  # clear message, non-zero exit
        log.debug("traceback", exc_info=True)
        log.error("%s failed: %s: %s", args.command, type(exc).__name__, exc)
        return 1
