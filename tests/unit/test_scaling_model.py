"""The pure maths of the scaling tool: Karp–Flatt, efficiency, Hockney fit, collective costs, projection."""

import math

import numpy as np
import pytest

from lepton_hpc.layout import block_range, dyadic_cover
from lepton_hpc.scaling import model as M


# -- speedup, efficiency, Karp–Flatt -----------------------------------------------------

def test_speedup_and_efficiency():
    assert M.speedup(10.0, 2.5) == 4.0
    assert M.speedup(6.0, 2.0, base_ranks=2) == 6.0  # a 2-rank baseline counts as 2 ranks of work
    assert M.efficiency(4.0, 8) == 0.5
    assert M.scaled_speedup(10.0, 12.5, 4) == pytest.approx(3.2)  # weak: p · T(1)/T(p)


@pytest.mark.parametrize("f", [0.0, 0.01, 0.1, 0.5])
@pytest.mark.parametrize("p", [2, 3, 8, 1024])
def test_karp_flatt_recovers_amdahls_serial_fraction(f, p):
    s = M.amdahl_speedup(f, p)
    assert M.karp_flatt(s, p) == pytest.approx(f, abs=1e-12)


def test_karp_flatt_edge_cases():
    assert math.isnan(M.karp_flatt(1.0, 1))
    assert M.karp_flatt(2.0, 2) == pytest.approx(0.0)        # perfect speedup: no serial part
    assert M.karp_flatt(1.0, 4) == pytest.approx(1.0)        # no speedup: all serial
    assert M.karp_flatt(2.5, 2) < 0                          # superlinear: negative


# -- Hockney fit --------------------------------------------------------------------------

SIZES = np.array([8 << k for k in range(21)], dtype=float)  # 8 B … 8 MiB


def test_hockney_fit_exact_line():
    alpha, beta = 3e-6, 2e-10
    fit = M.hockney_fit(SIZES, alpha + beta * SIZES)
    assert fit["a_s"] == pytest.approx(alpha, rel=1e-9)
    assert fit["b_s_per_byte"] == pytest.approx(beta, rel=1e-9)
    assert fit["rms_rel"] < 1e-9 and len(fit["residuals_rel"]) == len(SIZES)


def test_hockney_fit_noisy_relative_weights_recovers_both_ends():
    rng = np.random.default_rng(0)
    alpha, beta = 1.5e-6, 4e-10
    t = (alpha + beta * SIZES) * rng.lognormal(0.0, 0.05, SIZES.size)
    rel = M.hockney_fit(SIZES, t)
    assert rel["a_s"] == pytest.approx(alpha, rel=0.1)
    assert rel["b_s_per_byte"] == pytest.approx(beta, rel=0.1)
    assert rel["rms_rel"] < 0.1
    # An unweighted fit is ruled by the megabyte messages: its latency is far off.
    plain = M.hockney_fit(SIZES, t, relative=False)
    assert abs(plain["a_s"] / alpha - 1) > abs(rel["a_s"] / alpha - 1)


def test_hockney_fit_never_negative_and_checks_input():
    fit = M.hockney_fit([8, 16, 32], [3e-6, 2e-6, 1e-6])  # falling times: the line is clamped at b = 0
    assert fit["a_s"] >= 0 and fit["b_s_per_byte"] >= 0
    with pytest.raises(ValueError):
        M.hockney_fit([8], [1e-6])
    with pytest.raises(ValueError):
        M.hockney_fit([8, 16], [1e-6, 0.0])


# -- collective costs --------------------------------------------------------------------------

def test_allreduce_formulas():
    a, b, n = 2e-6, 1e-9, 1000.0
    for alg in M.ALGORITHMS:
        assert M.allreduce_time(1, n, a, b, alg) == 0.0
    assert M.allreduce_time(4, n, a, b, "ring") == pytest.approx(6 * a + 1.5 * n * b)
    assert M.allreduce_time(4, n, a, b, "rabenseifner") == pytest.approx(4 * a + 1.5 * n * b)
    assert M.allreduce_time(5, n, a, b, "ring") == pytest.approx(8 * a + 1.6 * n * b)
    assert M.allreduce_time(5, n, a, b, "rabenseifner") == pytest.approx(6 * a + 1.6 * n * b)  # ceil(log2 5) = 3
    assert M.allreduce_time(4096, n, a, b, "rabenseifner") == pytest.approx(24 * a + 2 * 4095 / 4096 * n * b)
    # same bandwidth term, latency linear vs logarithmic
    for p in (2, 3, 64, 4096):
        assert M.allreduce_coefficients(p, "ring")[1] == M.allreduce_coefficients(p, "rabenseifner")[1]
        assert M.allreduce_coefficients(p, "ring")[0] >= M.allreduce_coefficients(p, "rabenseifner")[0]
    with pytest.raises(ValueError):
        M.allreduce_time(4, n, a, b, "tree")


def test_allgather_formulas():
    a, b, N = 1e-6, 1e-9, 4000.0
    assert M.allgather_time(1, N, a, b, "ring") == 0.0
    assert M.allgather_time(4, N, a, b, "ring") == pytest.approx(3 * a + 0.75 * N * b)
    assert M.allgather_time(4, N, a, b, "rabenseifner") == pytest.approx(2 * a + 0.75 * N * b)


@pytest.mark.parametrize("p", [2, 4, 7])
@pytest.mark.parametrize("alg", M.ALGORITHMS)
def test_hockney_from_allreduce_inverts_the_formula(p, alg):
    alpha, beta = 5e-6, 3e-10
    L, B = M.allreduce_coefficients(p, alg)
    a, b = M.hockney_from_allreduce(L * alpha, B * beta, p, alg)
    assert (a, b) == (pytest.approx(alpha), pytest.approx(beta))
    if p == 2:  # ring and Rabenseifner agree at two ranks: a = 2α, b = β
        assert M.allreduce_coefficients(2, "ring") == M.allreduce_coefficients(2, "rabenseifner") == (2.0, 1.0)
    with pytest.raises(ValueError):
        M.hockney_from_allreduce(1e-6, 1e-9, 1, alg)


# -- work split ------------------------------------------------------------------------------

def test_busiest_rank_follows_the_chunk_partition():
    assert M.busiest_rank(M.work_split(10_000, 4096, 1)) == (10_000, 3)
    assert M.busiest_rank(M.work_split(10_000, 4096, 2)) == (8192, 2)
    assert M.busiest_rank(M.work_split(10_000, 4096, 3)) == (4096, 1)
    assert M.busiest_rank(M.work_split(10_000, 4096, 64)) == (4096, 1)  # past n_chunks ranks, no more splitting
    assert M.busiest_rank(M.work_split(3000, 4096, 1)) == (3000, 1)


def chunk_split(nc, p):
    """The split of ``nc`` one-row chunks over ``p`` ranks."""
    return M.work_split(nc, 1, p)


@pytest.mark.parametrize("nc,p", [(1, 1), (3, 1), (489, 2), (489, 7), (489, 4096), (1000, 64)])
def test_exact_gather_bytes_counts_the_dyadic_covers(nc, p):
    width = 34
    covers = [dyadic_cover(*block_range(nc, p, q)) for q in range(p)]
    total, mine = M.exact_gather_bytes(chunk_split(nc, p), width)
    assert total == sum(map(len, covers)) * width * 8
    assert mine == len(covers[0]) * width * 8


def test_reduction_time_exact_is_an_allgather_and_fast_an_allreduce():
    a, b = 1e-6, 1e-9
    assert M.reduction_time(chunk_split(489, 1), "exact", 34, a, b, "ring") == 0.0
    total, _ = M.exact_gather_bytes(chunk_split(489, 8), 34)
    assert M.reduction_time(chunk_split(489, 8), "exact", 34, a, b, "ring") == pytest.approx(
        M.allgather_time(8, total, a, b, "ring"))
    assert M.reduction_time(chunk_split(489, 8), "fast", 34, a, b, "rabenseifner") == pytest.approx(
        M.allreduce_time(8, 34 * 8, a, b, "rabenseifner"))


# -- model fit and projection -----------------------------------------------------------------

TRUE = dict(fixed_s=0.4, per_row_s=2e-8, per_chunk_reduce_s=1e-6, reductions=32, width=34, chunk_rows=4096,
            reduction="exact", alpha_s=2e-6, beta_s_per_byte=5e-10)


def synthetic_points(model, rows, ranks, alg="rabenseifner"):
    pts = []
    for p in ranks:
        pr = model.predict(p, rows, alg)
        comm = pr["t_comm_s"]
        pts.append({"ranks": p, "rows": rows, "chunk_rows": model.chunk_rows, "width": model.width,
                    "reduction": model.reduction, "reductions": model.reductions, "wall_s": pr["t_total_s"],
                    "read_max": 0.3 * pr["t_rows_s"], "compute_max": 0.7 * pr["t_rows_s"],
                    "reduce_min": pr["t_reduce_local_s"] + comm})
    return pts


def test_fit_cost_model_recovers_a_known_model():
    true = M.CostModel(**TRUE)
    pts = synthetic_points(true, 2_000_000, [1, 2, 4])
    fit = M.fit_cost_model(pts, TRUE["alpha_s"], TRUE["beta_s_per_byte"])
    assert fit.fixed_s == pytest.approx(TRUE["fixed_s"])
    assert fit.per_row_s == pytest.approx(TRUE["per_row_s"])
    assert fit.per_chunk_reduce_s == pytest.approx(TRUE["per_chunk_reduce_s"])
    assert fit.fitted_on == [1, 2, 4]
    for p in (1, 2, 4, 64, 4096):
        for alg in M.ALGORITHMS:
            got = fit.predict(p, 2_000_000, alg)["t_total_s"]
            assert M.prediction_error(got, true.predict(p, 2_000_000, alg)["t_total_s"]) == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError):
        M.fit_cost_model([], 1e-6, 1e-9)


def test_projection_without_overheads_is_limited_by_chunks_only():
    ideal = M.CostModel(**{**TRUE, "fixed_s": 0.0, "per_chunk_reduce_s": 0.0, "alpha_s": 0.0, "beta_s_per_byte": 0.0})
    rows = 4096 * 64  # 64 whole chunks
    proj = M.project(ideal, "strong", rows, [1, 2, 16, 64, 128, 4096], algorithms=["ring"])
    by = {r["ranks"]: r for r in proj}
    for p in (1, 2, 16, 64):
        assert by[p]["speedup"] == pytest.approx(p) and by[p]["efficiency"] == pytest.approx(1.0)
    assert by[128]["speedup"] == pytest.approx(64) and by[4096]["efficiency"] == pytest.approx(64 / 4096)
    weak = M.project(ideal, "weak", rows, [1, 8, 4096], algorithms=["ring"])
    assert all(r["efficiency"] == pytest.approx(1.0) for r in weak)
    assert weak[-1]["rows"] == rows * 4096


def test_projection_latency_bound_at_scale_and_ring_worse_than_rabenseifner():
    cm = M.CostModel(**TRUE)
    proj = M.project(cm, "strong", 2_000_000, M.projection_ranks([1, 2, 4]))
    ranks = sorted({r["ranks"] for r in proj})
    assert ranks[:3] == [1, 2, 4] and 16 in ranks and ranks[-1] == 4096
    ring = {r["ranks"]: r for r in proj if r["algorithm"] == "ring"}
    rab = {r["ranks"]: r for r in proj if r["algorithm"] == "rabenseifner"}
    assert ring[1]["speedup"] == rab[1]["speedup"] == 1.0
    assert ring[2]["t_total_s"] == pytest.approx(rab[2]["t_total_s"])     # same at p = 2
    assert ring[4096]["t_comm_s"] > rab[4096]["t_comm_s"]                  # (p−1)α vs log2(p)α
    effs = [rab[p]["efficiency"] for p in ranks]
    assert all(a >= b - 1e-12 for a, b in zip(effs, effs[1:]))            # efficiency never rises
    assert all(math.isnan(r["karp_flatt"]) if r["ranks"] == 1 else r["karp_flatt"] > 0 for r in proj)
