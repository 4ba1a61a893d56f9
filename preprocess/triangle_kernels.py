"""The Triangle generator's Numba kernels: one SplitMix64 stream per cloud, points placed by
sequential random addition in a ball, three distinct special points (see
:mod:`preprocess.triangle`, which imports this module only when it generates clouds)."""

from __future__ import annotations

import numba
import numpy as np

# SplitMix64 constants (Steele, Lea & Flood 2014).
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@numba.njit(cache=True, nogil=True, inline="always")
def _next_u64(state):
    z = state[0] + _GAMMA
    state[0] = z
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@numba.njit(cache=True, nogil=True, inline="always")
def _uniform(state):
    """Uniform double in [0, 1)."""
    return np.float64(_next_u64(state) >> _S11) * _INV53


@numba.njit(cache=True, nogil=True)
def _one_cloud(seed_u64, num_points, radius, min_dist, max_attempts, out_pos, out_special):
    """Fill out_pos [n,3] (float64) and out_special [3]; return False if packing failed."""
    state = np.empty(1, dtype=np.uint64)
    state[0] = seed_u64
    r2 = radius * radius
    d2 = min_dist * min_dist
    n_acc = 0
    attempts = 0
    while n_acc < num_points:
        attempts += 1
        if attempts > max_attempts:
            return False
        # uniform in the ball: uniform in the cube, rejected outside the ball
        x = (2.0 * _uniform(state) - 1.0) * radius
        y = (2.0 * _uniform(state) - 1.0) * radius
        z = (2.0 * _uniform(state) - 1.0) * radius
        if x * x + y * y + z * z > r2:
            continue
        ok = True
        for j in range(n_acc):
            dx = out_pos[j, 0] - x
            dy = out_pos[j, 1] - y
            dz = out_pos[j, 2] - z
            if dx * dx + dy * dy + dz * dz < d2:
                ok = False
                break
        if ok:
            out_pos[n_acc, 0] = x
            out_pos[n_acc, 1] = y
            out_pos[n_acc, 2] = z
            n_acc += 1
    # three distinct special points: partial Fisher-Yates shuffle
    perm = np.arange(num_points)
    for t in range(3):
        j = t + int(_uniform(state) * (num_points - t))
        if j >= num_points:  # guard against rounding
            j = num_points - 1
        tmp = perm[t]
        perm[t] = perm[j]
        perm[j] = tmp
        out_special[t] = perm[t]
    return True


@numba.njit(cache=True, nogil=True, parallel=True)
def generate(seeds, num_points, radius, min_dist, max_attempts, pos, special, ok):
    for k in numba.prange(seeds.shape[0]):
        ok[k] = _one_cloud(seeds[k], num_points, radius, min_dist, max_attempts,
                           pos[k], special[k])
