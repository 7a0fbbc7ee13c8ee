"""Deterministic line searches for the quasi-Newton and Newton GLM solvers.

``phi(a)`` evaluates the objective along the search direction: it returns
``(f, dphi, payload)`` with ``f = F(θ + a·d)``, ``dphi = ∇F(θ + a·d)·d`` and whatever the
caller needs back from the accepted point (its θ and gradient). Each call is one
collective pass over the data with one exact reduction, and every rank computes the same
numbers, so every rank takes the same branches: the searches are collective by construction.

* :func:`strong_wolfe`: Nocedal & Wright, Algorithm 3.5/3.6 (bracketing, then zoom by a
  safeguarded cubic interpolation), conditions ``f <= f0 + c1·a·g0`` and ``|dphi| <= c2·|g0|``
  with ``c1 = 1e-4``, ``c2 = 0.9``; step doubling while bracketing.
* :func:`backtracking`: Armijo backtracking from ``a0``, halving the step, with a caller's
  sufficient-decrease test (OWL-QN and Newton use it).

Both give up after ``max_evals`` evaluations; they return ``None`` when no point with a
sufficient decrease was found (the caller then reports a failed line search).
"""

from __future__ import annotations

import math

C1, C2 = 1e-4, 0.9


def _cubic(a0, f0, d0, a1, f1, d1):
    """The minimiser of the cubic through (a0, f0, d0), (a1, f1, d1), or None."""
    e1 = d0 + d1 - 3.0 * (f0 - f1) / (a0 - a1)
    rad = e1 * e1 - d0 * d1
    if not math.isfinite(rad) or rad < 0:
        return None
    e2 = math.copysign(math.sqrt(rad), a1 - a0)
    den = d1 - d0 + 2.0 * e2
    if den == 0 or not math.isfinite(den):
        return None
    return a1 - (a1 - a0) * (d1 + e2 - e1) / den


def _trial(lo, hi):
    """Next zoom trial: the cubic minimiser kept inside the middle 80% of the bracket, else its midpoint."""
    (a_lo, f_lo, d_lo), (a_hi, f_hi, d_hi) = lo, hi
    a = _cubic(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi) if math.isfinite(f_hi) else None
    left, right = min(a_lo, a_hi), max(a_lo, a_hi)
    margin = 0.1 * (right - left)
    if a is None or not (left + margin <= a <= right - margin):
        a = 0.5 * (a_lo + a_hi)
    return a


def strong_wolfe(phi, f0: float, g0: float, a1: float, max_evals: int = 20, a_max: float = 1e10):
    """``(a, f, payload, evals)`` at a strong-Wolfe point, or the best Armijo point when the budget
    runs out; ``(None, None, None, evals)`` if there is none (``g0`` must be < 0)."""
    prev = (0.0, f0, g0)
    best = None  # the lowest point with a sufficient decrease
    a, evals = a1, 0
    while evals < max_evals:
        f, d, pay = phi(a)
        evals += 1
        ok = math.isfinite(f) and math.isfinite(d)
        if ok and f <= f0 + C1 * a * g0 and (best is None or f < best[1]):
            best = (a, f, pay)
        if not ok or f > f0 + C1 * a * g0 or (evals > 1 and f >= prev[1]):
            return _zoom(phi, f0, g0, prev, (a, f, d), best, evals, max_evals)
        if abs(d) <= -C2 * g0:
            return a, f, pay, evals
        if d >= 0:
            return _zoom(phi, f0, g0, (a, f, d), prev, best, evals, max_evals)
        prev, a = (a, f, d), min(2.0 * a, a_max)
    return (*best, evals) if best else (None, None, None, evals)


def _zoom(phi, f0, g0, lo, hi, best, evals, max_evals):
    while evals < max_evals:
        a = _trial(lo, hi)
        f, d, pay = phi(a)
        evals += 1
        ok = math.isfinite(f) and math.isfinite(d)
        if ok and f <= f0 + C1 * a * g0 and (best is None or f < best[1]):
            best = (a, f, pay)
        if not ok or f > f0 + C1 * a * g0 or f >= lo[1]:
            hi = (a, f, d)
            continue
        if abs(d) <= -C2 * g0:
            return a, f, pay, evals
        if d * (hi[0] - lo[0]) >= 0:
            hi = lo
        lo = (a, f, d)
        if abs(hi[0] - lo[0]) <= 1e-16 * max(1.0, abs(lo[0])):
            break
    return (*best, evals) if best else (None, None, None, evals)


def backtracking(evaluate, sufficient, a0: float = 1.0, max_evals: int = 30):
    """Armijo backtracking: ``evaluate(a) -> (f, payload)``; accept the first ``a`` (halving from
    ``a0``) with ``sufficient(a, f, payload)``. Returns ``(a, f, payload, evals)`` or Nones."""
    a = a0
    for evals in range(1, max_evals + 1):
        f, pay = evaluate(a)
        if math.isfinite(f) and sufficient(a, f, pay):
            return a, f, pay, evals
        a *= 0.5
    return None, None, None, max_evals
