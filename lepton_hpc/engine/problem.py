"""The protocol between the step loop and a model family.

A model family (GLM, recommender, matmul) is a :class:`Problem`. The loop
(:mod:`lepton_hpc.engine.loop`) owns everything every family shares: the stop
flag, the eta floor, the finite check, tol/patience, the metrics window and
progress line, checkpoint cadence and the exit codes. A problem owns its data,
its parameters, its solver strategy and its optimizer.

Every method marked *collective* is called on every rank, in the same order.
"""

from __future__ import annotations

from ..checkpoint import Part, Snapshot


class Problem:
    """Base class: the defaults suit a first-order problem that steps with an optimizer.

    Parameters
    ----------
    ctx : lepton_hpc.engine.run.RunContext
        The run: ``ctx.cfg``, ``ctx.comm``, ``ctx.timer``, ``ctx.log``.
    """

    #: what a step processes, for the progress line ("samples", "ratings"); None: no rate shown
    work_unit: str | None = "samples"
    #: solved in :meth:`solve` without steps (a direct solver, the matmul job)
    direct: bool = False
    #: writes checkpoints (the matmul job does not)
    checkpoints: bool = True
    #: config sections this problem never reads: hidden from ``train --help`` and left out of
    #: config.toml (:func:`lepton_hpc.config.sections_for`)
    config_unused: tuple = ()
    #: mini-batch problems judge convergence per epoch of this many steps (None: full batch)
    steps_per_epoch: int | None = None

    def __init__(self, ctx):
        self.ctx = ctx
        self.cfg, self.comm, self.timer = ctx.cfg, ctx.comm, ctx.timer
        self.fingerprint = ""

    # -- set up ------------------------------------------------------------------
    def setup(self) -> None:
        """Collective: read and check the data, build the solver and optimizer."""
        raise NotImplementedError

    def ready(self, step: int) -> None:
        """After setup and any resume, before the first step (e.g. warn about the schedule)."""

    def solve(self) -> None:
        """Collective: the direct solve of a ``direct`` problem."""
        raise NotImplementedError

    # -- one step -----------------------------------------------------------------
    def next_eta(self) -> float | None:
        """The step size the next update will take (None when the solver has none, e.g. ALS)."""
        return None

    def gradient(self, step: int) -> tuple[float, float | None]:
        """Collective: ``(loss, |grad|)`` at the current parameters, identical on every rank.

        Nothing changes the parameters here, so a stop request seen during the
        pass leaves the state at ``step`` for the checkpoint.
        """
        raise NotImplementedError

    def apply_update(self, step: int, eta: float | None) -> None:
        """Collective where the solver needs it (ALS): move the parameters one step."""
        raise NotImplementedError

    def stationarity(self, grad_norm: float) -> float:
        """The measure the tol test compares with ``tol * |grad_0|`` (e.g. the L1 subgradient)."""
        return grad_norm

    def work_per_step(self) -> int:
        """Items processed per step, for the rate in the progress line."""
        return 0

    def log_metrics(self, step: int) -> dict:
        """Collective: extra figures for the progress line and metrics.jsonl at a log step."""
        return {}

    def eta_floor_hint(self) -> str:
        """What to change when the step size fell below train.eta_floor."""
        return "the schedule has no step left (raise optimizer.learning_rate or lower optimizer.alpha)"

    def diverged_hint(self) -> str:
        return "lower optimizer.learning_rate"

    # -- state -----------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Part], dict]:
        """The parts and the JSON-able attributes of a checkpoint (only if ``checkpoints``)."""
        raise NotImplementedError

    def load_state(self, snap: Snapshot) -> None:
        """Collective: restore from a verified snapshot; UserError (agreed) when it does not fit."""
        raise NotImplementedError

    # -- the end ---------------------------------------------------------------------
    def final(self) -> dict:
        """Collective: final figures (losses, metrics), the same on every rank."""
        return {}

    def rank_figures(self) -> dict:
        """This rank's figures (bytes, rows) for the per-rank spreads of the summary."""
        return {}

    def summary(self, final: dict, every: list[dict]) -> dict:
        """Rank 0: the problem's part of summary.json from :meth:`final` and every rank's figures."""
        return dict(final)

    def not_converged_hint(self, stop_reason: str) -> str:
        """What to change when the run stopped short of train.tol (eta floor, step budget)."""
        if stop_reason == "eta_floor":
            return ("the step size decayed to train.eta_floor first: lower optimizer.alpha, raise "
                    "optimizer.learning_rate, or set both to \"auto\"")
        return "raise train.steps, or loosen train.tol"

    def final_line(self, summary: dict) -> list[str]:
        """Pieces of the last printed line (after "done: N steps (reason)")."""
        return []

    def close(self) -> None:
        """Release files (every rank)."""
