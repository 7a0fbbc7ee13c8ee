"""The matmul job under mpiexec: C = A B through the factors of A against numpy's dense product."""

import re

import h5py
import numpy as np
import pytest

from mpirun import ROOT, run_mpi, summary

SEED_JOB = ROOT / "jobs" / "matmul_seed.toml"
# Uneven rows at -n 3 (127 = 43 + 42 + 42), non-square A and B, few repetitions.
SMALL = ["--set", "matmul.m=127", "--set", "matmul.n=120", "--set", "matmul.p=110",
         "--set", "matmul.repeats=2"]


def run_job(tmp_path, n, *extra, name="run"):
    out = tmp_path / name
    proc = run_mpi(n, [SEED_JOB, "--out", out, *SMALL, *extra], timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out, summary(out), proc


def spread_ok(s):
    return set(s) == {"min", "median", "max"} and s["min"] <= s["median"] <= s["max"]


@pytest.mark.parametrize("n_ranks", [1, 3])
def test_exact_rank_product_matches_numpy(tmp_path, n_ranks):
    out, s, proc = run_job(tmp_path, n_ranks, "--set", "model.rank=10", "--set", "data.noise=0")
    assert s["kind"] == "matmul" and s["exit_code"] == 0 and s["world_size"] == n_ranks
    assert s["error_reference"].startswith("numpy dense A @ B on rank 0")
    assert s["rel_error"] == s["rel_error_numpy"] <= 1e-10
    assert s["rel_error_blockwise"] <= 1e-10 and s["rel_error_replicated_path"] <= 1e-10
    assert s["dense_vs_numpy_rel_error"] <= 1e-13
    assert s["rank_k"] == 10 and s["singular_values"]["k"] == 10
    assert s["singular_values"]["first_discarded"] <= 1e-12  # exact rank 10
    assert s["singular_values"]["tail_complete"] is True
    assert s["orthogonality_error"]["U"] <= 1e-12 and s["orthogonality_error"]["V"] <= 1e-12
    assert s["rows_per_rank"]["per_rank"] == ([127] if n_ranks == 1 else [43, 42, 42])
    m, n, p, k = 127, 120, 110, 10
    assert s["flops"]["dense"] == 2 * m * n * p
    assert s["flops"]["factored"] == 2 * k * p * (m + n) + k * p
    assert s["flops"]["ratio"] == pytest.approx(s["flops"]["dense"] / s["flops"]["factored"])
    for path in ("dense", "factored", "factored_replicated"):
        assert spread_ok(s["product_s"][path]) and s["product_s"][path]["min"] > 0
        assert len(s["product_s_by_rank"][path]) == n_ranks
    assert s["speedup"] > 0 and s["speedup_over_flop_ratio"] == pytest.approx(s["speedup"] / s["flops"]["ratio"])
    for phase in ("generate", "factor", "dense_matmul", "factored_matmul", "verify", "save"):
        assert spread_ok(s["phases_s"][phase]), phase
    assert s["factorization_s"] == s["phases_s"]["factor"]
    assert s["provenance"]["world_size"] == n_ranks and s["provenance"]["mpi_library"]
    assert "matmul: relative error" in proc.stdout
    with h5py.File(out / "factors.h5", "r") as f:
        assert f["factors/U"].shape == (m, k) and f["factors/V"].shape == (n, k)
        assert tuple(f["factors"].attrs["shape"]) == (m, n)
        S = f["factors/S"][()]
    assert np.all(np.diff(S) <= 0) and (out / "config.toml").exists()


def test_same_matrix_on_any_rank_count(tmp_path):
    """A is drawn per row block from the seed: -n 1 and -n 3 factor the same matrix."""
    args = ("--set", "model.rank=0", "--set", "data.noise=0.05", "--set", "matmul.repeats=1")
    a, sa, _ = run_job(tmp_path, 1, *args, name="n1")
    b, sb, _ = run_job(tmp_path, 3, *args, name="n3")
    with h5py.File(a / "factors.h5", "r") as fa, h5py.File(b / "factors.h5", "r") as fb:
        np.testing.assert_allclose(fa["factors/S"][()], fb["factors/S"][()], rtol=1e-10, atol=1e-13)
    # full rank (model.rank = 0): k = min(m, n) and the product is exact to rounding
    assert sa["rank_k"] == sb["rank_k"] == 120 and sa["singular_values"]["n_discarded"] == 0
    assert sa["rel_error"] <= 1e-10 and sb["rel_error"] <= 1e-10


@pytest.mark.parametrize("n_ranks", [1, 3])
def test_truncated_rank_error_is_bounded_by_the_tail(tmp_path, n_ranks):
    # m = n = p = 120: a signal of rank 8 plus noise of spectral size ~1e-3; the rank-8 factors
    # drop the noise, so the error is that of the best rank-8 approximation
    _, s, _ = run_job(tmp_path, n_ranks, "--set", "model.rank=8", "--set", "data.noise=0.001",
                      "--set", "matmul.m=120", "--set", "matmul.p=120")
    sv = s["singular_values"]
    assert sv["tail_complete"] and sv["n_discarded"] == 120 - 8
    assert 1e-4 < sv["first_discarded"] < 5e-3 < sv["min_kept"]  # the noise level, under the signal
    bound = s["rel_error_bound_from_tail"]
    assert 1e-6 < s["rel_error"] <= bound < 0.05  # really truncated, within sigma_9 ||B||_F / ||C||_F
    assert s["rel_error_blockwise"] == pytest.approx(s["rel_error"], rel=1e-6)
    assert s["factorization_rel_error_fro"] > 1e-6


def test_randomized_factorization_of_an_exact_rank_matrix(tmp_path):
    _, s, _ = run_job(tmp_path, 3, "--set", "model.rank=10", "--set", "data.noise=0",
                      "--set", "matmul.method=randomized", "--set", "matmul.oversampling=5")
    assert s["method"] == "randomized" and s["rank_k"] == 10
    assert s["rel_error"] <= 1e-10 and s["orthogonality_error"]["U"] <= 1e-12
    assert s["singular_values"]["tail_complete"] is False


def test_blockwise_reference_above_the_gather_limit(tmp_path):
    out = tmp_path / "blockwise"
    proc = run_mpi(3, [SEED_JOB, "--out", out, *SMALL, "--set", "model.rank=10", "--set", "data.noise=0"],
                   env={"LEPTON_MATMUL_GATHER_LIMIT": "0"}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = summary(out)
    assert s["error_reference"].startswith("blockwise") and s["rel_error_numpy"] is None
    assert s["rel_error"] == s["rel_error_blockwise"] <= 1e-10


def test_more_ranks_than_rows(tmp_path):
    out = tmp_path / "tiny"
    proc = run_mpi(3, [SEED_JOB, "--out", out, "--set", "matmul.m=2", "--set", "matmul.n=5",
                       "--set", "matmul.p=3", "--set", "model.rank=0", "--set", "matmul.repeats=1"],
                   timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = summary(out)
    assert s["rows_per_rank"]["per_rank"] == [1, 1, 0] and s["rank_k"] == 2
    assert s["rel_error"] <= 1e-12


def test_rank_above_min_m_n_is_one_sentence_and_exit_1(tmp_path):
    proc = run_mpi(3, [SEED_JOB, "--out", tmp_path / "bad", *SMALL, "--set", "model.rank=200"], timeout=90)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"model\.rank=200 exceeds min\(matmul\.m, matmul\.n\)=120: .* set model\.rank to at "
                     r"most 120 \(0 means full rank\)", errors[0]), errors[0]
    assert not (tmp_path / "bad" / "factors.h5").exists()


def test_generated_rows_do_not_depend_on_the_split():
    from lepton_hpc.data.synthetic.matrices import GEN_CHUNK_ROWS, rows_of_a

    m, n, r = 3 * GEN_CHUNK_ROWS + 5, 40, 6
    whole = rows_of_a(0, m, m, n, r, 0.1, seed=3)
    for cuts in ([0, 1, 70, 130, m], [0, GEN_CHUNK_ROWS, m], [0, 0, m]):
        parts = [rows_of_a(lo, hi, m, n, r, 0.1, seed=3) for lo, hi in zip(cuts, cuts[1:])]
        np.testing.assert_array_equal(np.vstack(parts), whole)
    assert np.linalg.matrix_rank(rows_of_a(0, m, m, n, r, 0.0, seed=3)) == r
    assert np.linalg.matrix_rank(whole) == n
