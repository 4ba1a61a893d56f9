"""Tests for preprocess.neighbors: exact radius graphs vs a brute-force reference."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from preprocess import neighbors as nbm
from preprocess.neighbors import radius_graph, radius_graph_batch

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------
# brute-force references (same float64 arithmetic as the documented rule)
# --------------------------------------------------------------------------
def _d2(pos):
    pos = np.asarray(pos, dtype=np.float64)
    d = pos[None, :, :] - pos[:, None, :]  # d[i, j] = p_j - p_i
    return d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]


def ref_radius_graph(pos, cutoff, max_neighbors=None):
    pos = np.asarray(pos, dtype=np.float64)
    n = len(pos)
    if n == 0:
        return np.empty((2, 0), np.int64)
    d2 = _d2(pos)
    adj = d2 <= float(cutoff) * float(cutoff)
    np.fill_diagonal(adj, False)
    src, dst = [], []
    for i in range(n):
        js = np.flatnonzero(adj[i])
        if max_neighbors is not None and len(js) > max_neighbors:
            order = np.lexsort((js, d2[i, js]))  # by d2, ties by smaller j
            js = np.sort(js[order[:max_neighbors]])
        src.append(js)
        dst.append(np.full(len(js), i))
    return np.stack([np.concatenate(src), np.concatenate(dst)]).astype(np.int64)


def check(pos, cutoff, max_neighbors=None):
    got = radius_graph(pos, cutoff, max_neighbors)
    exp = ref_radius_graph(pos, cutoff, max_neighbors)
    assert got.dtype == np.int64
    assert got.shape == exp.shape
    np.testing.assert_array_equal(got, exp)
    return got


# --------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------
def clouds(max_n=120):
    """Random clouds with adversarial structure."""

    @st.composite
    def _cloud(draw):
        n = draw(st.integers(0, max_n))
        kind = draw(st.sampled_from(
            ["uniform", "lattice", "dups", "plane", "line", "huge", "clusters"]))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        if kind == "uniform":
            pos = rng.uniform(-5, 5, (n, 3))
        elif kind == "lattice":  # exact-cutoff pairs with cutoff 1, sqrt2...
            pos = rng.integers(-3, 4, (n, 3)).astype(np.float64)
        elif kind == "dups":
            base = rng.uniform(-2, 2, (max(1, n // 3), 3))
            pos = base[rng.integers(0, len(base), n)]
        elif kind == "plane":
            pos = rng.uniform(-5, 5, (n, 3))
            pos[:, draw(st.integers(0, 2))] = 1.5
        elif kind == "line":
            pos = np.zeros((n, 3))
            pos[:, draw(st.integers(0, 2))] = rng.integers(-10, 10, n) * 0.5
        elif kind == "huge":
            pos = rng.uniform(-5, 5, (n, 3)) + draw(st.sampled_from([1e6, -1e6, 3e7]))
        else:  # far-apart clusters -> sparse (hash) cell mode
            centres = rng.uniform(-1e5, 1e5, (3, 3))
            pos = centres[rng.integers(0, 3, n)] + rng.uniform(-3, 3, (n, 3))
        return pos

    return _cloud()


cutoffs = st.sampled_from([0.5, 1.0, 2.0 ** 0.5, 3.0 ** 0.5, 2.0, 2.5, 4.5, 10.0])


# --------------------------------------------------------------------------
# single cloud vs brute force
# --------------------------------------------------------------------------
@SETTINGS
@given(pos=clouds(), cutoff=cutoffs)
def test_matches_bruteforce(pos, cutoff):
    check(pos, cutoff)


@SETTINGS
@given(pos=clouds(), cutoff=cutoffs, k=st.integers(0, 12))
def test_max_neighbors_matches_knn_reference(pos, cutoff, k):
    check(pos, cutoff, k)


@SETTINGS
@given(pos=hnp.arrays(np.float64, st.tuples(st.integers(0, 60), st.just(3)),
                      elements=st.floats(-20, 20, allow_nan=False, width=64)),
       cutoff=st.floats(0.01, 30.0))
def test_arbitrary_floats(pos, cutoff):
    """Raw hypothesis floats: many exact ties / repeated values."""
    check(pos, cutoff)


@pytest.mark.parametrize("n", [nbm.BRUTE_MAX_ATOMS, nbm.BRUTE_MAX_ATOMS + 1, 700, 5000])
@pytest.mark.parametrize("k", [None, 1, 8])
def test_sizes_across_code_paths(n, k):
    # brute (<= BRUTE_MAX_ATOMS), serial cell list, parallel cell list
    rng = np.random.default_rng(n)
    pos = rng.uniform(0, (n / 0.05) ** (1 / 3), (n, 3))
    check(pos, 4.5, k)


def test_parallel_and_serial_agree_and_respect_threads():
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 40, (nbm.PARALLEL_MIN_ATOMS + 100, 3))
    before = numba.get_num_threads()
    a = radius_graph(pos, 3.0)
    numba.set_num_threads(1)
    try:
        b = radius_graph(pos, 3.0)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(a, b)
    assert numba.get_num_threads() == before


def test_empty_and_single():
    for pos in (np.zeros((0, 3)), np.zeros((1, 3))):
        e = radius_graph(pos, 1.0)
        assert e.shape == (2, 0) and e.dtype == np.int64
        assert radius_graph(pos, 1.0, 3).shape == (2, 0)


def test_duplicates_are_neighbours_no_self_loops():
    pos = np.zeros((4, 3))
    e = check(pos, 1.0)
    assert e.shape[1] == 12
    assert not (e[0] == e[1]).any()


def test_exact_cutoff_inclusive_lattice():
    g = np.stack(np.meshgrid(*[np.arange(5.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for c in (1.0, 2.0 ** 0.5, 3.0 ** 0.5, 2.0):
        e = check(g, c)
    e = radius_graph(g, 1.0)
    d = np.linalg.norm(g[e[0]] - g[e[1]], axis=1)
    assert np.all(d == 1.0) and e.shape[1] == 2 * 3 * 4 * 25  # 3 axes x 4 gaps x 25 lines


def test_output_layout_sorted_and_symmetric():
    rng = np.random.default_rng(3)
    pos = rng.uniform(0, 10, (300, 3))
    e = radius_graph(pos, 2.0)
    key = e[1] * 300 + e[0]
    assert np.all(np.diff(key) > 0)  # sorted by (target, source), unique
    fwd = set(zip(e[0].tolist(), e[1].tolist()))
    assert fwd == set(zip(e[1].tolist(), e[0].tolist()))


def test_float32_input_is_computed_in_float64():
    rng = np.random.default_rng(4)
    pos32 = rng.uniform(0, 6, (200, 3)).astype(np.float32)
    got = radius_graph(pos32, 1.3)
    np.testing.assert_array_equal(got, ref_radius_graph(pos32.astype(np.float64), 1.3))
    # integer coordinates too
    check(rng.integers(0, 4, (50, 3)), 1.0)


def test_huge_and_spread_coordinates_use_little_memory():
    rng = np.random.default_rng(5)
    pos = rng.uniform(-1e9, 1e9, (2000, 3))  # would be ~1e24 dense cells
    pos[:200] = rng.uniform(0, 5, (200, 3)) + 1e6
    check(pos, 1.0)
    check(pos, 1.0, 3)


def test_tiny_cutoff():
    pos = np.array([[0, 0, 0], [1e-200, 0, 0], [1e-100, 0, 0], [1, 1, 1]], float)
    for c in (1e-300, 1e-170, 1e-120, 1e-99):
        check(pos, c)


def test_max_neighbors_ties_by_smaller_index():
    # 6 neighbours of atom 0 at the same distance 1
    pos = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0],
                    [0, 0, 1], [0, 0, -1]], float)
    e = radius_graph(pos, 1.0, max_neighbors=2)
    assert e[0][e[1] == 0].tolist() == [1, 2]
    check(pos, 1.0, 2)
    assert radius_graph(pos, 1.0, 0).shape == (2, 0)


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected_with_atom_index(bad):
    pos = np.zeros((10, 3))
    pos[7, 1] = bad
    pos[9, 0] = bad
    with pytest.raises(ValueError, match=r"non-finite.*atom index 7"):
        radius_graph(pos, 1.0)
    with pytest.raises(ValueError, match=r"atom index 7"):
        radius_graph_batch(pos, np.array([0, 5, 10]), 1.0)


@pytest.mark.parametrize("cutoff", [0.0, -1.0, np.nan, np.inf, "x", None])
def test_bad_cutoff(cutoff):
    with pytest.raises(ValueError, match="cutoff"):
        radius_graph(np.zeros((3, 3)), cutoff)


@pytest.mark.parametrize("shape", [(3,), (4, 2), (2, 3, 3), (5, 4)])
def test_bad_shape(shape):
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        radius_graph(np.zeros(shape), 1.0)


@pytest.mark.parametrize("k", [-1, 1.5, True, "3"])
def test_bad_max_neighbors(k):
    with pytest.raises(ValueError, match="max_neighbors"):
        radius_graph(np.zeros((3, 3)), 1.0, k)


@pytest.mark.parametrize("ptr", [[1, 3], [0, 2], [0, 3, 2, 4], [[0, 4]], [0.0, 4.0], []])
def test_bad_ptr(ptr):
    with pytest.raises(ValueError, match="ptr"):
        radius_graph_batch(np.zeros((4, 3)), np.array(ptr), 1.0)


# --------------------------------------------------------------------------
# batch vs per-cloud
# --------------------------------------------------------------------------
def _check_batch(pos, ptr, cutoff, k=None):
    ei, ep = radius_graph_batch(pos, ptr, cutoff, k)
    assert ei.dtype == np.int64 and ep.dtype == np.int64
    assert ep.shape == (len(ptr),) and ep[0] == 0 and ep[-1] == ei.shape[1]
    for b in range(len(ptr) - 1):
        exp = radius_graph(pos[ptr[b]:ptr[b + 1]], cutoff, k)
        np.testing.assert_array_equal(ei[:, ep[b]:ep[b + 1]], exp)


@SETTINGS
@given(sizes=st.lists(st.integers(0, 220), min_size=0, max_size=8),
       seed=st.integers(0, 2**32 - 1), cutoff=cutoffs,
       k=st.one_of(st.none(), st.integers(0, 10)),
       shift=st.sampled_from([0.0, 1e6]))
def test_batch_matches_per_cloud(sizes, seed, cutoff, k, shift):
    rng = np.random.default_rng(seed)
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    pos = rng.uniform(0, 8, (int(ptr[-1]), 3)) + shift
    if len(pos) > 4:
        pos[1] = pos[3]  # a duplicate
    _check_batch(pos, ptr, cutoff, k)


def test_batch_triangle_like_and_threads():
    rng = np.random.default_rng(7)
    v = rng.normal(size=(300 * 100, 3))
    v *= 10 * rng.uniform(size=(len(v), 1)) ** (1 / 3) / np.linalg.norm(v, axis=1, keepdims=True)
    ptr = np.arange(0, len(v) + 1, 100)
    _check_batch(v, ptr, 10.0)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        a = radius_graph_batch(v, ptr, 10.0, 16)
    finally:
        numba.set_num_threads(before)
    b = radius_graph_batch(v, ptr, 10.0, 16)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_batch_with_large_cloud_and_empty_clouds():
    rng = np.random.default_rng(8)
    sizes = [0, 3000, 0, 1, 50, 0]
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    pos = rng.uniform(0, 30, (ptr[-1], 3))
    _check_batch(pos, ptr, 3.0)
    _check_batch(pos, ptr, 3.0, 4)
    # the large cloud vs brute force directly
    ei, ep = radius_graph_batch(pos, ptr, 3.0)
    np.testing.assert_array_equal(ei[:, ep[1]:ep[2]], ref_radius_graph(pos[:3000], 3.0))


def test_batch_empty():
    ei, ep = radius_graph_batch(np.zeros((0, 3)), np.array([0]), 1.0)
    assert ei.shape == (2, 0) and ep.tolist() == [0]
    ei, ep = radius_graph_batch(np.zeros((0, 3)), np.array([0, 0, 0]), 1.0)
    assert ei.shape == (2, 0) and ep.tolist() == [0, 0, 0]


# --------------------------------------------------------------------------
# batch: single-pass small-cloud path, index dtype
# --------------------------------------------------------------------------
def test_batch_small_clouds_vs_bruteforce_exact_cutoff_and_dups():
    # integer lattices (pairs at exactly the cutoff), duplicates, clouds at
    # the brute/cell-list size boundary, empty and one-atom clouds
    rng = np.random.default_rng(11)
    m = nbm.BATCH_BRUTE_MAX_ATOMS
    sizes = [0, 1, 2, 7, 64, 65, 100, m - 1, m, m + 1, 0, 3]
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    pos = rng.integers(-3, 4, (int(ptr[-1]), 3)).astype(np.float64)
    for cutoff in (1.0, 2.0 ** 0.5, 3.0 ** 0.5, 2.0):
        for k in (None, 0, 1, 5):
            ei, ep = radius_graph_batch(pos, ptr, cutoff, k)
            for b in range(len(sizes)):
                got = ei[:, ep[b]:ep[b + 1]]
                exp = ref_radius_graph(pos[ptr[b]:ptr[b + 1]], cutoff, k)
                np.testing.assert_array_equal(got, exp)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, "int32"])
@pytest.mark.parametrize("k", [None, 3])
def test_batch_index_dtype(dtype, k):
    rng = np.random.default_rng(12)
    sizes = [100, 0, 5, 300, 100, 1, 160, 161]
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    pos = rng.uniform(0, 9, (int(ptr[-1]), 3))
    ref_ei, ref_ep = radius_graph_batch(pos, ptr, 3.0, k)
    ei, ep = radius_graph_batch(pos, ptr, 3.0, k, dtype=dtype)
    assert ei.dtype == np.dtype(dtype) and ep.dtype == np.int64
    np.testing.assert_array_equal(ep, ref_ep)
    np.testing.assert_array_equal(ei, ref_ei)
    # threads do not change the result
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        ei1, ep1 = radius_graph_batch(pos, ptr, 3.0, k, dtype=dtype)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(ei1, ei)
    np.testing.assert_array_equal(ep1, ep)
    e0, p0 = radius_graph_batch(np.zeros((0, 3)), [0], 3.0, dtype=dtype)
    assert e0.shape == (2, 0) and e0.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", [np.uint16, np.int8, np.float32, "x", object])
def test_batch_bad_dtype(dtype):
    with pytest.raises(ValueError, match="dtype"):
        radius_graph_batch(np.zeros((4, 3)), np.array([0, 4]), 1.0, dtype=dtype)


def test_batch_dtype_too_small_for_cloud():
    n = np.iinfo(np.int16).max + 2  # one cloud of n atoms: largest index 32768
    pos = np.zeros((n + 1, 3))
    with pytest.raises(ValueError, match="dtype"):
        radius_graph_batch(pos, np.array([0, 1, n + 1]), 1.0, dtype=np.int16)


# --------------------------------------------------------------------------
# max_degree: clouds with an atom of too many neighbours are refused by the
# count pass, before any of their edges exist
# --------------------------------------------------------------------------
def _concat(clouds):
    ptr = np.concatenate([[0], np.cumsum([len(c) for c in clouds])]).astype(np.int64)
    pos = np.concatenate(clouds) if clouds else np.zeros((0, 3))
    return pos, ptr


def _ref_max_degree(pos, cutoff, k=None):
    if len(pos) == 0:
        return 0
    adj = _d2(pos) <= float(cutoff) * float(cutoff)
    np.fill_diagonal(adj, False)
    deg = adj.sum(axis=1)
    return int(deg.max() if k is None else np.minimum(deg, k).max())


@SETTINGS
@given(sizes=st.lists(st.integers(0, 220), min_size=1, max_size=6),
       seed=st.integers(0, 2**32 - 1), limit=st.integers(0, 40),
       k=st.one_of(st.none(), st.integers(0, 60)))
def test_max_degree_refuses_exactly_the_clouds_over_it(sizes, seed, limit, k):
    """Brute-force (<= 160 atoms) and cell-list clouds alike: refused iff an atom keeps more
    than `limit` neighbours after the k limit; the others' graphs are unchanged."""
    rng = np.random.default_rng(seed)
    clouds = [rng.uniform(0, rng.uniform(2, 12), (n, 3)) for n in sizes]
    pos, ptr = _concat(clouds)
    over = [b for b, c in enumerate(clouds) if _ref_max_degree(c, 3.0, k) > limit]
    found = nbm.degree_excess(pos, ptr, 3.0, limit, k)
    assert [e.cloud for e in found] == over
    for e in found:  # the atom named has the degree named, and it is over the limit
        c = clouds[e.cloud]
        assert (_d2(c)[e.atom] <= 9.0).sum() - 1 == e.degree > limit
    if over:
        with pytest.raises(nbm.NeighborLimitError) as ei:
            radius_graph_batch(pos, ptr, 3.0, k, max_degree=limit)
        assert ei.value.excess == found and ei.value.limit == limit
    else:
        got = radius_graph_batch(pos, ptr, 3.0, k, max_degree=limit)
        want = radius_graph_batch(pos, ptr, 3.0, k)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("n", [100, 5000])  # brute force, cell list
def test_coincident_atoms_are_refused_with_the_atom_and_its_degree(n):
    rng = np.random.default_rng(5)
    good = rng.uniform(0, 40, (400, 3))
    blob = np.vstack([np.full((n, 3), 7.5), rng.uniform(20, 40, (30, 3))])
    pos, ptr = _concat([good, blob, good[:50]])
    with pytest.raises(nbm.NeighborLimitError, match=f"cloud 1: atom 0 has {n - 1}") as ei:
        radius_graph_batch(pos, ptr, 4.5, max_degree=64, dtype=np.int32)
    assert ei.value.excess == [nbm.DegreeExcess(1, 0, n - 1)]
    assert "max_degree = 64" in str(ei.value) and "4.5" in str(ei.value)
    # the limit is on the degree kept: a k limit at or below it never refuses
    ei8, ep8 = radius_graph_batch(pos, ptr, 4.5, 8, max_degree=64)
    np.testing.assert_array_equal(ei8, radius_graph_batch(pos, ptr, 4.5, 8)[0])
    assert np.diff(ep8)[1] >= 8 * n  # every blob atom keeps 8
    with pytest.raises(nbm.NeighborLimitError):
        radius_graph_batch(pos, ptr, 4.5, 65, max_degree=64)


@pytest.mark.parametrize("n", [60, 1000])
def test_max_degree_is_inclusive(n):
    pos, ptr = _concat([np.zeros((n, 3))])  # every atom has n - 1 neighbours
    ei, _ = radius_graph_batch(pos, ptr, 1.0, max_degree=n - 1)
    assert ei.shape[1] == n * (n - 1)
    with pytest.raises(nbm.NeighborLimitError):
        radius_graph_batch(pos, ptr, 1.0, max_degree=n - 2)


def test_a_huge_coincident_cloud_is_refused_in_linear_time():
    """The count pass stops at the first atom over the limit: 200,000 atoms on one spot (4e10
    pairs, 320 GB of int32 edges) are refused at once (0.3 s; minutes without the stop)."""
    import time

    small, small_ptr = _concat([np.zeros((500, 3))])
    with pytest.raises(nbm.NeighborLimitError):  # compiled already, or now
        radius_graph_batch(small, small_ptr, 4.5, max_degree=256)
    pos, ptr = _concat([np.random.default_rng(0).uniform(0, 50, (1000, 3)), np.full((200_000, 3), 3.0)])
    t0 = time.perf_counter()
    with pytest.raises(nbm.NeighborLimitError, match="atom 0 has 199999"):
        radius_graph_batch(pos, ptr, 4.5, max_degree=256)
    assert nbm.degree_excess(pos, ptr, 4.5, 256) == [nbm.DegreeExcess(1, 0, 199_999)]
    assert time.perf_counter() - t0 < 10.0


@pytest.mark.parametrize("bad", [-1, 2.5, True, "8"])
def test_bad_max_degree(bad):
    with pytest.raises(ValueError, match="max_degree"):
        radius_graph_batch(np.zeros((3, 3)), np.array([0, 3]), 1.0, max_degree=bad)
