"""Exact radius-graph (neighbour list) construction for 3D point clouds.

Two entry points:

``radius_graph(pos, cutoff, max_neighbors=None)``
    One cloud, ``pos`` of shape ``[N, 3]``.  Returns ``edge_index``, an
    ``int64`` array of shape ``[2, E]``.

``radius_graph_batch(pos, ptr, cutoff, max_neighbors=None, dtype=np.int64)``
    Many clouds stored back to back: ``pos`` of shape ``[sum N_b, 3]`` with CSR
    offsets ``ptr`` (``[B + 1]``, ``ptr[0] == 0``, ``ptr[-1] == len(pos)``,
    non-decreasing); cloud ``b`` is ``pos[ptr[b]:ptr[b + 1]]``.  Returns
    ``(edge_index, edge_ptr)``: ``edge_index`` is ``[2, E]`` (``int64`` by
    default; ``dtype=np.int32`` or ``np.int16`` gives that dtype, same values,
    ``ValueError`` if a cloud's largest local index does not fit) with
    indices LOCAL to each cloud (0-based within the cloud), and ``edge_ptr``
    (``[B + 1]``, ``int64``) gives the CSR offsets of each cloud's edges, so
    ``edge_index[:, edge_ptr[b]:edge_ptr[b + 1]]`` equals
    ``radius_graph(pos[ptr[b]:ptr[b + 1]], cutoff, max_neighbors)``.

Semantics (enforced by ``tests/test_neighbors.py``)
---------------------------------------------------
* **Exact and inclusive.**  All arithmetic is float64 (float32 or integer
  input is converted first).  An ordered pair ``(j, i)`` with ``i != j`` is an
  edge iff ``d2 <= c2``, where ``c2 = cutoff * cutoff`` and
  ``d2 = dx*dx + dy*dy + dz*dz`` with ``dx = p_j[0] - p_i[0]`` etc., every
  operation rounded in float64 and summed left to right.  This is exactly
  what the brute-force reference ``((p[:, None] - p[None]) ** 2).sum(-1) <=
  cutoff ** 2`` computes, so a pair at exactly the cutoff (e.g. integer
  lattice, cutoff 1.0) IS an edge.  No fused multiply-add / fast-math is used.
* **Both directions, no self loops.**  If ``(j, i)`` is an edge so is
  ``(i, j)``.  Coincident points (distance 0) are distinct atoms and ARE
  neighbours of each other; an atom is never its own neighbour.
* **Layout.**  Row 0 is the source ``j``, row 1 the target ``i`` (PyG
  ``flow="source_to_target"``: messages flow ``j -> i``).  Edges are sorted by
  target ``i``, then by source ``j``; dtype ``int64``.
* **max_neighbors=k** (``int >= 0`` or ``None``): for each target ``i`` keep
  only the ``k`` nearest sources, ordered by ``(d2, j)`` (ties in ``d2`` are
  broken by the smaller source index), then re-sorted by ``(i, j)``.  Unlike
  ``torch_cluster.radius_graph``, which keeps whichever neighbours it finds
  first, this is deterministic and exact.  Note that with ``max_neighbors``
  the graph need not be symmetric.
* **max_degree=K** (``radius_graph_batch`` and ``degree_excess`` only): a
  cloud in which an atom keeps more than ``K`` neighbours (after
  ``max_neighbors``) is refused by the count pass, before any of its edges
  exist: ``NeighborLimitError`` lists every such cloud with one such atom and
  its degree.  Coincident atoms (a broken structure) would otherwise need
  ``n * (n - 1)`` edges.
* **Validation.**  ``pos`` must be a real array of shape ``[N, 3]`` with only
  finite values; a NaN/inf raises ``ValueError`` naming the first offending
  atom index.  ``cutoff`` must be finite and ``> 0``.  ``N == 0`` gives an
  empty ``[2, 0]`` result.

Algorithm
---------
A cell list compiled with Numba (``@njit(cache=True, nogil=True)``).  Space is
cut into cubic cells of side ``>= cutoff`` (``cutoff * (1 + 1e-5)``: the small
margin makes the "neighbours lie in adjacent cells" argument hold despite the
rounding of the cell coordinates).  Atoms are counting-sorted by cell and the
27 cells around each target cell are scanned.  Memory is O(N) whatever the
spread of the coordinates: when the bounding box holds at most ``4 N + 64``
cells a dense grid is used (the three z-adjacent cells of each (x, y) column
are then one contiguous run of atoms); otherwise only the occupied cells are
stored and looked up through an open-addressing hash table (coordinates of
``1e6`` or clouds made of far-apart clusters never allocate a giant grid).
The number of cells per axis is capped at ``2**31`` (the cell side grows
instead), which keeps the cell integers and the rounding margin safe.

Single cloud: counts pass then fill pass (two-pass count-then-fill); for
``N >= PARALLEL_MIN_ATOMS`` both passes run in a ``prange`` over
``numba.get_num_threads()`` chunks of cells balanced by atom count, otherwise
serially.  Tiny clouds (``N <= BRUTE_MAX_ATOMS``) use brute force.

Batch: ``prange`` over chunks of whole clouds (balanced by estimated cost);
each cloud is processed serially.  No parallel region is ever launched per
cloud.  Clouds of at most ``BATCH_BRUTE_MAX_ATOMS`` atoms (all of them, for
typical datasets) are done in ONE distance pass: pass 1 computes each pair's
``d2`` once (per target row, a vectorised mask loop then a branch-free
compaction), appending the sorted local sources to a compact ``uint8``
chunk buffer and recording the degrees; after a prefix sum over the clouds,
pass 2 copies the buffer into the output (a sequential widening copy for row
0 and a run fill for row 1).  Larger clouds use a serial cell list: degrees
in pass 1, the fill pass in pass 2 writing straight into the output.  The
output and the work buffers are allocated by numpy in Python (transparent
huge pages, see ``radius_graph_batch``); for the many-small-clouds workload
the cost is then dominated by producing the output itself (first-touch page
faults + store bandwidth of ``16 * E`` bytes for int64; pass
``dtype=np.int32`` to halve it).

The thread count is whatever the caller set with ``numba.set_num_threads``;
this module never changes it.
"""

from __future__ import annotations

import math
import operator
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from .spec import DEFAULT_MAX_DEGREE

__all__ = ["DEFAULT_MAX_DEGREE", "DegreeExcess", "NeighborLimitError", "degree_excess", "optional_limit", "radius_graph",
           "radius_graph_batch"]

#: clouds with at most this many atoms use brute force in ``radius_graph``
BRUTE_MAX_ATOMS = 48
#: single clouds with at least this many atoms use the parallel passes
PARALLEL_MIN_ATOMS = 4096
#: clouds in ``radius_graph_batch`` with at most this many atoms use brute force
BATCH_BRUTE_MAX_ATOMS = 160

_MARGIN = 1e-5  # relative enlargement of the cell side over the cutoff
_MAX_CELLS_PER_DIM = float(2**31)
_MIN_SIDE = 1.1e-150  # below this, cutoff**2 may underflow; see _cell_side
_DENSE_FACTOR = 4
_DENSE_EXTRA = 64
_RANK_SORT_MAX = 64


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _rank_write(bufj, bufd, m, kmax, out, o, presorted):
    """Write the neighbours of one target (sources bufj[:m], distinct, with
    squared distances bufd[:m]) to out[o:], sorted by source index; keep only
    the kmax nearest by (d2, j) when kmax >= 0.  presorted: bufj[:m] is
    already increasing."""
    if kmax < 0 or m <= kmax:
        if presorted:
            for t in range(m):
                out[o + t] = bufj[t]
        elif m <= _RANK_SORT_MAX:
            # branch-free rank sort (values are distinct): O(m^2) but
            # vectorised, faster than insertion sort for typical m ~ 20-60
            for t in range(m):
                v = bufj[t]
                r = 0
                for u in range(m):
                    r += 1 if bufj[u] < v else 0
                out[o + r] = v
        else:
            srt = np.sort(bufj[:m])
            for t in range(m):
                out[o + t] = srt[t]
        return
    if kmax == 0:
        return
    # order candidates by (d2, j): sort by j first, then stable sort by d2
    js = bufj[:m].copy()
    ds = bufd[:m].copy()
    if not presorted:
        p = np.argsort(js, kind="mergesort")
        js = js[p]
        ds = ds[p]
    p2 = np.argsort(ds, kind="mergesort")
    keep = np.sort(js[p2[:kmax]])
    for t in range(kmax):
        out[o + t] = keep[t]


@njit(cache=True, nogil=True)
def _cell_side(x, y, z, n, cutoff):
    """Bounding-box minimum and the cell side.  Returns ok=False when the
    extent overflows float64 (coordinates near 1e308); callers then fall back
    to brute force, which is still exact."""
    xmin = x[0]
    xmax = x[0]
    ymin = y[0]
    ymax = y[0]
    zmin = z[0]
    zmax = z[0]
    for a in range(1, n):
        v = x[a]
        if v < xmin:
            xmin = v
        elif v > xmax:
            xmax = v
        v = y[a]
        if v < ymin:
            ymin = v
        elif v > ymax:
            ymax = v
        v = z[a]
        if v < zmin:
            zmin = v
        elif v > zmax:
            zmax = v
    ext = max(xmax - xmin, ymax - ymin, zmax - zmin)
    ok = np.isfinite(ext)
    # side >= cutoff * (1 + margin): |p_j - p_i| <= cutoff (as decided by the
    # float64 test) then implies cell coordinates differ by at most 1 even
    # after rounding, because the rounding error of (p - min) / side is at
    # most ~4 * 2**-53 * (cells per dim) <= 2**-20 << margin.
    side = cutoff * (1.0 + _MARGIN)
    side = max(side, ext / (_MAX_CELLS_PER_DIM - 2.0), _MIN_SIDE)
    return ok, xmin, ymin, zmin, side, ext


@njit(cache=True, nogil=True)
def _hash3(cx, cy, cz, mask):
    h = cx * 0x2545F4914F6CDD1D + cy * 0x1B873593 + cz * 0x5BD1E995CC9E2D51
    h ^= h >> 29
    h *= 0x3C6EF372FE94F82B
    h ^= h >> 32
    return h & mask


@njit(cache=True, nogil=True)
def _hash_find(hk, hv, mask, cx, cy, cz):
    s = _hash3(cx, cy, cz, mask)
    while True:
        v = hv[s]
        if v < 0:
            return -1
        if hk[s, 0] == cx and hk[s, 1] == cy and hk[s, 2] == cz:
            return v
        s = (s + 1) & mask


@njit(cache=True, nogil=True)
def _build_cells(x, y, z, n, cutoff):
    """Sort the atoms by cell.

    Returns (ok, dense, nx, ny, nz, ncells, cell_start, order, sx, sy, sz,
    ccoord, hk, hv, mask).  Atoms order[cell_start[c]:cell_start[c+1]] (in
    increasing index order) lie in cell c; sx/sy/sz are their coordinates in
    that order.  Dense mode: c is the linear index (cx * ny + cy) * nz + cz.
    Hash mode: c numbers the occupied cells, ccoord[c] are their integer
    coordinates and (hk, hv, mask) is the hash table from coordinates to c.
    """
    ok, xmin, ymin, zmin, side, ext = _cell_side(x, y, z, n, cutoff)
    inv = 1.0 / side
    cx = np.empty(n, np.int64)
    cy = np.empty(n, np.int64)
    cz = np.empty(n, np.int64)
    nx = 1
    ny = 1
    nz = 1
    if ok:
        for a in range(n):
            # values are >= 0 and < 2**31, so int() is floor()
            cx[a] = int((x[a] - xmin) * inv)
            cy[a] = int((y[a] - ymin) * inv)
            cz[a] = int((z[a] - zmin) * inv)
        nx = cx.max() + 1
        ny = cy.max() + 1
        nz = cz.max() + 1
    else:  # unused by the callers (they fall back to brute force)
        cx[:] = 0
        cy[:] = 0
        cz[:] = 0
    dense = float(nx) * float(ny) * float(nz) <= _DENSE_FACTOR * n + _DENSE_EXTRA
    cid = np.empty(n, np.int64)
    mask = 0
    if dense or not ok:
        ncells = nx * ny * nz
        for a in range(n):
            cid[a] = (cx[a] * ny + cy[a]) * nz + cz[a]
        ccoord = np.empty((0, 3), np.int64)
        hk = np.empty((0, 3), np.int64)
        hv = np.empty(0, np.int64)
    else:
        size = 1
        while size < 2 * n:
            size *= 2
        mask = size - 1
        hk = np.empty((size, 3), np.int64)
        hv = np.full(size, -1, np.int64)
        ccoord = np.empty((n, 3), np.int64)
        ncells = 0
        for a in range(n):
            s = _hash3(cx[a], cy[a], cz[a], mask)
            while True:
                v = hv[s]
                if v < 0:
                    hv[s] = ncells
                    hk[s, 0] = cx[a]
                    hk[s, 1] = cy[a]
                    hk[s, 2] = cz[a]
                    ccoord[ncells, 0] = cx[a]
                    ccoord[ncells, 1] = cy[a]
                    ccoord[ncells, 2] = cz[a]
                    cid[a] = ncells
                    ncells += 1
                    break
                if hk[s, 0] == cx[a] and hk[s, 1] == cy[a] and hk[s, 2] == cz[a]:
                    cid[a] = v
                    break
                s = (s + 1) & mask
    # stable counting sort by cell id
    cell_start = np.zeros(ncells + 1, np.int64)
    for a in range(n):
        cell_start[cid[a] + 1] += 1
    for c in range(ncells):
        cell_start[c + 1] += cell_start[c]
    fillp = cell_start[:-1].copy()
    order = np.empty(n, np.int64)
    sx = np.empty(n, np.float64)
    sy = np.empty(n, np.float64)
    sz = np.empty(n, np.float64)
    for a in range(n):
        c = cid[a]
        k = fillp[c]
        fillp[c] = k + 1
        order[k] = a
        sx[k] = x[a]
        sy[k] = y[a]
        sz[k] = z[a]
    return (ok, dense, nx, ny, nz, ncells, cell_start, order, sx, sy, sz,
            ccoord, hk, hv, mask)


@njit(cache=True, nogil=True)
def _cell_runs(c, dense, nx, ny, nz, cell_start, ccoord, hk, hv, mask, rs, re):
    """Contiguous runs [rs[r], re[r]) of sorted atoms in the 27 cells around
    cell c.  Returns the number of runs."""
    m = 0
    if dense:
        cz = c % nz
        t = c // nz
        cy = t % ny
        cx = t // ny
        z0 = max(cz - 1, 0)
        z1 = min(cz + 1, nz - 1)
        for xx in range(max(cx - 1, 0), min(cx + 2, nx)):
            for yy in range(max(cy - 1, 0), min(cy + 2, ny)):
                base = (xx * ny + yy) * nz
                s = cell_start[base + z0]
                e = cell_start[base + z1 + 1]
                if e > s:
                    rs[m] = s
                    re[m] = e
                    m += 1
    else:
        cx = ccoord[c, 0]
        cy = ccoord[c, 1]
        cz = ccoord[c, 2]
        for dx in range(-1, 2):
            for dy in range(-1, 2):
                for dz in range(-1, 2):
                    d = _hash_find(hk, hv, mask, cx + dx, cy + dy, cz + dz)
                    if d >= 0:
                        rs[m] = cell_start[d]
                        re[m] = cell_start[d + 1]
                        m += 1
    return m


@njit(cache=True, nogil=True)
def _max_candidates(c0, c1, dense, nx, ny, nz, cell_start, ccoord, hk, hv,
                    mask):
    """Largest number of candidate atoms (27-cell neighbourhood) of any
    non-empty cell in [c0, c1)."""
    rs = np.empty(27, np.int64)
    re = np.empty(27, np.int64)
    best = 0
    for c in range(c0, c1):
        if cell_start[c + 1] == cell_start[c]:
            continue
        nr = _cell_runs(c, dense, nx, ny, nz, cell_start, ccoord, hk, hv,
                        mask, rs, re)
        L = 0
        for r in range(nr):
            L += re[r] - rs[r]
        if L > best:
            best = L
    return best


@njit(cache=True, nogil=True)
def _gather(s, nr, rs, re, order, sx, sy, sz, gx, gy, gz, gj):
    """Copy the candidate atoms of the runs into contiguous buffers (so the
    distance loops are long and vectorise).  Returns (L, position in the
    buffers of sorted atom s, the first atom of the target cell)."""
    L = 0
    self0 = -1
    for r in range(nr):
        a = rs[r]
        b = re[r]
        if a <= s < b:
            self0 = L + (s - a)
        for k2 in range(a, b):
            gx[L] = sx[k2]
            gy[L] = sy[k2]
            gz[L] = sz[k2]
            gj[L] = order[k2]
            L += 1
    return L, self0


@njit(cache=True, nogil=True)
def _count_cells(c0, c1, dense, nx, ny, nz, cell_start, order, sx, sy, sz,
                 ccoord, hk, hv, mask, c2, deg, limit, over):
    """Full degree of every atom in cells [c0, c1) into deg[atom]; returns the
    largest number of candidates of a cell (buffer size for the fill).

    limit >= 0: stop at the first atom with more than limit neighbours and
    record it in over (over[0] = atom, over[1] = its degree); the degrees of
    the atoms not yet visited are then left unset."""
    cap = _max_candidates(c0, c1, dense, nx, ny, nz, cell_start, ccoord, hk,
                          hv, mask)
    rs = np.empty(27, np.int64)
    re = np.empty(27, np.int64)
    gx = np.empty(cap, np.float64)
    gy = np.empty(cap, np.float64)
    gz = np.empty(cap, np.float64)
    gj = np.empty(cap, np.int64)
    for c in range(c0, c1):
        s = cell_start[c]
        e = cell_start[c + 1]
        if e == s:
            continue
        nr = _cell_runs(c, dense, nx, ny, nz, cell_start, ccoord, hk, hv,
                        mask, rs, re)
        L, self0 = _gather(s, nr, rs, re, order, sx, sy, sz, gx, gy, gz, gj)
        for k in range(s, e):
            xi = sx[k]
            yi = sy[k]
            zi = sz[k]
            cnt = 0
            for t in range(L):
                dx = gx[t] - xi
                dy = gy[t] - yi
                dz = gz[t] - zi
                d2 = dx * dx + dy * dy + dz * dz
                cnt += 1 if d2 <= c2 else 0
            deg[order[k]] = cnt - 1  # minus the atom itself (d2 = 0 <= c2)
            if limit >= 0 and cnt - 1 > limit:
                over[0] = order[k]
                over[1] = cnt - 1
                return cap
    return cap


@njit(cache=True, nogil=True)
def _fill_cells(c0, c1, dense, nx, ny, nz, cell_start, order, sx, sy, sz,
                ccoord, hk, hv, mask, c2, kmax, cap, off, src):
    """Write the (sorted, possibly k-limited) sources of every target atom in
    cells [c0, c1) to src[off[i]:off[i+1]] (targets: see _fill_targets)."""
    rs = np.empty(27, np.int64)
    re = np.empty(27, np.int64)
    gx = np.empty(cap, np.float64)
    gy = np.empty(cap, np.float64)
    gz = np.empty(cap, np.float64)
    gj = np.empty(cap, np.int64)
    msk = np.empty(cap, np.int64)
    dd = np.empty(cap, np.float64)
    bufj = np.empty(cap, np.int64)
    bufd = np.empty(cap, np.float64)
    for c in range(c0, c1):
        s = cell_start[c]
        e = cell_start[c + 1]
        if e == s:
            continue
        nr = _cell_runs(c, dense, nx, ny, nz, cell_start, ccoord, hk, hv,
                        mask, rs, re)
        L, self0 = _gather(s, nr, rs, re, order, sx, sy, sz, gx, gy, gz, gj)
        for k in range(s, e):
            xi = sx[k]
            yi = sy[k]
            zi = sz[k]
            for t in range(L):
                dx = gx[t] - xi
                dy = gy[t] - yi
                dz = gz[t] - zi
                d2 = dx * dx + dy * dy + dz * dz
                dd[t] = d2
                msk[t] = 1 if d2 <= c2 else 0
            msk[self0 + (k - s)] = 0
            m = 0
            if kmax < 0:
                for t in range(L):  # branch-free compaction
                    bufj[m] = gj[t]
                    m += msk[t]
            else:
                for t in range(L):
                    bufj[m] = gj[t]
                    bufd[m] = dd[t]
                    m += msk[t]
            _rank_write(bufj, bufd, m, kmax, src, off[order[k]], False)


@njit(cache=True, nogil=True)
def _brute_count(x, y, z, n, c2, kmax, deg):
    """Degrees (limited to kmax if kmax >= 0) by brute force; returns sum."""
    tot = 0
    for i in range(n):
        xi = x[i]
        yi = y[i]
        zi = z[i]
        cnt = 0
        for j in range(n):
            dx = x[j] - xi
            dy = y[j] - yi
            dz = z[j] - zi
            d2 = dx * dx + dy * dy + dz * dz
            cnt += 1 if d2 <= c2 else 0
        cnt -= 1  # self
        if kmax >= 0 and cnt > kmax:
            cnt = kmax
        deg[i] = cnt
        tot += cnt
    return tot


@njit(cache=True, nogil=True)
def _brute_fill(x, y, z, n, c2, kmax, off, src, dst, msk, dd, bufj, bufd):
    """Brute-force fill; off[i] is where target i's edges start.  The work
    buffers need n entries."""
    for i in range(n):
        xi = x[i]
        yi = y[i]
        zi = z[i]
        for j in range(n):
            dx = x[j] - xi
            dy = y[j] - yi
            dz = z[j] - zi
            d2 = dx * dx + dy * dy + dz * dz
            dd[j] = d2
            msk[j] = 1 if d2 <= c2 else 0
        msk[i] = 0
        m = 0
        if kmax < 0:
            for j in range(n):  # branch-free compaction, sorted by j
                bufj[m] = j
                m += msk[j]
        else:
            for j in range(n):
                bufj[m] = j
                bufd[m] = dd[j]
                m += msk[j]
        o = off[i]
        _rank_write(bufj, bufd, m, kmax, src, o, True)
        cnt = m if (kmax < 0 or m <= kmax) else kmax
        for t in range(o, o + cnt):
            dst[t] = i



@njit(cache=True, nogil=True)
def _fill_targets(i0, i1, off, dst):
    """dst[off[i]:off[i+1]] = i for i in [i0, i1) (sequential writes)."""
    for i in range(i0, i1):
        for t in range(off[i], off[i + 1]):
            dst[t] = i


# --------------------------------------------------------------------------
# one cloud
# --------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _rg_brute(x, y, z, c2, kmax):
    n = x.shape[0]
    deg = np.empty(n, np.int64)
    tot = _brute_count(x, y, z, n, c2, kmax, deg)
    off = np.empty(n + 1, np.int64)
    off[0] = 0
    for i in range(n):
        off[i + 1] = off[i] + deg[i]
    out = np.empty((2, tot), np.int64)
    msk = np.empty(n, np.int64)
    dd = np.empty(n, np.float64)
    bufj = np.empty(n, np.int64)
    bufd = np.empty(n, np.float64)
    _brute_fill(x, y, z, n, c2, kmax, off, out[0], out[1], msk, dd, bufj,
                bufd)
    return out


@njit(cache=True, nogil=True)
def _offsets(deg, n, kmax):
    off = np.empty(n + 1, np.int64)
    off[0] = 0
    for i in range(n):
        d = deg[i]
        if kmax >= 0 and d > kmax:
            d = kmax
        off[i + 1] = off[i] + d
    return off


@njit(cache=True, nogil=True)
def _rg_cells_serial(x, y, z, cutoff, c2, kmax):
    n = x.shape[0]
    (ok, dense, nx, ny, nz, ncells, cell_start, order, sx, sy, sz,
     ccoord, hk, hv, mask) = _build_cells(x, y, z, n, cutoff)
    if not ok:
        return _rg_brute(x, y, z, c2, kmax)
    deg = np.empty(n, np.int64)
    cap = _count_cells(0, ncells, dense, nx, ny, nz, cell_start, order,
                       sx, sy, sz, ccoord, hk, hv, mask, c2, deg, -1,
                       np.full(2, -1, np.int64))
    off = _offsets(deg, n, kmax)
    out = np.empty((2, off[n]), np.int64)
    _fill_cells(0, ncells, dense, nx, ny, nz, cell_start, order, sx, sy, sz,
                ccoord, hk, hv, mask, c2, kmax, cap, off, out[0])
    _fill_targets(0, n, off, out[1])
    return out


@njit(cache=True, nogil=True)
def _chunk_bounds(cell_start, ncells, nchunks):
    """Split cells [0, ncells) into nchunks ranges with ~equal atom counts."""
    n = cell_start[ncells]
    b = np.empty(nchunks + 1, np.int64)
    b[0] = 0
    for t in range(1, nchunks):
        b[t] = np.searchsorted(cell_start, (n * t) // nchunks)
        if b[t] > ncells:
            b[t] = ncells
        if b[t] < b[t - 1]:
            b[t] = b[t - 1]
    b[nchunks] = ncells
    return b


@njit(cache=True, nogil=True, parallel=True)
def _rg_cells_parallel(x, y, z, cutoff, c2, kmax, nchunks):
    n = x.shape[0]
    (ok, dense, nx, ny, nz, ncells, cell_start, order, sx, sy, sz,
     ccoord, hk, hv, mask) = _build_cells(x, y, z, n, cutoff)
    if not ok:
        return _rg_brute(x, y, z, c2, kmax)
    b = _chunk_bounds(cell_start, ncells, nchunks)
    deg = np.empty(n, np.int64)
    caps = np.zeros(nchunks, np.int64)
    no_limit = np.full(2, -1, np.int64)
    for t in prange(nchunks):
        caps[t] = _count_cells(b[t], b[t + 1], dense, nx, ny, nz,
                               cell_start, order, sx, sy, sz, ccoord, hk,
                               hv, mask, c2, deg, -1, no_limit)
    off = _offsets(deg, n, kmax)
    out = np.empty((2, off[n]), np.int64)
    src = out[0]
    dst = out[1]
    for t in prange(nchunks):
        _fill_cells(b[t], b[t + 1], dense, nx, ny, nz, cell_start, order,
                    sx, sy, sz, ccoord, hk, hv, mask, c2, kmax, caps[t], off,
                    src)
        _fill_targets((n * t) // nchunks, (n * (t + 1)) // nchunks, off, dst)
    return out


# --------------------------------------------------------------------------
# many clouds
# --------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _first_over(deg, n, limit, over):
    """Record in over the first atom whose degree exceeds limit (>= 0);
    returns whether there is one."""
    if limit < 0:
        return False
    for i in range(n):
        if deg[i] > limit:
            over[0] = i
            over[1] = deg[i]
            return True
    return False


@njit(cache=True, nogil=True)
def _full_degrees(x, y, z, n, cutoff, c2, deg, limit, over):
    """Degrees (not k-limited) of one cloud into deg[:n], by a cell list when
    it has more than BATCH_BRUTE_MAX_ATOMS atoms.  Returns False when limit
    >= 0 and an atom has more than limit neighbours (recorded in over, see
    _count_cells; deg is then incomplete)."""
    if n > BATCH_BRUTE_MAX_ATOMS:
        (ok, dense, nx, ny, nz, ncells, cell_start, order, sx, sy, sz,
         ccoord, hk, hv, mask) = _build_cells(x, y, z, n, cutoff)
        if ok:
            _count_cells(0, ncells, dense, nx, ny, nz, cell_start, order, sx,
                         sy, sz, ccoord, hk, hv, mask, c2, deg, limit, over)
            return over[0] < 0
    _brute_count(x, y, z, n, c2, -1, deg)
    return not _first_over(deg, n, limit, over)


@njit(cache=True, nogil=True)
def _cloud_count(x, y, z, cutoff, c2, kmax, deg, limit, over):
    """Degrees (k-limited) of one cloud into deg[:n]; returns their sum, or -1
    when an atom has more than limit (>= 0) neighbours (see _full_degrees)."""
    n = x.shape[0]
    if not _full_degrees(x, y, z, n, cutoff, c2, deg, limit, over):
        return -1
    tot = 0
    for i in range(n):
        if kmax >= 0 and deg[i] > kmax:
            deg[i] = kmax
        tot += deg[i]
    return tot


@njit(cache=True, nogil=True)
def _cloud_fill(x, y, z, cutoff, c2, kmax, off, src, dst, msk, dd, bufj,
                bufd):
    """Fill one cloud; off[i] (i local, len n + 1) is relative to src/dst."""
    n = x.shape[0]
    if n <= BATCH_BRUTE_MAX_ATOMS:
        _brute_fill(x, y, z, n, c2, kmax, off, src, dst, msk, dd, bufj,
                    bufd)
        return
    (ok, dense, nx, ny, nz, ncells, cell_start, order, sx, sy, sz,
     ccoord, hk, hv, mask) = _build_cells(x, y, z, n, cutoff)
    if not ok:
        _brute_fill(x, y, z, n, c2, kmax, off, src, dst, msk, dd, bufj,
                    bufd)
        return
    _fill_cells(0, ncells, dense, nx, ny, nz, cell_start, order, sx, sy, sz,
                ccoord, hk, hv, mask, c2, kmax, n, off, src)
    _fill_targets(0, n, off, dst)


@njit(cache=True, nogil=True)
def _batch_bounds(ptr, nb, nchunks):
    """Split clouds into nchunks contiguous ranges of ~equal estimated cost."""
    cost = np.empty(nb + 1, np.float64)
    cost[0] = 0.0
    for b in range(nb):
        n = float(ptr[b + 1] - ptr[b])
        if n <= BATCH_BRUTE_MAX_ATOMS:
            c = n * n
        else:
            c = 150.0 * n
        cost[b + 1] = cost[b] + c + 50.0
    bounds = np.empty(nchunks + 1, np.int64)
    bounds[0] = 0
    for t in range(1, nchunks):
        bounds[t] = np.searchsorted(cost, cost[nb] * t / nchunks)
        if bounds[t] > nb:
            bounds[t] = nb
        if bounds[t] < bounds[t - 1]:
            bounds[t] = bounds[t - 1]
    bounds[nchunks] = nb
    return bounds


@njit(cache=True, nogil=True)
def _brute_emit(x, y, z, n, c2, kmax, deg, buf, p, msk, dd, bufj, bufd,
                limit, over):
    """Edges of one small cloud by brute force, each distance computed once:
    the sorted (k-limited) sources of target i are appended to buf[p:] and
    their number stored in deg[i].  Returns the new end position.  buf must
    have room for n * n entries from p (the compaction writes one slot past
    the last edge of a row).  Work buffers need n entries.  limit >= 0: the
    first atom with more than limit neighbours (before the k limit) is
    recorded in over (the cloud is still processed: it is small)."""
    for i in range(n):
        xi = x[i]
        yi = y[i]
        zi = z[i]
        if kmax < 0:
            for j in range(n):
                dx = x[j] - xi
                dy = y[j] - yi
                dz = z[j] - zi
                msk[j] = 1 if dx * dx + dy * dy + dz * dz <= c2 else 0
            msk[i] = 0
            # branch-free compaction, sorted by j.  Unsigned positions: a
            # signed index makes Numba add a negative-index wraparound
            # check to every store, which costs ~40 % of the emit time.
            q = numba.uint64(p)
            for j in range(n):
                buf[q] = j
                q += numba.uint64(msk[j])
            m = numba.int64(q) - p
        else:
            for j in range(n):
                dx = x[j] - xi
                dy = y[j] - yi
                dz = z[j] - zi
                d2 = dx * dx + dy * dy + dz * dz
                dd[j] = d2
                msk[j] = 1 if d2 <= c2 else 0
            msk[i] = 0
            m = 0
            for j in range(n):
                bufj[m] = j
                bufd[m] = dd[j]
                m += msk[j]
            _rank_write(bufj, bufd, m, kmax, buf, p, True)
        if limit >= 0 and m > limit and over[0] < 0:
            over[0] = i
            over[1] = m
        if kmax >= 0 and m > kmax:
            m = kmax
        deg[i] = m
        p += m
    return p


@njit(cache=True, nogil=True)
def _batch_pass1(b0, b1, xyz, ptr, cutoff, c2, kmax, deg, ecount, boff,
                 bstart, buf, limit, over):
    """Clouds [b0, b1): small clouds (brute force) get their edges computed
    once into buf (local sources, compact, starting at boff[b0]; cloud b at
    bstart[b]); larger clouds only get their degrees (cell-list count pass).
    deg[atom] and ecount[b] are filled for all.  limit >= 0: over[b] records
    an atom of cloud b with more than limit neighbours (over[b, 0] = -1 if
    none); such a cloud's degrees and edge count are not to be used."""
    nmax = 1
    for b in range(b0, b1):
        nmax = max(nmax, min(ptr[b + 1] - ptr[b], BATCH_BRUTE_MAX_ATOMS))
    msk = np.empty(nmax, np.uint8)
    dd = np.empty(nmax, np.float64)
    bufj = np.empty(nmax, np.int64)
    bufd = np.empty(nmax, np.float64)
    p = boff[b0]
    for b in range(b0, b1):
        a0 = ptr[b]
        a1 = ptr[b + 1]
        n = a1 - a0
        if n <= BATCH_BRUTE_MAX_ATOMS:
            bstart[b] = p
            p = _brute_emit(xyz[0, a0:a1], xyz[1, a0:a1], xyz[2, a0:a1], n,
                            c2, kmax, deg[a0:a1], buf, p, msk, dd, bufj,
                            bufd, limit, over[b])
            ecount[b] = p - bstart[b]
        else:
            bstart[b] = -1
            ecount[b] = _cloud_count(xyz[0, a0:a1], xyz[1, a0:a1],
                                     xyz[2, a0:a1], cutoff, c2, kmax,
                                     deg[a0:a1], limit, over[b])


@njit(cache=True, nogil=True)
def _batch_pass2(b0, b1, xyz, ptr, cutoff, c2, kmax, deg, eptr, bstart, buf,
                 src, dst):
    """Write the edges of clouds [b0, b1) to src/dst[eptr[b]:eptr[b + 1]]:
    a sequential copy from buf for small clouds, the cell-list fill pass for
    larger ones."""
    nmax = 0
    for b in range(b0, b1):
        n = ptr[b + 1] - ptr[b]
        if n > BATCH_BRUTE_MAX_ATOMS:
            nmax = max(nmax, n)
    msk = np.empty(nmax + 1, np.int64)
    dd = np.empty(nmax + 1, np.float64)
    bufj = np.empty(nmax + 1, np.int64)
    bufd = np.empty(nmax + 1, np.float64)
    off = np.empty(nmax + 1, np.int64)
    for b in range(b0, b1):
        a0 = ptr[b]
        a1 = ptr[b + 1]
        n = a1 - a0
        e0 = eptr[b]
        if n <= BATCH_BRUTE_MAX_ATOMS:
            # unsigned indices: no wraparound checks, the copy vectorises
            e = numba.uint64(e0)
            e1 = numba.uint64(eptr[b + 1])
            p = numba.uint64(bstart[b])
            for t in range(numba.uint64(0), e1 - e):
                src[e + t] = buf[p + t]
            for i in range(n):
                e1 = e + numba.uint64(deg[a0 + i])
                for t in range(e, e1):
                    dst[t] = i
                e = e1
        else:
            off[0] = 0
            for i in range(n):
                off[i + 1] = off[i] + deg[a0 + i]
            e1 = eptr[b + 1]
            _cloud_fill(xyz[0, a0:a1], xyz[1, a0:a1], xyz[2, a0:a1], cutoff,
                        c2, kmax, off, src[e0:e1], dst[e0:e1], msk, dd, bufj,
                        bufd)


@njit(cache=True, nogil=True)
def _brute_bound_offsets(ptr, nb):
    """boff[b]: start of cloud b's worst-case region (n * n for small clouds,
    0 for cell-list clouds) in the pass-1 buffer; boff[nb] is its size."""
    boff = np.empty(nb + 1, np.int64)
    boff[0] = 0
    for b in range(nb):
        n = ptr[b + 1] - ptr[b]
        boff[b + 1] = boff[b] + (n * n if n <= BATCH_BRUTE_MAX_ATOMS else 0)
    return boff


@njit(cache=True, nogil=True, parallel=True)
def _batch_pass1_parallel(bounds, xyz, ptr, cutoff, c2, kmax, deg, ecount,
                          boff, bstart, buf, limit, over):
    for t in prange(bounds.shape[0] - 1):
        _batch_pass1(bounds[t], bounds[t + 1], xyz, ptr, cutoff, c2, kmax,
                     deg, ecount, boff, bstart, buf, limit, over)


@njit(cache=True, nogil=True)
def _batch_check(b0, b1, xyz, ptr, cutoff, c2, kmax, deg, limit, over):
    """Count pass only over clouds [b0, b1): over[b] as in _batch_pass1."""
    for b in range(b0, b1):
        a0 = ptr[b]
        a1 = ptr[b + 1]
        _cloud_count(xyz[0, a0:a1], xyz[1, a0:a1], xyz[2, a0:a1], cutoff, c2,
                     kmax, deg[a0:a1], limit, over[b])


@njit(cache=True, nogil=True, parallel=True)
def _batch_check_parallel(bounds, xyz, ptr, cutoff, c2, kmax, deg, limit,
                          over):
    for t in prange(bounds.shape[0] - 1):
        _batch_check(bounds[t], bounds[t + 1], xyz, ptr, cutoff, c2, kmax,
                     deg, limit, over)


@njit(cache=True, nogil=True, parallel=True)
def _batch_pass2_parallel(bounds, xyz, ptr, cutoff, c2, kmax, deg, eptr,
                          bstart, buf, src, dst):
    for t in prange(bounds.shape[0] - 1):
        _batch_pass2(bounds[t], bounds[t + 1], xyz, ptr, cutoff, c2, kmax,
                     deg, eptr, bstart, buf, src, dst)


# --------------------------------------------------------------------------
# Python API
# --------------------------------------------------------------------------
def _check_pos(pos, what="pos"):
    arr = np.asarray(pos)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(
            f"{what} must be a real numeric array of shape [N, 3], got dtype {arr.dtype}"
        )
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{what} must have shape [N, 3], got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"{what} contains non-finite coordinates (NaN or inf); first "
            f"offending atom index {bad}: {arr[bad].tolist()}"
        )
    return arr


def _check_cutoff(cutoff):
    try:
        c = float(cutoff)
    except (TypeError, ValueError):
        raise ValueError(f"cutoff must be a finite number > 0, got {cutoff!r}") from None
    if not math.isfinite(c) or not c > 0.0:
        raise ValueError(f"cutoff must be finite and > 0, got {cutoff!r}")
    return c


def optional_limit(value) -> int | None:
    """A neighbour or degree limit as the CLIs and manifests write it (-1 or None: no
    limit) -> an int >= 0, or None."""
    if value is None or int(value) < 0:
        return None
    return int(value)


def _check_count(value, name: str) -> int:
    """`value` (max_neighbors, max_degree) as an int >= 0, or -1 for None (no limit)."""
    if value is None:
        return -1
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be None or an integer >= 0, got a bool")
    try:
        count = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be None or an integer >= 0, got {value!r}") from None
    if count < 0:
        raise ValueError(f"{name} must be >= 0, got {count}")
    return int(count)


def _effective_limit(limit: int, kmax: int) -> int:
    """The limit on the full degree that matters: none (-1) when the k limit
    already keeps every atom at or below it."""
    if limit < 0 or 0 <= kmax <= limit:
        return -1
    return limit


class DegreeExcess(NamedTuple):
    """A cloud refused by ``max_degree``: one of its atoms and that atom's
    number of neighbours within the cutoff."""

    cloud: int
    atom: int
    degree: int


class NeighborLimitError(ValueError):
    """Clouds with an atom of more than ``max_degree`` neighbours (coincident
    or overlapping atoms): ``excess`` lists every such cloud of the batch, in
    order; ``limit`` and ``cutoff`` are the settings."""

    def __init__(self, excess: list[DegreeExcess], limit: int, cutoff: float):
        self.excess = list(excess)
        self.limit = int(limit)
        self.cutoff = float(cutoff)
        shown = "; ".join(f"cloud {e.cloud}: atom {e.atom} has {e.degree}" for e in self.excess[:5])
        more = f" (and {len(self.excess) - 5} more clouds)" if len(self.excess) > 5 else ""
        super().__init__(
            f"{len(self.excess)} cloud(s) have an atom with more than max_degree = {self.limit} "
            f"neighbours within {self.cutoff:g}: {shown}{more}"
        )


def _excess(over: np.ndarray) -> list[DegreeExcess]:
    """The clouds over[b] marks (see _batch_pass1)."""
    return [DegreeExcess(int(b), int(over[b, 0]), int(over[b, 1]))
            for b in np.flatnonzero(over[:, 0] >= 0)]


def _check_ptr(ptr, num_atoms: int) -> np.ndarray:
    p = np.asarray(ptr)
    if p.ndim != 1 or p.shape[0] < 1:
        raise ValueError(f"ptr must be a 1-D array of length B + 1 >= 1, got shape {p.shape}")
    if p.shape[0] and not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"ptr must have an integer dtype, got {p.dtype}")
    p = np.ascontiguousarray(p, dtype=np.int64)
    if p[0] != 0 or p[-1] != num_atoms:
        raise ValueError(
            f"ptr must start at 0 and end at len(pos) = {num_atoms}, got "
            f"ptr[0] = {int(p[0])}, ptr[-1] = {int(p[-1])}"
        )
    if p.shape[0] > 1 and (np.diff(p) < 0).any():
        b = int(np.flatnonzero(np.diff(p) < 0)[0])
        raise ValueError(f"ptr must be non-decreasing; ptr[{b + 1}] < ptr[{b}]")
    return p


_INDEX_DTYPES = (np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64))


def _check_index_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _INDEX_DTYPES:
        raise ValueError(
            f"dtype must be np.int16, np.int32 or np.int64, got {dtype!r}"
        )
    return dt


def radius_graph(pos: np.ndarray, cutoff: float, max_neighbors: int | None = None) -> np.ndarray:
    """Directed edges (source j, target i) with 0 < |p_j - p_i| <= cutoff.

    More precisely every ordered pair ``i != j`` with
    ``dx*dx + dy*dy + dz*dz <= cutoff*cutoff`` in float64 (so coincident
    distinct atoms are neighbours; see the module docstring).

    Parameters
    ----------
    pos : array [N, 3] of finite coordinates (any real dtype; float64 inside).
    cutoff : finite float > 0; inclusive.
    max_neighbors : None, or int k >= 0: keep for each target only the k
        nearest sources (ties by smaller source index).

    Returns
    -------
    edge_index : int64 array [2, E]; row 0 = source j, row 1 = target i,
        sorted by (i, j).
    """
    arr = _check_pos(pos)
    c = _check_cutoff(cutoff)
    kmax = _check_count(max_neighbors, "max_neighbors")
    n = arr.shape[0]
    if n == 0:
        return np.empty((2, 0), np.int64)
    c2 = c * c
    xyz = np.ascontiguousarray(arr.T)
    x, y, z = xyz[0], xyz[1], xyz[2]
    if n <= BRUTE_MAX_ATOMS:
        return _rg_brute(x, y, z, c2, kmax)
    nthreads = numba.get_num_threads()
    if n >= PARALLEL_MIN_ATOMS and nthreads > 1:
        return _rg_cells_parallel(x, y, z, c, c2, kmax, nthreads)
    return _rg_cells_serial(x, y, z, c, c2, kmax)


def radius_graph_batch(
    pos: np.ndarray,
    ptr: np.ndarray,
    cutoff: float,
    max_neighbors: int | None = None,
    dtype=np.int64,
    max_degree: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Many small clouds at once: pos [sum N, 3] with CSR offsets ptr [B+1];
    returns (edge_index [2, E] with indices LOCAL to each cloud, edge_ptr [B+1]).

    ``edge_index[:, edge_ptr[b]:edge_ptr[b+1]]`` equals
    ``radius_graph(pos[ptr[b]:ptr[b+1]], cutoff, max_neighbors)`` (cast to
    ``dtype``).  Work is parallelised across clouds (each cloud serial).

    dtype : ``np.int64`` (default), ``np.int32`` or ``np.int16``: dtype of
        ``edge_index`` (local indices; ``edge_ptr`` is always int64).  The
        smaller dtypes write 2x / 4x fewer bytes, which is most of the cost
        for many small clouds.  ``ValueError`` if the largest cloud's local
        indices do not fit.
    max_degree : None (no limit) or int >= 0: refuse clouds in which an atom
        would keep more than ``max_degree`` neighbours (after the
        ``max_neighbors`` limit, so never when ``max_neighbors <=
        max_degree``).  The count pass finds them before any edge is
        allocated, stopping at the first such atom of a cell-list cloud
        (thousands of coincident atoms cost time and memory linear in their
        number, not quadratic); ``NeighborLimitError`` then lists every
        refused cloud of the batch (``excess``), and the caller may drop them
        and call again.
    """
    arr = _check_pos(pos)
    c = _check_cutoff(cutoff)
    kmax = _check_count(max_neighbors, "max_neighbors")
    dt = _check_index_dtype(dtype)
    limit = _effective_limit(_check_count(max_degree, "max_degree"), kmax)
    p = _check_ptr(ptr, arr.shape[0])
    nb = p.shape[0] - 1
    if nb > 0:
        nmax = int(np.diff(p).max())
        if nmax - 1 > np.iinfo(dt).max:
            raise ValueError(
                f"dtype {dt} cannot hold the local indices of a cloud of "
                f"{nmax} atoms (largest index {nmax - 1})"
            )
    if nb == 0 or arr.shape[0] == 0:
        return np.empty((2, 0), dt), np.zeros(nb + 1, np.int64)
    c2 = c * c
    xyz = np.ascontiguousarray(arr.T)
    nthreads = numba.get_num_threads()
    nchunks = min(nthreads, nb)
    bounds = _batch_bounds(p, nb, nchunks)
    boff = _brute_bound_offsets(p, nb)
    # Work arrays and the output are allocated here, by numpy, rather than
    # inside the compiled code: numpy asks the kernel for transparent huge
    # pages on large allocations (madvise), which makes first-touch page
    # faults of the ~100s of MB involved 2-3x cheaper than with the 4 KiB
    # pages of Numba's allocator.  buf is sized for the worst case (n * n per
    # small cloud) but only the pages of the actual edges are ever touched.
    buf = np.empty(int(boff[nb]) + 1, np.uint8)
    deg = np.empty(arr.shape[0], np.int64)
    ecount = np.empty(nb, np.int64)
    bstart = np.empty(nb, np.int64)
    over = np.full((nb, 2), -1, np.int64)
    if nchunks > 1:
        _batch_pass1_parallel(bounds, xyz, p, c, c2, kmax, deg, ecount, boff,
                              bstart, buf, limit, over)
    else:
        _batch_pass1(0, nb, xyz, p, c, c2, kmax, deg, ecount, boff, bstart,
                     buf, limit, over)
    if limit >= 0 and (over[:, 0] >= 0).any():
        raise NeighborLimitError(_excess(over), limit, c)
    eptr = np.zeros(nb + 1, np.int64)
    np.cumsum(ecount, out=eptr[1:])
    out = np.empty((2, int(eptr[nb])), dt)
    if nchunks > 1:
        _batch_pass2_parallel(bounds, xyz, p, c, c2, kmax, deg, eptr, bstart,
                              buf, out[0], out[1])
    else:
        _batch_pass2(0, nb, xyz, p, c, c2, kmax, deg, eptr, bstart, buf,
                     out[0], out[1])
    return out, eptr


def degree_excess(
    pos: np.ndarray,
    ptr: np.ndarray,
    cutoff: float,
    max_degree: int,
    max_neighbors: int | None = None,
) -> list[DegreeExcess]:
    """The clouds ``radius_graph_batch(pos, ptr, cutoff, max_neighbors,
    max_degree=max_degree)`` would refuse, by the count pass alone (no edge is
    made): for code that builds the edges later, e.g. from parts of a cloud,
    whose degrees are never larger than the whole cloud's."""
    arr = _check_pos(pos)
    c = _check_cutoff(cutoff)
    kmax = _check_count(max_neighbors, "max_neighbors")
    limit = _effective_limit(_check_count(max_degree, "max_degree"), kmax)
    p = _check_ptr(ptr, arr.shape[0])
    nb = p.shape[0] - 1
    if limit < 0 or nb == 0 or arr.shape[0] == 0:
        return []
    xyz = np.ascontiguousarray(arr.T)
    nchunks = min(numba.get_num_threads(), nb)
    deg = np.empty(arr.shape[0], np.int64)
    over = np.full((nb, 2), -1, np.int64)
    if nchunks > 1:
        _batch_check_parallel(_batch_bounds(p, nb, nchunks), xyz, p, c, c * c,
                              kmax, deg, limit, over)
    else:
        _batch_check(0, nb, xyz, p, c, c * c, kmax, deg, limit, over)
    return _excess(over)
