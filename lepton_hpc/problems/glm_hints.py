"""What a GLM run that stopped short of train.tol (or diverged) should change: the sentences of
``not_converged_hint``, ``diverged_hint`` and the schedule warning, from the measured curvature.

The step-size bound is the largest ``eta_0`` that does not grow any error mode of a quadratic with
curvature up to ``L``: ``2 / L`` for a plain gradient step (the Lepton rule, inverse_time, constant)
and ``2 (1 + momentum) / L`` for the heavy ball. Optimizers that scale the step per coordinate
(adagrad, adam, plug-ins) have no such bound, and none is quoted for them.
"""

from __future__ import annotations

import numpy as np

#: the rules whose step is ``eta_t * g`` (heavy ball: ``eta_t * v``): the curvature bounds them
PLAIN_STEP = ("adaptive", "inverse_time", "constant", "momentum")
#: past this many steps (or at a smallest curvature this close to 0) no step count is worth quoting
STEPS_ABSURD = 10 ** 9


def stable_bound(opt, lam_max: float | None) -> float | None:
    """The largest stable ``eta_0`` on curvature ``lam_max`` (None: the rule has no such bound)."""
    if opt.name not in PLAIN_STEP or not lam_max or lam_max <= 0:
        return None
    return 2.0 * (1.0 + (opt.momentum if opt.name == "momentum" else 0.0)) / lam_max


def rate_tip(opt, lam_max: float | None, diverged: bool) -> str:
    """How to change a hand-set optimizer.learning_rate: lower past the bound (or after a divergence),
    raise below it; for per-coordinate rules no bound."""
    lr, bound = opt.learning_rate, stable_bound(opt, lam_max)
    if bound is None:
        if diverged:
            return f"lower optimizer.learning_rate (now {lr:.3g})"
        return (f"tune optimizer.learning_rate (now {lr:.3g}; {opt.name} scales its steps per coordinate, "
                f"so no curvature bound applies) or set it to \"auto\"")
    if lr > bound:
        return (f"lower optimizer.learning_rate (now {lr:.3g}, above the stable bound {bound:.3g}) "
                f"or set it to \"auto\"")
    if diverged:
        return f"lower optimizer.learning_rate (now {lr:.3g}, stable up to {bound:.3g}) or set it to \"auto\""
    return f"raise optimizer.learning_rate (now {lr:.3g}; stable up to {bound:.3g}) or set it to \"auto\""


def steps_tip(opt, curvature, tol: float, rows: int, cols: int) -> str:
    """"add train.steps (about N at eta_0 = ...)" from ln(1/tol) / (eta_0 mu); a smallest curvature
    of about 0 (a singular XᵀX) says so instead of quoting an absurd count. ``rows``: the training
    rows (after the held-out split), ``cols``: the features."""
    mu, lam_max = curvature or (None, None)
    eta0 = opt.learning_rate
    if mu is None or tol <= 0 or not eta0 > 0 or opt.name not in PLAIN_STEP:
        return "add train.steps"
    n = np.log(1.0 / tol) / (eta0 * mu) if mu > 0 else np.inf
    if not n <= STEPS_ABSURD and mu > 1e-12 * (lam_max or 0.0):  # a healthy problem, a tiny step
        return (f"more than {STEPS_ABSURD:,} train.steps at eta_0 = {eta0:.3g} would be needed on the smallest "
                f"curvature {mu:.3g}: raise optimizer.learning_rate (or leave it \"auto\")")
    if not (mu > 1e-12 * (lam_max or 0.0)):
        return (f"the smallest curvature is about 0 (mu = {mu:.3g}, L = {lam_max:.3g}: XᵀX of the training "
                f"rows is singular or nearly so, e.g. fewer rows than the {cols} columns; about {rows:,} "
                f"training rows), so no number of train.steps reaches train.tol: set model.penalty=\"l2\" with "
                f"model.reg > 0, or train on more rows")
    return f"add train.steps (about {int(np.ceil(n)):,} at eta_0 = {eta0:.3g})"
