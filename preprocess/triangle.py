"""Synthetic Triangle task (EQGAT paper, appendix B).

Each cloud holds ``num_points`` points drawn uniformly in a ball of radius ``radius`` by
sequential random addition: a candidate is drawn uniformly in the ball and rejected when it
lies closer than ``min_dist`` to an already accepted point. Three distinct points are then
chosen at random as the "special" points (``z = 1``; all others ``z = 0``). The targets are

* the distance between the centre of mass of all points (equal masses) and the centroid
  of the three special points,
* the perimeter of the triangle spanned by the special points,
* the area of that triangle.

Determinism: cloud ``k`` is generated from its own random stream, derived from
``numpy.random.SeedSequence(seed, spawn_key=(0, k))``, so the same ``(seed, k)`` always
gives bitwise the same cloud, independently of how many clouds are generated and of the
number of Numba threads. The stream itself is a SplitMix64 generator implemented in the
jitted kernel. The split (0 = train, 1 = val, 2 = test; 80/10/10) comes from a permutation
drawn from ``SeedSequence(seed, spawn_key=(1,))``; it necessarily depends on ``num_clouds``.

Positions are stored as float32; the targets are computed (in float64, stored as float32)
from the float32 positions that are stored, so they are exactly reproducible from the file.
"""

from __future__ import annotations

import numpy as np

from .atomic import atomic_write_hdf5
from .spec import Source

__all__ = [
    "SPLIT_NAMES",
    "TARGET_NAMES",
    "generate_triangle_clouds",
    "triangle_targets",
    "split_assignment",
    "write_raw",
    "read_raw_attrs",
]

SPLIT_NAMES = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
TARGET_NAMES = ("centroid_distance", "perimeter", "area")
RAW_FORMAT = "triangle-raw"
RAW_FORMAT_VERSION = 1

def _cloud_seeds(seed: int, num_clouds: int) -> np.ndarray:
    out = np.empty(num_clouds, dtype=np.uint64)
    for k in range(num_clouds):
        out[k] = np.random.SeedSequence(seed, spawn_key=(0, k)).generate_state(1, np.uint64)[0]
    return out


def triangle_targets(pos: np.ndarray, special: np.ndarray) -> np.ndarray:
    """Targets for clouds ``pos`` [B,n,3] with special indices ``special`` [B,3].

    Returns float64 [B,3]: (|centre of mass - triangle centroid|, perimeter, area).
    Also accepts a single cloud ([n,3], [3]) and then returns [3].
    """
    pos = np.asarray(pos, dtype=np.float64)
    special = np.asarray(special, dtype=np.int64)
    single = pos.ndim == 2
    if single:
        pos, special = pos[None], special[None]
    com = pos.mean(axis=1)
    tri = np.take_along_axis(pos, special[:, :, None], axis=1)  # [B,3,3]
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    dist = np.linalg.norm(com - tri.mean(axis=1), axis=1)
    perim = (np.linalg.norm(b - a, axis=1) + np.linalg.norm(c - b, axis=1)
             + np.linalg.norm(a - c, axis=1))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    out = np.stack([dist, perim, area], axis=1)
    return out[0] if single else out


def split_assignment(num_clouds: int, seed: int) -> np.ndarray:
    """int8 [num_clouds]: 0 train, 1 val, 2 test (80/10/10, seeded permutation)."""
    n_val = int(num_clouds * SPLIT_FRACTIONS[1])
    n_test = int(num_clouds * SPLIT_FRACTIONS[2])
    n_train = num_clouds - n_val - n_test
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    perm = rng.permutation(num_clouds)
    split = np.empty(num_clouds, dtype=np.int8)
    split[perm[:n_train]] = 0
    split[perm[n_train:n_train + n_val]] = 1
    split[perm[n_train + n_val:]] = 2
    return split


def generate_triangle_clouds(num_clouds: int, seed: int, num_points: int = 100,
                             radius: float = 10.0, min_dist: float = 2.0,
                             max_attempts: int = 1_000_000) -> dict:
    """Generate Triangle clouds.

    Returns a dict with ``pos`` float32 [C,n,3], ``z`` int8 [C,n], ``y`` float32 [C,3],
    ``special`` int64 [C,3] (indices of the special points), ``split`` int8 [C] and
    ``attrs`` (the generator parameters).
    """
    num_clouds = int(num_clouds)
    seed = int(seed)
    num_points = int(num_points)
    if num_clouds < 0:
        raise ValueError("num_clouds must be >= 0")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if num_points < 3:
        raise ValueError("num_points must be >= 3 (three special points)")
    if radius <= 0 or min_dist < 0:
        raise ValueError("radius must be > 0 and min_dist >= 0")
    seeds = _cloud_seeds(seed, num_clouds)
    pos64 = np.zeros((num_clouds, num_points, 3), dtype=np.float64)
    special = np.zeros((num_clouds, 3), dtype=np.int64)
    ok = np.zeros(num_clouds, dtype=np.bool_)
    if num_clouds:
        from .triangle_kernels import generate  # Numba: loaded only when clouds are generated

        generate(seeds, num_points, float(radius), float(min_dist), int(max_attempts),
                  pos64, special, ok)
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        raise RuntimeError(
            f"could not place {num_points} points with min_dist={min_dist} in a ball of "
            f"radius {radius} within {max_attempts} attempts (cloud {bad})")
    pos = pos64.astype(np.float32)
    z = np.zeros((num_clouds, num_points), dtype=np.int8)
    np.put_along_axis(z, special, 1, axis=1)
    y = (triangle_targets(pos, special).astype(np.float32) if num_clouds
         else np.zeros((0, 3), np.float32))
    attrs = {
        "format": RAW_FORMAT,
        "format_version": RAW_FORMAT_VERSION,
        "task": "triangle",
        "num_clouds": num_clouds,
        "seed": seed,
        "num_points": num_points,
        "radius": float(radius),
        "min_dist": float(min_dist),
        "split_names": list(SPLIT_NAMES),
        "split_fractions": list(SPLIT_FRACTIONS),
        "target_names": list(TARGET_NAMES),
        "rng": "SplitMix64 per cloud seeded by SeedSequence(seed, spawn_key=(0, k))",
    }
    return {"pos": pos, "z": z, "y": y, "special": special,
            "split": split_assignment(num_clouds, seed), "attrs": attrs}


def write_raw(path, data: dict, attrs: dict | None = None) -> None:
    """Write one raw Triangle HDF5 file atomically (in memory, then temp file + fsync + os.replace).

    Datasets: ``pos`` float32 [C,n,3], ``z`` int8 [C,n], ``y`` float32 [C,3],
    ``special`` int64 [C,3], ``split`` int8 [C]. Root attrs: ``data["attrs"]`` updated
    with ``attrs``.
    """
    all_attrs = dict(data.get("attrs", {}))
    all_attrs.update(attrs or {})

    def fill(f) -> None:
        for name, dtype in (("pos", np.float32), ("z", np.int8), ("y", np.float32),
                            ("special", np.int64), ("split", np.int8)):
            if name in data:
                f.create_dataset(name, data=np.ascontiguousarray(data[name], dtype=dtype), track_times=False)
        for key, value in all_attrs.items():
            f.attrs[key] = value

    atomic_write_hdf5(path, fill)  # made in memory: a full disk is a clear error, not a crash


def read_raw_attrs(path) -> dict:
    import h5py

    from .shards import _py

    with h5py.File(path, "r") as f:
        return {k: _py(v) for k, v in f.attrs.items()}



# --------------------------------------------------------------------------------------------
# the raw file as the Triangle task's source of shards
# --------------------------------------------------------------------------------------------
def triangle_make_block(shard, raw_path: str, cutoff: float, max_neighbors: int | None = None,
                        graph_fn=None, max_degree: int | None = None, strict: bool = False):
    """Read one shard task's clouds from the raw file (opened read-only here) -> GraphBlock, or
    ``(GraphBlock, skip report)`` when clouds with an atom of more than `max_degree` neighbours
    were left out (strict: ``DenseGraphError``)."""
    import h5py

    from .build import block_from_arrays, drop_dense_graphs
    from .neighbors import NeighborLimitError

    idx = np.asarray(shard.payload, dtype=np.int64)
    lo, hi = int(idx[0]), int(idx[-1]) + 1
    with h5py.File(raw_path, "r") as f:
        pos = f["pos"][lo:hi][idx - lo]
        z = f["z"][lo:hi][idx - lo]
        y = f["y"][lo:hi][idx - lo]
    ids = [f"triangle-{k:06d}" for k in idx.tolist()]

    def block(keep: np.ndarray):
        n = z.shape[1]
        node_ptr = np.arange(len(keep) + 1, dtype=np.int64) * n
        return block_from_arrays(pos[keep].reshape(-1, 3), z[keep].reshape(-1), node_ptr, y[keep],
                                 [ids[k] for k in keep], cutoff, max_neighbors, None, graph_fn, max_degree)

    keep = np.arange(len(ids))
    try:
        return block(keep)
    except NeighborLimitError as exc:
        from .readers.report import SkipReport

        report = SkipReport()
        dense = drop_dense_graphs({e.cloud: e for e in exc.excess}, ids, cutoff, exc.limit, strict, report)
        return block(np.array([k for k in keep if k not in dense], dtype=np.int64)), report.to_dict()


class TriangleRaw(Source):
    """The generated raw file (:func:`write_raw`) as a source of shards: one shard task per
    ``shard_size`` clouds of each split, in raw-file order."""

    kind = "generated"

    def shard_tasks(self, location, shard_size: int, options=None) -> list:
        import h5py

        from .build import ShardTask, shard_relpath

        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.check(location)
        with h5py.File(location, "r") as f:
            split = f["split"][()]
        tasks = []
        for code, name in enumerate(SPLIT_NAMES):
            idx = np.flatnonzero(split == code).astype(np.int64)
            for k, start in enumerate(range(0, len(idx), shard_size)):
                tasks.append(ShardTask(split=name, index=k, path=shard_relpath(name, k),
                                       payload=idx[start:start + shard_size]))
        return tasks

    @staticmethod
    def check(location) -> dict:
        """The raw file's attributes; ValueError unless it is a raw Triangle file."""
        raw = read_raw_attrs(location)
        if raw.get("task") != "triangle":
            raise ValueError(f"{location}: not a raw Triangle file (task={raw.get('task')!r})")
        return raw

    def attrs(self, location, options=None) -> dict:
        """Shard attributes recording how the clouds were generated."""
        from pathlib import Path

        raw = self.check(location)
        return {
            "source": (f"preprocess generate-triangle seed={raw['seed']} num_clouds={raw['num_clouds']} "
                       f"num_points={raw['num_points']} radius={raw['radius']} "
                       f"min_dist={raw['min_dist']} (raw file {Path(location).name})"),
            "target_names": ",".join(raw.get("target_names", [])),
            "raw_seed": int(raw["seed"]), "raw_num_clouds": int(raw["num_clouds"]),
            "raw_num_points": int(raw["num_points"]), "raw_radius": float(raw["radius"]),
            "raw_min_dist": float(raw["min_dist"]),
        }

    def block_maker(self, location, cutoff: float, max_neighbors: int | None = None, graph_fn=None,
                    max_degree: int | None = None, strict: bool = False):
        """``make_block(shard) -> GraphBlock`` for the Dask tasks (picklable)."""
        import functools
        from pathlib import Path

        return functools.partial(triangle_make_block, raw_path=str(Path(location).resolve()),
                                 cutoff=float(cutoff), max_neighbors=max_neighbors, graph_fn=graph_fn,
                                 max_degree=max_degree, strict=strict)
