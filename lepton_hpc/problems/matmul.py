"""The ``matmul`` job: ``C = A B`` through the factors of ``A``, timed against the dense product.

    mpirun -n 10 python -m lepton_hpc.train jobs/matmul_seed.toml

Layout: ``A`` (``m x n``) is split by contiguous, balanced row blocks over the
ranks (:func:`lepton_hpc.layout.block_range`); ``B`` (``n x p``) is
replicated.  ``A`` is factored once, ``A ~ U diag(S) V^T`` (TSQR thin SVD or
the randomized SVD, :class:`lepton_hpc.linalg.FactoredMatrix`), and every rank
computes its rows of ``C`` three ways, interleaved and repeated
(``matmul.repeats``):

``dense``
    the baseline, ``A_local @ B`` (``2 m n p`` flops in all).
``factored``
    ``U_local (S (V^T B))`` with the ``k x p`` inner product ``V^T B`` split
    over the ranks by rows of ``V``/``B`` and summed by one ``Allreduce``
    (``2 k p (m + n) + k p`` flops in all).
``factored_replicated``
    the arithmetic of :meth:`FactoredMatrix.matmul`: every rank forms all of
    ``V^T B`` itself, no communication (``size * 2 k n p`` of redundant inner work).

All three write into buffers allocated once; the error check recomputes the
products, with :meth:`FactoredMatrix.matmul` itself for the third.

The matrices are synthetic and independent of the rank count: ``A`` is drawn
per fixed block of ``GEN_CHUNK_ROWS`` rows from ``(matmul.seed, block)``, so
``-n 1`` and ``-n 10`` factor the same matrix::

    A = L diag(sigma) R^T + E

with ``R`` (``n x r``) orthonormal, ``L`` (``m x r``) standard normal over
``sqrt(m)`` (columns of norm ~1), ``sigma`` geometric from 1 down to 1e-2 and
``E`` Gaussian with entries of standard deviation ``data.noise / (sqrt(m) +
sqrt(n))``, so ``||E||_2 ~ data.noise``.  The signal rank ``r`` is
``model.rank`` (or ``min(m, n)`` when ``model.rank = 0``): with
``data.noise = 0`` and ``model.rank = k > 0`` the matrix has exact rank ``k``
and the factored product is exact to rounding; with noise, the rank-``k``
factors truncate the noise and the error is bounded by the tail
(``||(A - A_k) B||_F <= sigma_{k+1} ||B||_F``).

Error reference: rank 0 regenerates all of ``A`` and compares the gathered
``C`` with numpy's ``A @ B`` when ``m p`` and ``m n`` are at most
``GATHER_LIMIT`` entries (``$LEPTON_MATMUL_GATHER_LIMIT`` overrides it); above
that each rank compares its rows with its own dense ``A_local @ B`` (blockwise;
the sums of squares are combined by an Allreduce).
The factors go to ``<out>/factors.h5`` (:meth:`FactoredMatrix.save`).
"""

from __future__ import annotations

import os
import time

import numpy as np

from .. import comm as C
from ..data.synthetic.matrices import make_b, right_factor, rows_of_a, signal_spectrum
from ..engine.problem import Problem
from ..errors import UserError
from ..layout import block_range
from ..linalg import FactoredMatrix, orthogonality_error
from ..metrics import spread

GATHER_LIMIT = 16_000_000  # entries of C (and of A) up to which rank 0 checks against numpy's A @ B

PATHS = ("dense", "factored", "factored_replicated")
PHASE_OF = {"dense": "dense_matmul", "factored": "factored_matmul",
            "factored_replicated": "factored_matmul_replicated"}
JOB_PHASES = ("generate", "factor", *PHASE_OF.values(), "verify", "save")


def flop_counts(m: int, n: int, p: int, k: int, size: int) -> dict:
    """Multiply-add flops (2 per multiply-add) of the three paths, in all and on the busiest rank."""
    row_lo, row_hi = block_range(m, size, 0)  # rank 0 holds the most rows
    n_lo, n_hi = block_range(n, size, 0)
    m0, n0 = row_hi - row_lo, n_hi - n_lo
    return {
        "dense": 2 * m * n * p,
        "factored": 2 * k * p * (m + n) + k * p,
        "factored_replicated": size * (2 * k * n * p + k * p) + 2 * m * k * p,
        "per_rank_max": {"dense": 2 * m0 * n * p, "factored": 2 * k * p * (m0 + n0) + k * p,
                         "factored_replicated": 2 * k * p * (m0 + n) + k * p},
    }


def gather_limit() -> int:
    """``GATHER_LIMIT``, or ``$LEPTON_MATMUL_GATHER_LIMIT`` when set (the tests use 0)."""
    raw = os.environ.get("LEPTON_MATMUL_GATHER_LIMIT", "")
    try:
        return int(raw) if raw.strip() else GATHER_LIMIT
    except ValueError:
        return GATHER_LIMIT


class MatmulProblem(Problem):
    """The ``matmul`` job (``model.kind = "matmul"``): a direct problem without steps or checkpoints."""

    direct = True
    checkpoints = False
    config_unused = ("optimizer", "checkpoint")
    work_unit = None

    def __init__(self, ctx):
        super().__init__(ctx)
        cfg = ctx.cfg
        self.size, self.rank, self.out = self.comm.size, self.comm.rank, ctx.out
        mm = cfg.matmul
        self.m, self.n, self.p = mm.m, mm.n, mm.p
        self.k = cfg.model.rank if cfg.model.rank > 0 else min(self.m, self.n)
        self.times = {path: [] for path in PATHS}
        self.cpu_times = {path: [] for path in PATHS}  # this rank's CPU seconds (MPI spin-waits included)

    # -- setup ---------------------------------------------------------------------
    def _check(self) -> None:
        m, n, k = self.m, self.n, self.cfg.model.rank
        if k > min(m, n):
            raise UserError(
                f"model.rank={k} exceeds min(matmul.m, matmul.n)={min(m, n)}: a {m} x {n} matrix has "
                f"at most {min(m, n)} singular values, so set model.rank to at most {min(m, n)} "
                f"(0 means full rank)")

    def setup(self) -> None:
        """Check the job, generate this rank's rows of A and B, factor A. Collective."""
        cfg, comm, mm = self.cfg, self.comm, self.cfg.matmul
        C.agree(comm, self._check)
        self.fingerprint = f"matmul-{self.m}x{self.n}x{self.p}-seed{mm.seed}"
        self.row_range = block_range(self.m, self.size, self.rank)
        self.inner_range = block_range(self.n, self.size, self.rank)  # rows of V, B for the split V^T B
        self.noise = cfg.data.noise
        with self.timer.phase("generate"):
            self.right = right_factor(self.n, self.k, mm.seed)
            self.A_local = rows_of_a(*self.row_range, self.m, self.n, self.k, self.noise, mm.seed,
                                     right=self.right)
            self.B = make_b(self.n, self.p, mm.seed)
        self.ctx.log(f"matmul: A {self.m} x {self.n} (signal rank {self.k}, noise {self.noise:g}), "
                 f"B {self.n} x {self.p}, {self.size} rank(s); factoring A at rank {self.k} ({mm.method})")
        C.barrier(comm)
        with self.timer.phase("factor"):
            self.fm = C.agree(comm, FactoredMatrix.from_dense_block, self.A_local, comm, self.k,
                              method=mm.method, oversampling=mm.oversampling,
                              n_power_iter=mm.power_iters, seed=mm.seed)
        C.barrier(comm)

    # -- the products (into buffers allocated once, as the DESIGN asks of step loops) ----
    def _allocate(self) -> None:
        rows, k, p = self.A_local.shape[0], self.fm.k, self.p
        self.out_c = {path: np.empty((rows, p)) for path in PATHS}
        self.inner_part = np.empty((k, p))  # this rank's share of V^T B
        self.inner = np.empty((k, p))  # V^T B, summed / replicated

    def dense(self) -> np.ndarray:
        return np.matmul(self.A_local, self.B, out=self.out_c["dense"])

    def factored(self) -> np.ndarray:
        """This rank's rows of ``U (S (V^T B))``; ``V^T B`` split over the ranks (one Allreduce)."""
        lo, hi = self.inner_range
        np.matmul(self.fm.V[lo:hi].T, self.B[lo:hi], out=self.inner_part)
        C.allreduce_sum_into(self.comm, self.inner_part, self.inner)
        self.inner *= self.fm.S[:, np.newaxis]
        return np.matmul(self.fm.U_local, self.inner, out=self.out_c["factored"])

    def factored_replicated(self) -> np.ndarray:
        """:meth:`FactoredMatrix.matmul`'s arithmetic (every rank forms all of ``V^T B``), into buffers."""
        np.matmul(self.fm.V.T, self.B, out=self.inner)
        self.inner *= self.fm.S[:, np.newaxis]
        return np.matmul(self.fm.U_local, self.inner, out=self.out_c["factored_replicated"])

    def solve(self) -> None:
        """Time the three products (interleaved, repeated), check the error, save the factors. Collective."""
        comm, repeats = self.comm, self.cfg.matmul.repeats
        self._allocate()
        fns = {path: getattr(self, path) for path in PATHS}
        for fn in fns.values():
            fn()  # warm-up
        # the error check uses fresh products: the timed ones, and FactoredMatrix.matmul itself
        results = {"dense": self.dense().copy(), "factored": self.factored().copy(),
                   "factored_replicated": self.fm.matmul(self.B)}
        for rep in range(repeats):
            order = PATHS[rep % 3:] + PATHS[:rep % 3]  # rotate so no path always goes first
            for path in order:
                C.barrier(comm)  # everyone starts together: a product lasts as long as its slowest rank
                with self.timer.phase(PHASE_OF[path], rep):
                    c0, t0 = time.process_time(), time.perf_counter()
                    fns[path]()
                    self.times[path].append(time.perf_counter() - t0)
                    self.cpu_times[path].append(time.process_time() - c0)
        C.barrier(comm)
        with self.timer.phase("verify"):
            self.check = self._verify(results)
        with self.timer.phase("save"):
            try:
                self.fm.save(self.out / "factors.h5", comm)
            except C.JobError as exc:  # agreed on every rank by FactoredMatrix.save
                raise C.JobError(f"could not write the factors: {exc}", 0) from None

    def _verify(self, results: dict) -> dict:
        """Relative errors of the factored products against numpy's dense product. Collective."""
        comm, fm = self.comm, self.fm
        c_dense, c_fact, c_rep = results["dense"], results["factored"], results["factored_replicated"]
        sums = C.allreduce_sum(comm, np.array([np.sum((c_fact - c_dense) ** 2), np.sum(c_dense ** 2),
                                             np.sum((c_rep - c_dense) ** 2), np.sum(self.B ** 2),
                                             np.sum(self.A_local ** 2)]))
        c_norm = np.sqrt(sums[1])
        out = {
            "rel_error_blockwise": float(np.sqrt(sums[0]) / max(c_norm, 1e-300)),
            "rel_error_replicated_path": float(np.sqrt(sums[2]) / max(c_norm, 1e-300)),
            "b_fro": float(np.sqrt(sums[3])), "c_fro": float(c_norm), "a_fro": float(np.sqrt(sums[4])),
            "orthogonality_error_U": orthogonality_error(fm.U_local, comm),
            "orthogonality_error_V": float(np.linalg.norm(fm.V.T @ fm.V - np.eye(fm.k), ord=2))
            if fm.k else 0.0,
            "factorization_error_fro": fm.frobenius_error(self.A_local, comm),
        }
        limit = gather_limit()
        gather = self.m * self.p <= limit and self.m * self.n <= limit
        out["error_reference"] = ("numpy dense A @ B on rank 0 (C gathered)" if gather else
                                  f"blockwise: each rank's rows against its dense A_local @ B "
                                  f"(m*p={self.m * self.p} or m*n={self.m * self.n} is above the "
                                  f"gather limit of {limit} entries)")
        out["rel_error_numpy"] = out["dense_vs_numpy_rel_error"] = None
        if gather:
            pieces = C.gather(comm, (c_fact, c_dense))
            if self.rank == 0:
                mm = self.cfg.matmul
                a_full = rows_of_a(0, self.m, self.m, self.n, self.k, self.noise, mm.seed, right=self.right)
                reference = a_full @ self.B
                ref_norm = max(float(np.linalg.norm(reference)), 1e-300)
                out["rel_error_numpy"] = float(
                    np.linalg.norm(np.vstack([f for f, _ in pieces]) - reference) / ref_norm)
                out["dense_vs_numpy_rel_error"] = float(
                    np.linalg.norm(np.vstack([d for _, d in pieces]) - reference) / ref_norm)
        out["rel_error"] = out["rel_error_numpy"] if gather else out["rel_error_blockwise"]
        return out

    # -- summary ---------------------------------------------------------------------
    def rank_figures(self) -> dict:
        return {"times": self.times, "cpu_times": self.cpu_times, "rows": self.A_local.shape[0]}

    def summary(self, final: dict, every: list[dict]) -> dict:
        """Rank 0: the products' timings, errors and spectra from every rank's figures."""
        cfg, mm, fm, chk = self.cfg, self.cfg.matmul, self.fm, self.check
        # A product lasts as long as its slowest rank: per repetition, the max over ranks.
        per_rep = {path: np.max([e["times"][path] for e in every], axis=0) for path in PATHS}
        med = {path: float(np.median(per_rep[path])) for path in PATHS}
        # CPU seconds of one product summed over the ranks, median over repetitions: blind to time
        # slices lost to other processes, but it counts MPI's busy-waiting in the Allreduce
        cpu = {path: float(np.median(np.sum([e["cpu_times"][path] for e in every], axis=0))) for path in PATHS}
        flops = flop_counts(self.m, self.n, self.p, fm.k, self.size)
        flop_ratio = flops["dense"] / flops["factored"]
        speedup = med["dense"] / med["factored"]
        tail2, tail_fro = fm.tail_estimate(2), fm.tail_estimate("fro")
        bound = None if tail2 is None else tail2 * chk["b_fro"] / max(chk["c_fro"], 1e-300)
        s = fm.S
        singular = {
            "k": fm.k, "max": float(s[0]) if s.size else None, "min_kept": float(s[-1]) if s.size else None,
            "cond_kept": float(s[0] / s[-1]) if s.size and s[-1] > 0 else None,
            "leading": s[:10].tolist(), "trailing_kept": s[-5:].tolist(),
            "first_discarded": tail2, "tail_fro": tail_fro, "n_discarded": int(fm.s_discarded.size),
            "tail_complete": fm.tail_complete,
            "signal": {"rank": self.k, "max": 1.0, "min": float(signal_spectrum(self.k)[-1]),
                       "noise_spectral": self.noise},
        }
        phases = {ph: spread([e["phases"].get(ph, 0.0) for e in every]) for ph in JOB_PHASES}
        rows = [e["rows"] for e in every]
        summary = {
            "kind": "matmul",
            "stop_reason": "done",
            # train.py's closing line: the relative error of C through the factors
            "rel_error_to_exact": chk["rel_error"],
            "shape": {"m": self.m, "n": self.n, "p": self.p},
            "rank_k": fm.k,
            "model_rank": cfg.model.rank,
            "method": mm.method,
            "qr_path": fm.qr_path,
            "oversampling": mm.oversampling,
            "power_iters": mm.power_iters,
            "seed": mm.seed,
            "noise": self.noise,
            "world_size": self.size,
            "rows_per_rank": {"per_rank": rows, **spread(rows)},
            "rel_error": chk["rel_error"],
            "error_reference": chk["error_reference"],
            "rel_error_numpy": chk["rel_error_numpy"],
            "rel_error_blockwise": chk["rel_error_blockwise"],
            "rel_error_replicated_path": chk["rel_error_replicated_path"],
            "dense_vs_numpy_rel_error": chk["dense_vs_numpy_rel_error"],
            "rel_error_bound_from_tail": bound,
            "factorization_rel_error_fro": chk["factorization_error_fro"] / max(chk["a_fro"], 1e-300),
            "singular_values": singular,
            "orthogonality_error": {"U": chk["orthogonality_error_U"], "V": chk["orthogonality_error_V"]},
            "flops": {**flops, "ratio": flop_ratio,
                      "ratio_per_rank": {path: flops["per_rank_max"]["dense"] / flops["per_rank_max"][path]
                                         for path in PATHS[1:]}},
            "factorization_s": phases["factor"],
            "product_s": {path: spread(per_rep[path]) for path in PATHS},
            "product_s_by_rank": {path: [float(np.median(e["times"][path])) for e in every] for path in PATHS},
            # CPU seconds of one product summed over the ranks (median over repetitions)
            "product_cpu_s_all_ranks": cpu,
            "gflop_s": {path: flops[path] / med[path] / 1e9 if med[path] > 0 else None for path in PATHS},
            "speedup": speedup,
            "speedup_replicated": med["dense"] / med["factored_replicated"],
            "speedup_cpu": cpu["dense"] / cpu["factored"] if cpu["factored"] > 0 else None,
            "speedup_over_flop_ratio": speedup / flop_ratio,
            "repeats": mm.repeats,
            "factors_file": str(self.out / "factors.h5"),
        }
        self.ctx.log(f"matmul: relative error {chk['rel_error']:.3e} ({chk['error_reference'].split(' (')[0]}); "
                 f"factored product {med['factored'] * 1e3:.2f} ms vs dense {med['dense'] * 1e3:.2f} ms: "
                 f"speedup {speedup:.2f}x for a flop ratio of {flop_ratio:.2f}; factorization "
                 f"{phases['factor']['max']:.2f} s; factors in {self.out / 'factors.h5'}")
        return summary
