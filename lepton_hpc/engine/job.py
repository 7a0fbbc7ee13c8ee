"""A whole job: build the run and its problem, resume, run the loop, summarise. Collective."""

from __future__ import annotations

import time

from .. import comm as C
from ..metrics import peak_rss_bytes, provenance, spread
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
            "steps": loop.s.step}
    tail = {"world_size": ctx.comm.size, "reduction": cfg.comm.reduction,
            "wall_s": time.perf_counter() - ctx.t_start,
            "phases_s": {p: spread([e["phases"].get(p, 0.0) for e in every]) for p in ctx.timer.total},
            "peak_rss_bytes": {"per_rank": rss, **spread(rss)},
            "provenance": provenance(C.library_version(), ctx.comm.size)}
    return {**head, **problem.summary(final, every), **tail}


def final_line(summary: dict, code: int, out) -> str:
    parts = [f"{summary['steps']} steps ({summary.get('stop_reason')})"]
    parts += [f"{label} {summary[k]:.6e}" for k, label in (("final_loss", "loss"),
              ("rel_error_to_exact", "relative error to the exact solution")) if summary.get(k) is not None]
    parts += [f"{summary.get('wall_s', 0.0):.1f} s", f"run directory {out}"]
    return f"{'done' if code == 0 else 'stopped'}: " + ", ".join(parts)

