"""``optimizer.learning_rate = "auto"`` and ``optimizer.alpha = "auto"`` for gradient descent on a GLM.

The reference pass measures the extreme eigenvalues of the (standardised) design's second
moment matrix ``Z^T W Z / sum(w)``; :func:`curvature` turns them into bounds on the Hessian
of the job's objective: ``c * lambda + l2`` with ``c = 1`` (least squares), ``1/4``
(logistic: ``p (1 - p) <= 1/4``) or ``1/2`` (softmax). The largest, ``L``, bounds the Hessian
everywhere. The smallest, ``mu``, is the slowest curvature for least squares (a quadratic: exact)
and unknown for logistic and softmax (:func:`curvature`), whose decay is then 0: a constant step
``1/L`` is the most progress gradient descent can make in the budget.

* ``learning_rate = "auto"``: ``eta_0 = 1 / L`` for the schedule-driven rules and momentum
  (the largest step that is monotone on every mode of a quadratic); ``0.01`` for adagrad and
  adam, whose per-coordinate steps are scale-free.
* ``alpha = "auto"``: for the Lepton rule (``adaptive``) and ``inverse_time``, the largest
  ``alpha`` in ``[0, 1]`` whose schedule over ``train.steps`` shrinks the gradient on the slowest
  mode (``prod |1 - eta_t mu|``) to ``train.tol``, which is the loop's test
  ``|grad| <= tol * |grad_0|``, found by bisection on the optimizer's own schedule. When even
  ``alpha = 0`` (a constant step) cannot get there, ``alpha = 0`` gets closest and the run ends
  with ``NOT CONVERGED`` unless the budget suffices after all. Other optimizers take ``0``.

Without a measured curvature (a Gram matrix over the reduction budget) ``L`` is bounded by
the trace (``c * sum of the feature variances + l2``), ``mu`` is unknown and ``alpha`` is 0.
Every rank computes the same values from the same reduced moments.
"""

from __future__ import annotations

import numpy as np

SCALE_FREE = ("adagrad", "adam")
DECAYING = ("adaptive", "inverse_time")
#: Hessian bound per unit of the design's second moment, by model kind.
CURVATURE = {"linear": 1.0, "logistic": 0.25, "softmax": 0.5}
NO_CURVATURE_DEFAULTS = {"learning_rate": 0.1, "alpha": 0.1}  # the library defaults (mf, unknown rules)


def curvature(kind: str, ZZ: np.ndarray, P: np.ndarray) -> tuple[float | None, float]:
    """(mu, L) from the design's second moments ``ZZ`` and the L2 Hessian ``P`` (see the module doc).

    ``mu`` is None for logistic and softmax: their Hessian at the optimum, ``Z^T D Z`` with
    ``D = p (1 - p)``, can be far flatter than any bound the moments give along the direction of
    the weights (a strong signal drives ``p`` to 0 or 1 there).
    """
    eig = np.linalg.eigvalsh(CURVATURE[kind] * ZZ + P)
    mu = max(float(eig[0]), 0.0) if kind == "linear" else None
    return mu, max(float(eig[-1]), 1e-300)


def trace_bound(kind: str, ZZ_diag: np.ndarray, P_diag: np.ndarray) -> float:
    """An upper bound on L without the Gram matrix: ``c * trace(ZZ) + max(P)``."""
    return float(CURVATURE[kind] * ZZ_diag.sum() + (P_diag.max() if len(P_diag) else 0.0))


def shrink(etas: np.ndarray, lam: float) -> float:
    """How far gradient descent with steps ``etas`` shrinks an error mode of curvature ``lam``."""
    return float(np.prod(np.abs(1.0 - etas * lam)))


def auto_learning_rate(name: str, lam_max: float | None) -> float:
    if name in SCALE_FREE:
        return 0.01
    if lam_max is None:
        return NO_CURVATURE_DEFAULTS["learning_rate"]
    return 1.0 / lam_max


def auto_alpha(make, name: str, mu: float | None, steps: int, tol: float) -> float:
    """The largest alpha in [0, 1] whose schedule reaches ``tol`` on curvature ``mu`` (module doc).

    ``make(alpha)`` builds the optimizer with that alpha (its ``schedule`` is the exact sequence).
    """
    if name not in DECAYING:
        return 0.0
    if mu is None or mu <= 0 or steps <= 0 or tol <= 0:
        return 0.0

    def reaches(alpha: float) -> bool:
        return shrink(make(alpha).schedule(steps), mu) <= tol

    if not reaches(0.0):
        return 0.0
    if reaches(1.0):
        return 1.0
    lo, hi = 0.0, 1.0  # reaches(lo) holds, reaches(hi) does not; 40 halvings: alpha to ~1e-12
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if reaches(mid) else (lo, mid)
    return lo
