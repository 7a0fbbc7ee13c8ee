"""Per-chunk MF numerics against plain numpy references; memory projection."""

import numpy as np
import pytest

from lepton_hpc.layout import rows_of_rank
from lepton_hpc.models import mf as K
from lepton_hpc.problems.mf_memory import main as memory_main
from lepton_hpc.problems.mf_memory import per_rank_bytes

M, N_ITEMS, RANK = 30, 17, 4


def _chunk(seed=0, density=0.4, skip_user=5, skip_item=7):
    rng = np.random.default_rng(seed)
    mask = rng.random((M, N_ITEMS)) < density
    mask[skip_user] = False
    mask[:, skip_item] = False
    mask[3, :2] = True  # user 3 has few ratings
    users, items = np.nonzero(mask)
    vals = rng.standard_normal(users.size)
    U = rng.standard_normal((M, RANK))
    V = rng.standard_normal((N_ITEMS, RANK))
    return users.astype(np.int32), items.astype(np.int32), vals, U, V


def ref_grad(U, V, users, items, vals, reg, n_total):
    e = (U[users] * V[items]).sum(axis=1) - vals
    gU, gV = np.zeros_like(U), np.zeros_like(V)
    np.add.at(gU, users, e[:, None] * V[items])
    np.add.at(gV, items, e[:, None] * U[users])
    return e, (gU + reg * U) / n_total, gV  # gV: the raw sum, before reg and 1/N


def ref_als(F, keys, others, vals, reg, n):
    k = F.shape[1]
    out = np.zeros((n, k))
    for j in range(n):
        sel = keys == j
        if sel.any():
            X = F[others[sel]]
            out[j] = np.linalg.lstsq(X.T @ X + reg * np.eye(k), X.T @ vals[sel], rcond=None)[0]
    return out


def test_segments_and_groups_cover_every_row_once():
    keys = np.array([0, 0, 0, 2, 2, 5, 6, 6, 6, 6, 9])
    ids, starts = K.segments(keys)
    assert ids.tolist() == [0, 2, 5, 6, 9] and starts.tolist() == [0, 3, 5, 6, 10]
    for max_rows in (1, 2, 4, 100):
        groups = list(K.segment_groups(starts, keys.size, max_rows))
        assert groups[0][0] == 0 and groups[-1][1] == ids.size and groups[-1][3] == keys.size
        for (g0, g1, a, b), nxt in zip(groups, groups[1:] + [None]):
            assert a == starts[g0] and (b - a <= max_rows or g1 == g0 + 1)
            if nxt:
                assert nxt[0] == g1 and nxt[2] == b
    assert K.segments(np.zeros(0, dtype=np.int32))[0].size == 0


@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_gradient_matches_the_reference(reg):
    users, items, vals, U, V = _chunk()
    idx = K.ChunkIndex(users, items)
    e, gU = np.zeros(users.size), np.zeros_like(U)
    K.gd_user_pass(np.ascontiguousarray(U.T), np.ascontiguousarray(V.T), users, items, vals, idx, reg, 50, e, gU)
    e_ref, gU_ref, gV_ref = ref_grad(U, V, users, items, vals, reg, 50)
    assert np.allclose(e, e_ref, rtol=1e-13, atol=1e-13) and np.allclose(gU, gU_ref, rtol=1e-12, atol=1e-14)
    assert np.allclose(K.residuals(np.ascontiguousarray(U.T), np.ascontiguousarray(V.T), users, items, vals), e_ref)
    out = np.full((N_ITEMS, RANK), 7.0)
    K.item_grad_partial(np.ascontiguousarray(U.T), e, idx, 0, N_ITEMS, out)
    assert np.allclose(out, gV_ref, rtol=1e-12, atol=1e-14) and np.all(out[7] == 0)
    # an item block gets exactly the rows of the whole
    part = np.zeros((6, RANK))
    K.item_grad_partial(np.ascontiguousarray(U.T), e, idx, 5, 11, part)
    assert np.array_equal(part, out[5:11])


@pytest.mark.parametrize("reg", [0.0, 0.5])
def test_als_matches_per_user_and_per_item_solves(reg):
    users, items, vals, U, V = _chunk(1)
    idx = K.ChunkIndex(users, items)
    got = np.full((M, RANK), 9.0)
    K.als_users(np.ascontiguousarray(V.T), users, items, vals, idx, reg, got)
    want = ref_als(V, users, items, vals, reg, M)
    assert np.allclose(got, want, rtol=1e-7, atol=1e-9)
    assert np.all(got[5] == 0)  # a user without ratings
    S = np.zeros((N_ITEMS, K.packed_width(RANK)))
    K.als_item_partial(np.ascontiguousarray(got.T), vals, idx, 0, N_ITEMS, S)
    V_new = K.solve_packed(S, RANK, reg)
    assert np.allclose(V_new, ref_als(got, items, users, vals, reg, N_ITEMS), rtol=1e-7, atol=1e-9)
    assert np.all(V_new[7] == 0)  # an item without ratings


def test_grouping_does_not_change_the_bits(monkeypatch):
    users, items, vals, U, V = _chunk(2, density=0.8)
    idx = K.ChunkIndex(users, items)
    UT, VT = np.ascontiguousarray(U.T), np.ascontiguousarray(V.T)

    def everything():
        e, gU, gV = np.zeros(users.size), np.zeros_like(U), np.zeros((N_ITEMS, RANK))
        K.gd_user_pass(UT, VT, users, items, vals, idx, 0.1, 10, e, gU)
        K.item_grad_partial(UT, e, idx, 0, N_ITEMS, gV)
        Ua = np.zeros_like(U)
        K.als_users(VT, users, items, vals, idx, 0.1, Ua)
        S = np.zeros((N_ITEMS, K.packed_width(RANK)))
        K.als_item_partial(UT, vals, idx, 0, N_ITEMS, S)
        return [x.tobytes() for x in (e, gU, gV, Ua, S, K.residuals(UT, VT, users, items, vals))]

    whole = everything()
    monkeypatch.setattr(K, "GROUP_BYTES", 64)  # one segment (or a few rows) per group
    assert everything() == whole


def test_packed_solve_round_trip():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, RANK))
    y = rng.standard_normal(40)
    S = K._normal_sums(np.ascontiguousarray(X.T), y, np.array([0]))
    assert S.shape == (1, K.packed_width(RANK))
    x = K.solve_packed(S, RANK, 0.2)[0]
    assert np.allclose(x, np.linalg.solve(X.T @ X + 0.2 * np.eye(RANK), X.T @ y))
    assert K.solve_packed(np.zeros((0, K.packed_width(RANK))), RANK, 0.2).shape == (0, RANK)


@pytest.mark.parametrize("size", [1, 4, 7, 64])
def test_u_is_sharded_not_replicated(size):
    users, chunk = 100_000, 1024
    b = per_rank_bytes(users, 5_000, 32, size, nnz=1e6, chunk_rows=chunk)
    assert b["U_total_bytes"] == users * 32 * 8
    busiest = max(hi - lo for lo, hi in (rows_of_rank(users, chunk, size, q) for q in range(size)))
    assert b["U_block_bytes"] == busiest * 32 * 8
    # about total/size: at most one chunk of users more
    assert b["U_total_bytes"] / size <= b["U_block_bytes"] <= b["U_total_bytes"] / size + chunk * 32 * 8
    assert b["V_bytes"] == 5_000 * 32 * 8 and b["total_bytes"] > b["U_block_bytes"]


def test_projection_at_a_million_users(capsys):
    b = per_rank_bytes(10**6, 10**5, 32, 64, nnz=1e8)
    assert b["U_total_bytes"] == 256_000_000
    assert b["U_block_bytes"] <= 256_000_000 / 64 * 1.05
    assert b["reduce_buffer_bytes"] <= 70 << 20  # item blocks keep the reduction bounded
    assert memory_main(["--users", "1e6", "--items", "1e5", "--rank", "32", "--ranks", "64", "--density",
                        "0.001", "--solver", "als"]) == 0
    assert "U_block_bytes" in capsys.readouterr().out
