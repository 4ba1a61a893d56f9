import h5py
import numpy as np
import pytest

from preprocess.triangle import (
    generate_triangle_clouds,
    split_assignment,
    triangle_targets,
    write_raw,
)


@pytest.fixture(scope="module")
def clouds():
    return generate_triangle_clouds(40, seed=7)


def test_shapes_and_dtypes(clouds):
    assert clouds["pos"].shape == (40, 100, 3) and clouds["pos"].dtype == np.float32
    assert clouds["z"].shape == (40, 100) and clouds["z"].dtype == np.int8
    assert clouds["y"].shape == (40, 3) and clouds["y"].dtype == np.float32
    assert clouds["split"].shape == (40,) and clouds["split"].dtype == np.int8


def test_deterministic(clouds):
    again = generate_triangle_clouds(40, seed=7)
    for k in ("pos", "z", "y", "split", "special"):
        assert again[k].tobytes() == clouds[k].tobytes()
    other = generate_triangle_clouds(40, seed=8)
    assert not np.array_equal(other["pos"], clouds["pos"])


def test_prefix_independent(clouds):
    small = generate_triangle_clouds(5, seed=7)
    for k in ("pos", "z", "y", "special"):
        assert small[k].tobytes() == clouds[k][:5].tobytes()


def test_independent_of_numba_threads(clouds):
    import numba

    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = generate_triangle_clouds(40, seed=7)
    finally:
        numba.set_num_threads(old)
    assert one["pos"].tobytes() == clouds["pos"].tobytes()


def test_geometry(clouds):
    pos = clouds["pos"].astype(np.float64)
    assert np.linalg.norm(pos, axis=-1).max() <= 10.0 + 1e-5
    d = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1)
    d[:, np.arange(100), np.arange(100)] = np.inf
    assert d.min() >= 2.0 - 1e-5  # float32 storage rounding only


def test_special_points(clouds):
    z = clouds["z"]
    assert set(np.unique(z)) == {0, 1}
    assert (z.sum(axis=1) == 3).all()
    special = clouds["special"]
    assert all(len(set(s)) == 3 for s in special.tolist())
    assert (np.take_along_axis(z, special, axis=1) == 1).all()
    # specials are not always the first points
    assert special.max() > 3


def test_targets_match_recomputation(clouds):
    pos = clouds["pos"].astype(np.float64)
    for k in range(5):
        idx = np.flatnonzero(clouds["z"][k] == 1)
        a, b, c = pos[k, idx]
        dist = np.linalg.norm(pos[k].mean(0) - (a + b + c) / 3)
        perim = np.linalg.norm(a - b) + np.linalg.norm(b - c) + np.linalg.norm(c - a)
        area = 0.5 * np.linalg.norm(np.cross(b - a, c - a))
        np.testing.assert_allclose(clouds["y"][k], [dist, perim, area], rtol=1e-6)


def test_targets_hand_made_triangle():
    # 3-4-5 right triangle among 4 points; the 4th point is at the origin.
    pos = np.array([[0, 0, 0], [3, 0, 0], [0, 4, 0], [0, 0, 0]], dtype=np.float64)
    pos[3] = [8, 4, 0]
    special = np.array([0, 1, 2])
    dist, perim, area = triangle_targets(pos, special)
    assert perim == pytest.approx(12.0)
    assert area == pytest.approx(6.0)
    com = pos.mean(0)  # (11/4, 2, 0)
    centroid = np.array([1.0, 4.0 / 3.0, 0.0])
    assert dist == pytest.approx(np.linalg.norm(com - centroid))
    # order of the special points does not matter
    np.testing.assert_allclose(triangle_targets(pos, [2, 0, 1]), [dist, perim, area])


def test_split_proportions():
    s = split_assignment(1000, seed=3)
    assert np.bincount(s, minlength=3).tolist() == [800, 100, 100]
    assert np.array_equal(s, split_assignment(1000, seed=3))
    assert not np.array_equal(s, split_assignment(1000, seed=4))
    assert np.bincount(split_assignment(50_000, 0)).tolist() == [40_000, 5_000, 5_000]


def test_impossible_packing_raises():
    with pytest.raises(RuntimeError, match="could not place"):
        generate_triangle_clouds(1, seed=0, num_points=50, radius=2.0, min_dist=2.0,
                                 max_attempts=10_000)


def test_write_raw(tmp_path, clouds):
    path = tmp_path / "raw.h5"
    write_raw(path, clouds, {"note": "x"})
    assert [p.name for p in tmp_path.iterdir()] == ["raw.h5"]
    with h5py.File(path, "r") as f:
        for k in ("pos", "z", "y", "split", "special"):
            assert np.array_equal(f[k][()], clouds[k])
            assert f[k].dtype == clouds[k].dtype
        assert f.attrs["seed"] == 7 and f.attrs["num_points"] == 100
        assert f.attrs["radius"] == 10.0 and f.attrs["min_dist"] == 2.0
        assert f.attrs["num_clouds"] == 40 and f.attrs["note"] == "x"
        assert f.attrs["task"] == "triangle"


def test_write_raw_atomic_on_error(tmp_path, clouds):
    bad = dict(clouds)
    bad["attrs"] = {"bad": object()}  # h5py cannot store this attribute
    with pytest.raises(TypeError):
        write_raw(tmp_path / "raw.h5", bad)
    assert list(tmp_path.iterdir()) == []
