"""A whole job: build the run and its problem, resume, run the loop, summarise. Collective."""

from __future__ import annotations

import time

from .. import comm as C
from ..metrics import peak_rss_bytes, provenance, spread
from ..models import fused
from .loop import Loop
from .registry import problem_class
from .run import RunContext


def run_job(cfg, comm, out, resume: str | None = None, ctx: RunContext | None = None,
            restore_signals: bool = True) -> tuple[int, dict | None]:
    """Run one job to its end; returns (exit code, summary dict on rank 0 / None elsewhere).

    ``ctx``: a context built beforehand (its signal handlers are already in place).
    ``restore_signals``: see :class:`RunContext`.
    """
    cls = C.agree(comm, problem_class, cfg.model.kind)  # imported before the clock starts
    ctx = ctx or RunContext(cfg, comm, out, resume, restore_signals)
    ctx.kernel_calls0 = fused.calls
    problem = None
    try:
        problem = C.agree(comm, cls, ctx)
        C.agree(comm, ctx.check_world)
        C.on_root(comm, ctx.claim_out_dir)
        problem.setup()
        ctx.fingerprint = problem.fingerprint
        loop = Loop(ctx, problem)
        if resume is not None:
            _resume(ctx, problem, loop)
        problem.ready(loop.s.step)
        C.on_root(comm, ctx.prepare_out_dir, checkpoints=problem.checkpoints)
        code = loop.run()
        return code, summarize(ctx, problem, loop, code)
    except C.JobError:  # raised on every rank together: a start that failed is undone before any returns
        ctx.release_out_dir()
        C.barrier(comm)
        raise
    finally:
        if problem is not None:
            problem.close()
        ctx.close()


def _resume(ctx, problem, loop) -> None:
    if not problem.checkpoints:
        ctx.log(f"note: --resume is ignored: model.kind={ctx.cfg.model.kind} takes no checkpoints and runs "
                f"from the start")
        return
    snap = ctx.find_snapshot()
    if snap is None:
        return
    problem.load_state(snap)
    loop.restore(snap.attrs["loop"])
    ctx.resumed = True
    ctx.log(f"resumed from step {snap.step} (written by {snap.attrs.get('world_size')} ranks)")


def summarize(ctx, problem, loop, code: int) -> dict | None:
    """summary.json: the problem's figures plus the run's (phases, memory, provenance). Collective."""
    final = problem.final()
    mine = {"phases": ctx.timer.snapshot(), "peak_rss_bytes": peak_rss_bytes(), **problem.rank_figures()}
    every = C.gather(ctx.comm, mine)
    if ctx.timer.events is not None:
        ctx.timer.write_trace(ctx.out)
    if ctx.rank != 0:
        return None
    cfg = ctx.cfg
    rss = [e["peak_rss_bytes"] for e in every]
    head = {"job": cfg.name, "model": cfg.model.kind, "exit_code": code, "stop_reason": loop.stop_reason,
            "converged": loop.converged, "steps": loop.s.step, "steps_budget": cfg.train.steps,
            "tol": cfg.train.tol}
    if loop.converged is False:
        head["diverged"] = loop.diverged
        head["loss_first_last"] = [loop.first_loss, loop.last_loss]
        head["not_converged_hint"] = (problem.diverged_hint() if loop.diverged
                                      else problem.not_converged_hint(loop.stop_reason))
        head["grad_norm_target"] = cfg.train.tol * loop.s.g0_norm if loop.s.g0_norm else None
    tail = {"world_size": ctx.comm.size, "reduction": cfg.comm.reduction,
            "wall_s": time.perf_counter() - ctx.t_start,
            "phases_s": {p: spread([e["phases"].get(p, 0.0) for e in every]) for p in ctx.timer.total},
            "peak_rss_bytes": {"per_rank": rss, **spread(rss)},
            "gradient_kernel": fused.ran(getattr(ctx, "kernel_calls0", 0)),
            "provenance": provenance(C.library_version(), ctx.comm.size)}
    return {**head, **problem.summary(final, every), **tail}


def held_out(summary: dict) -> str | None:
    """The held-out metric for the final line: accuracy, R² or RMSE (None without a test split)."""
    test = (summary.get("metrics") or {}).get("test") or {}
    if test.get("accuracy") is not None:
        return f"test accuracy {test['accuracy']:.4f}"
    if test.get("r2") is not None:
        return f"test R² {test['r2']:.4f}"
    if summary.get("test_rmse") is not None:
        return f"test RMSE {summary['test_rmse']:.4f}"
    return None


def final_line(summary: dict, code: int, out) -> str:
    """The last line a run prints: its verdict, the figures that matter, where the run lives."""
    parts = [f"{summary['steps']} steps ({summary.get('stop_reason')})"]
    metric = held_out(summary)
    parts += [metric] if metric else []
    parts += [f"{label} {summary[k]:.6e}" for k, label in (("final_loss", "loss"),
              ("rel_error_to_exact", "relative error to the exact solution")) if summary.get(k) is not None]
    parts += [f"{summary.get('wall_s', 0.0):.1f} s", f"run directory {out}"]
    if code in (0, 3) and summary.get("converged") is False:
        grad, target = summary.get("final_grad_norm"), summary.get("grad_norm_target")
        why = f"|grad| {grad:.3e} > train.tol·|grad_0| = {target:.3e}; " if grad is not None and target else ""
        if summary.get("diverged"):
            first, last = summary["loss_first_last"]
            why = f"the loss grew from {first:.4g} to {last:.4g}; "
        verdict = "NOT CONVERGED (DIVERGED)" if summary.get("diverged") else "NOT CONVERGED"
        return (f"{verdict}: {', '.join(parts[:1])} stopped short of train.tol={summary.get('tol', 0):g}; "
                f"{why}{summary.get('not_converged_hint', '')}; " + ", ".join(parts[1:]))
    return f"{'done' if code == 0 else 'stopped'}: " + ", ".join(parts)
