"""Pure scaling maths: speedup, efficiency, Karp–Flatt, Hockney fit, collective costs, projection.

No MPI, no files, no plotting: every function here takes numbers and returns numbers,
so it is unit-tested on synthetic data.

Network model (Hockney): sending ``n`` bytes between two ranks costs ``α + β·n``.
The standard costs of the collectives the application uses, at ``p`` ranks
(Thakur, Rabenseifner & Gropp 2005; the reduction arithmetic is folded into β):

==========================  ==============================  =========================
collective / algorithm      latency term                    bandwidth term
==========================  ==============================  =========================
Allreduce, ring             2(p−1)·α                        2(p−1)/p · n·β
Allreduce, Rabenseifner     2⌈log2 p⌉·α                     2(p−1)/p · n·β
Allgather(v), ring          (p−1)·α                         (p−1)/p · N·β
Allgather(v), rec. doubling ⌈log2 p⌉·α                      (p−1)/p · N·β
==========================  ==============================  =========================

``n`` is the vector every rank contributes to an Allreduce; ``N`` the total bytes an
Allgatherv leaves on every rank. The exact (rank-count independent) reduction of
:mod:`lepton_hpc.reduce` is an Allgatherv of tree nodes; its "rabenseifner" variant
here is recursive doubling, the allgather half of Rabenseifner's algorithm.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..layout import Layout
from ..errors import UserError

ALGORITHMS = ("ring", "rabenseifner")


# -- speedup and efficiency ------------------------------------------------------

def speedup(t_base: float, t_p: float, base_ranks: int = 1) -> float:
    """Strong-scaling speedup ``base_ranks · T(base) / T(p)`` (T(1)/T(p) with a 1-rank base)."""
    return base_ranks * t_base / t_p


def scaled_speedup(t_base: float, t_p: float, p: int) -> float:
    """Weak scaling (rows per rank fixed): ``p · T(base)/T(p)``; its efficiency is T(base)/T(p)."""
    return p * t_base / t_p


def efficiency(s: float, p: int) -> float:
    """Parallel efficiency ``S/p`` (1 is perfect)."""
    return s / p


def karp_flatt(s: float, p: int) -> float:
    """Karp–Flatt experimentally determined serial fraction ``(1/S − 1/p) / (1 − 1/p)``.

    NaN at p = 1, where it is undefined. A value that grows with p points at
    parallel overhead (communication, imbalance) rather than serial code.
    """
    if p <= 1:
        return math.nan
    return (1.0 / s - 1.0 / p) / (1.0 - 1.0 / p)


def amdahl_speedup(serial_fraction: float, p: int) -> float:
    """Speedup under Amdahl's law with serial fraction ``f`` (for tests of Karp–Flatt)."""
    return 1.0 / (serial_fraction + (1.0 - serial_fraction) / p)


# -- Hockney fit -----------------------------------------------------------------------

def hockney_fit(nbytes, times, relative: bool = True) -> dict:
    """Least-squares fit of ``t = a + b·bytes`` with a, b >= 0.

    ``relative`` weights each point by 1/t, i.e. minimises relative residuals, so
    that the microsecond latency of small messages is not drowned by the
    millisecond times of large ones. Returns ``a_s``, ``b_s_per_byte``, the
    per-point relative residuals (fit/measured − 1), their RMS and max.
    """
    from scipy.optimize import nnls

    n = np.asarray(nbytes, dtype=float)
    t = np.asarray(times, dtype=float)
    if n.shape != t.shape or n.size < 2:
        raise UserError("hockney_fit needs at least two (bytes, time) points of equal length")
    if not (np.all(np.isfinite(t)) and np.all(t > 0)):
        raise UserError("hockney_fit needs finite, positive times")
    w = 1.0 / t if relative else np.ones_like(t)
    A = np.column_stack([w, n * w])
    (a, b), _ = nnls(A, t * w)
    fit = a + b * n
    res = fit / t - 1.0
    return {"a_s": float(a), "b_s_per_byte": float(b), "weights": "relative" if relative else "absolute",
            "fit_s": fit.tolist(), "residuals_rel": res.tolist(),
            "rms_rel": float(np.sqrt(np.mean(res ** 2))), "max_abs_rel": float(np.max(np.abs(res)))}


# -- collective costs ----------------------------------------------------------------

def _log2c(p: int) -> int:
    return max(0, (int(p) - 1).bit_length())  # ceil(log2 p)


def allreduce_coefficients(p: int, algorithm: str) -> tuple[float, float]:
    """(L, B) with Allreduce time ``L·α + B·n·β`` for n bytes at p ranks."""
    if p <= 1:
        return 0.0, 0.0
    band = 2.0 * (p - 1) / p
    if algorithm == "ring":
        return 2.0 * (p - 1), band
    if algorithm == "rabenseifner":
        return 2.0 * _log2c(p), band
    raise UserError(f"unknown allreduce algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")


def allgather_coefficients(p: int, algorithm: str) -> tuple[float, float]:
    """(L, B) with Allgather time ``L·α + B·N·β`` for N total bytes at p ranks."""
    if p <= 1:
        return 0.0, 0.0
    band = (p - 1) / p
    if algorithm == "ring":
        return float(p - 1), band
    if algorithm == "rabenseifner":  # recursive doubling: the allgather half of Rabenseifner
        return float(_log2c(p)), band
    raise UserError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")


def allreduce_time(p: int, nbytes: float, alpha: float, beta: float, algorithm: str) -> float:
    L, B = allreduce_coefficients(p, algorithm)
    return L * alpha + B * nbytes * beta


def allgather_time(p: int, total_bytes: float, alpha: float, beta: float, algorithm: str) -> float:
    L, B = allgather_coefficients(p, algorithm)
    return L * alpha + B * total_bytes * beta


def hockney_from_allreduce(a_s: float, b_s_per_byte: float, p: int, algorithm: str) -> tuple[float, float]:
    """Point-to-point (α, β) from a measured Allreduce line ``t = a + b·n`` at p ranks."""
    L, B = allreduce_coefficients(p, algorithm)
    if L <= 0 or B <= 0:
        raise UserError("an Allreduce at one rank says nothing about the network; measure with >= 2 ranks")
    return a_s / L, b_s_per_byte / B


# -- the application's work split -------------------------------------------------------

def work_split(n_rows: int, chunk_rows: int, p: int) -> Layout:
    """The chunk ownership the application uses for ``n_rows`` rows at ``p`` ranks, as rank 0 sees it."""
    return Layout(n_rows, chunk_rows, p, 0)


def busiest_rank(layout: Layout) -> tuple[int, int]:
    """(rows, chunks) of the busiest rank (rank 0: the balanced block partition gives it the extra chunks).

    Past ``p = n_chunks`` ranks the busiest rank keeps one chunk: strong scaling stops.
    """
    return max(layout.row_counts()), layout.max_local_chunks


def exact_gather_bytes(layout: Layout, width: int) -> tuple[int, int]:
    """(total bytes on every rank after, bytes of rank 0) of the exact reduction's Allgatherv:
    every rank sends the tree nodes of its dyadic cover, ``width`` doubles each."""
    nodes = [len(cover) for cover in layout.covers()]
    return sum(nodes) * width * 8, nodes[0] * width * 8


def reduction_time(layout: Layout, reduction: str, width: int, alpha: float, beta: float, algorithm: str) -> float:
    """Seconds of one reduction of a ``width``-double partial over the ``layout.size`` ranks."""
    p = layout.size
    if p <= 1:
        return 0.0
    if reduction == "exact":
        total, _ = exact_gather_bytes(layout, width)
        return allgather_time(p, total, alpha, beta, algorithm)
    return allreduce_time(p, width * 8, alpha, beta, algorithm)


# -- the cost model ----------------------------------------------------------------------

@dataclass
class CostModel:
    """``T(p) = F + c·R(p) + m·(g·C(p) + t_red(p))`` for one run of the job.

    R(p), C(p): rows and chunks of the busiest rank; m reductions per run (steps + 2:
    the loop, the final loss and the reference pass); t_red from α, β and the algorithm.
    """

    fixed_s: float            # F: setup, update, checkpoint, untimed work
    per_row_s: float          # c: read + all compute passes, per row of the busiest rank
    per_chunk_reduce_s: float  # g: local tree sums inside the reduce phase, per chunk per reduction
    reductions: int           # m
    width: int                # doubles per chunk partial
    chunk_rows: int
    reduction: str            # "exact" (Allgatherv of tree nodes) or "fast" (Allreduce)
    alpha_s: float
    beta_s_per_byte: float
    fitted_on: list = field(default_factory=list)  # rank counts the fit used

    def predict(self, p: int, n_rows: int, algorithm: str) -> dict:
        layout = work_split(n_rows, self.chunk_rows, p)
        rows, chunks = busiest_rank(layout)
        t_row = self.per_row_s * rows
        t_comm = self.reductions * reduction_time(layout, self.reduction, self.width, self.alpha_s,
                                                  self.beta_s_per_byte, algorithm)
        t_local = self.reductions * self.per_chunk_reduce_s * chunks
        total = self.fixed_s + t_row + t_local + t_comm
        return {"ranks": p, "rows": n_rows, "rows_busiest_rank": rows, "chunks_busiest_rank": chunks,
                "t_fixed_s": self.fixed_s, "t_rows_s": t_row, "t_reduce_local_s": t_local,
                "t_comm_s": t_comm, "t_total_s": total}

    def to_dict(self) -> dict:
        return asdict(self)


def fit_cost_model(points: list[dict], alpha: float, beta: float, algorithm: str = "rabenseifner") -> CostModel:
    """Fit F, c and g from measured runs.

    Each point: ranks, rows, chunk_rows, width, reduction, reductions, wall_s and the
    phase times read_max, compute_max, reduce_min (the busiest rank sets the pace of
    read and compute; the rank that arrives last at a reduction waits least, so its
    reduce time is the cost of the reduction itself).

    c = least squares through 0 of (read_max + compute_max) on R(p), in relative terms
        (minimises Σ((c·R − y)/y)², so every rank count weighs alike, as in the check);
    g = least squares through 0 of max(0, reduce_min − m·t_red(p)) on m·C(p);
    F = median of wall − read_max − compute_max − reduce_min.
    """
    if not points:
        raise UserError("no measured runs to fit the cost model on (all failed or oversubscribed?)")
    first = points[0]
    xs, ys, xc, yc, fixed = [], [], [], [], []
    for pt in points:
        layout = work_split(pt["rows"], pt["chunk_rows"], pt["ranks"])
        rows, chunks = busiest_rank(layout)
        t_comm = pt["reductions"] * reduction_time(layout, pt["reduction"], pt["width"], alpha, beta, algorithm)
        xs.append(rows)
        ys.append(pt["read_max"] + pt["compute_max"])
        xc.append(pt["reductions"] * chunks)
        yc.append(max(0.0, pt["reduce_min"] - t_comm))
        fixed.append(pt["wall_s"] - pt["read_max"] - pt["compute_max"] - pt["reduce_min"])
    xs, ys, xc, yc = map(lambda a: np.asarray(a, dtype=float), (xs, ys, xc, yc))
    ok = ys > 0
    rx = xs[ok] / ys[ok]
    c = float(rx.sum() / (rx @ rx)) if rx @ rx > 0 else 0.0
    g = float(xc @ yc / (xc @ xc)) if xc @ xc > 0 else 0.0
    return CostModel(fixed_s=max(0.0, float(np.median(fixed))), per_row_s=c, per_chunk_reduce_s=g,
                     reductions=int(first["reductions"]), width=int(first["width"]),
                     chunk_rows=int(first["chunk_rows"]), reduction=first["reduction"], alpha_s=alpha,
                     beta_s_per_byte=beta, fitted_on=sorted({int(pt["ranks"]) for pt in points}))


def projection_ranks(measured, lo: int = 16, hi: int = 4096) -> list[int]:
    """Powers of two from 1 to ``hi`` plus every measured rank count (sorted, unique)."""
    ps = {1 << k for k in range(0, hi.bit_length()) if (1 << k) <= hi}
    ps.add(lo)
    ps.update(int(p) for p in measured)
    return sorted(ps)


def project(model: CostModel, mode: str, base_rows: int, ranks, algorithms=ALGORITHMS) -> list[dict]:
    """Predicted time, speedup and efficiency at each rank count and algorithm.

    Strong: the job's rows at every p, speedup T(1)/T(p). Weak: ``base_rows·p`` rows,
    scaled speedup p·T(1)/T(p). Efficiency is speedup/p in both.
    """
    out = []
    for alg in algorithms:
        t1 = model.predict(1, base_rows, alg)["t_total_s"]
        for p in ranks:
            rows = base_rows * p if mode == "weak" else base_rows
            r = model.predict(p, rows, alg)
            s = p * t1 / r["t_total_s"] if mode == "weak" else t1 / r["t_total_s"]
            out.append({"algorithm": alg, **r, "speedup": s, "efficiency": s / p,
                        "karp_flatt": karp_flatt(s, p)})
    return out


def prediction_error(predicted: float, measured: float) -> float:
    """Relative error of a prediction: predicted/measured − 1."""
    return predicted / measured - 1.0
