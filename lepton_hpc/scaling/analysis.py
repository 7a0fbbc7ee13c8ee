"""From run summaries to results.csv, the fitted cost model and projection.csv/json.

``analyze(DIR)`` reads ``DIR/study.json`` and every ``DIR/runs/*/summary.json``; it
never launches training, only (when no α, β are given and none were measured
before) the Allreduce bench.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from ..data.atomic import atomic_path, write_json
from ..metrics import PHASES
from ..layout import n_chunks
from . import model as M
from .launch import CONTENDED, Study, contended, parse_run_dir
from ..errors import UserError

CHECK_LIMIT = 0.25

COLUMNS = (
    ["mode", "ranks", "repeat", "status", "oversubscribed", "cores", "nodes",
     "rows", "cols", "steps", "solver", "reduction", "wall_s", "launch_s", "load_1m", "cpu_share", "contended",
     "used"]
    + [f"{ph}_{st}_s" for ph in PHASES for st in ("min", "median", "max")]
    + ["other_s", "speedup", "scaled_efficiency", "efficiency", "karp_flatt", "samples_per_s",
       "bytes_reduced_per_step", "predicted_ring_s", "predicted_rabenseifner_s", "prediction_error_ring",
       "prediction_error_rabenseifner", "baseline_ranks", "run_dir",
       "git_sha", "lepton_hpc", "python", "numpy", "scipy", "h5py", "mpi4py", "mpi_library", "slurm_job_id"]
)


def _toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_runs(study: Study) -> list[dict]:
    """Every run directory of the study: launch info, summary (None if the run failed), chunk_rows."""
    runs = []
    root = Path(study.out) / "runs"
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        key = parse_run_dir(d.name)
        if key is None or not d.is_dir():
            continue
        launch = json.loads((d / "launch.json").read_text()) if (d / "launch.json").is_file() else {}
        summary = json.loads((d / "summary.json").read_text()) if (d / "summary.json").is_file() else None
        cfg = _toml(d / "config.toml")
        status = "ok" if summary is not None and summary.get("exit_code", 0) == 0 else \
            f"failed (exit {launch.get('returncode', '?')})"
        runs.append({"ranks": key[0], "repeat": key[1], "dir": d, "launch": launch, "summary": summary,
                     "status": status, "chunk_rows": cfg.get("data", {}).get("chunk_rows", 4096)})
    return runs


def network_params(out: Path, alpha: float | None, beta: float | None, network: str | None,
                   bench_argv: list[str], log=print) -> dict:
    """α, β: --alpha/--beta, else --network FILE, else DIR/network.json, else the Allreduce bench."""
    source, data = None, None
    if network:
        from .checks import read_network

        data = read_network(network)
        source = f"file {network}"
    elif alpha is None or beta is None:
        cached = out / "network.json"
        if cached.is_file():
            from .checks import read_network

            data = read_network(cached, label=f"{cached} (the network of an earlier analysis; delete it to "
                                              f"measure again)")
            source = data.get("source", f"file {cached}")
        else:
            from ..bench.allreduce import main as bench

            log(f"measuring alpha, beta: python -m lepton_hpc.bench allreduce {' '.join(bench_argv)}")
            data = bench(list(bench_argv))
            source = f"measured by python -m lepton_hpc.bench allreduce at {data['ranks']} ranks"
            write_json(out / "network.json", {**data, "source": source})
    a = alpha if alpha is not None else data["alpha_s"]
    b = beta if beta is not None else data["beta_s_per_byte"]
    if alpha is not None or beta is not None:
        given = ", ".join(f"{k} {v:g}" for k, v in (("--alpha", alpha), ("--beta", beta)) if v is not None)
        source = f"given ({given})" + (f"; rest {source}" if source else "")
    if not (math.isfinite(a) and math.isfinite(b) and a >= 0 and b >= 0):
        raise UserError(f"alpha and beta must be finite and >= 0, got {a!r} and {b!r}")
    return {"alpha_s": float(a), "beta_s_per_byte": float(b), "source": source,
            "bench": {k: data[k] for k in ("ranks", "algorithm", "fit", "mpi_library") if k in data}
            if data else None}


def _width(summary: dict, chunk_rows: int) -> tuple[int, str]:
    """Doubles per chunk partial and the reduction, recovered from bytes_reduced_per_step."""
    nbytes = int(summary.get("bytes_reduced_per_step") or 0)
    reduction = summary.get("reduction", "exact")
    if nbytes <= 0:  # no reduction of partials (e.g. solver gram): the stop flag, one double
        return 1, "fast"
    if reduction == "exact":
        layout = M.work_split(summary["data"]["rows"], chunk_rows, summary["world_size"])
        nodes = max(1, len(layout.covers()[0]))
        return max(1, nbytes // (8 * nodes)), "exact"
    return max(1, nbytes // 8), "fast"


def fit_point(run: dict) -> dict:
    s = run["summary"]
    ph = s["phases_s"]
    width, reduction = _width(s, run["chunk_rows"])
    return {"ranks": run["ranks"], "rows": s["data"]["rows"], "chunk_rows": run["chunk_rows"], "width": width,
            "reduction": reduction, "reductions": int(s["steps"]) + 2, "wall_s": s["wall_s"],
            "read_max": ph["read"]["max"], "compute_max": ph["compute"]["max"], "reduce_min": ph["reduce"]["min"]}


def median_points(points: list[dict]) -> list[dict]:
    """One point per rank count: its median run by wall time (the lower median for an even count).

    A whole run, not per-phase medians: on a noisy machine slow repeats are slow in
    every phase, and medians taken phase by phase would not add up to any real run.
    """
    by: dict[int, list[dict]] = {}
    for pt in points:
        by.setdefault(pt["ranks"], []).append(pt)
    return [sorted(pts, key=lambda x: x["wall_s"])[(len(pts) - 1) // 2] for _, pts in sorted(by.items())]


def _median_by_ranks(rows: list[dict], key: str) -> dict[int, float]:
    out: dict[int, list] = {}
    for r in rows:
        if r["status"] == "ok" and r["used"]:
            out.setdefault(r["ranks"], []).append(r[key])
    return {p: float(np.median(v)) for p, v in sorted(out.items())}


PROJECTION_COLUMNS = (
    "algorithm", "ranks", "rows", "rows_busiest_rank", "chunks_busiest_rank", "t_fixed_s", "t_rows_s",
    "t_reduce_local_s", "t_comm_s", "t_total_s", "speedup", "efficiency", "karp_flatt", "measured",
    "oversubscribed", "measured_wall_s", "prediction_error")


def _mark_runs(runs: list[dict], ok: list[dict], study: Study, cores: int | None, keep_contended: bool) -> None:
    """Set every run's cores, nodes, oversubscribed and contended, and every successful run's ``used``.

    Runs measured to have shared their cores with other processes do not count where the same rank
    count has undisturbed runs (the rule looks at CPU share only, never at the times).
    """
    for r in runs:
        la = r["launch"]
        c = cores or la.get("cores") or study.cores
        r["cores"], r["nodes"] = int(c), int(la.get("nodes") or 1)
        r["oversubscribed"] = r["ranks"] > r["cores"] * r["nodes"]
        share = la.get("cpu_share")
        r["contended"] = "" if share is None else contended(share, r["ranks"], r["cores"] * r["nodes"])
    for p in {r["ranks"] for r in ok}:
        same = [r for r in ok if r["ranks"] == p]
        clean = [r for r in same if r["contended"] is False]
        for r in same:
            r["used"] = keep_contended or not clean or r["contended"] is False


def _fit_model(ok: list[dict], used: list[dict], net: dict, log=print) -> tuple[M.CostModel, list[dict]]:
    """The cost model fitted on the used runs that are not oversubscribed, and its (median) points."""
    fit_runs = [r for r in used if not r["oversubscribed"]]
    if not fit_runs:
        log("warning: every successful run is oversubscribed; fitting the model on them anyway")
        fit_runs = used
    points = median_points([fit_point(r) for r in fit_runs])
    widths = {(p["width"], p["reduction"]) for p in points}
    steps = {r["summary"]["steps"] for r in ok}
    if len(steps) > 1:
        log(f"warning: the runs did different numbers of steps ({sorted(steps)}); times are not comparable "
            f"(keep train.tol=0)")
    cm = M.fit_cost_model(points, net["alpha_s"], net["beta_s_per_byte"])
    if len(widths) > 1:
        log(f"warning: runs reduce partials of different widths {sorted(widths)}; the model uses {cm.width}")
    return cm, points


def _measured_columns(r: dict, mode: str, t_base: float, base_p: int, cm: M.CostModel) -> dict:
    """The results.csv columns of a successful run: phases, speedups, predictions, provenance."""
    s, p = r["summary"], r["ranks"]
    wall, ph = s["wall_s"], s["phases_s"]
    cols = {f"{name}_{st}_s": ph.get(name, {}).get(st, 0.0) for name in PHASES for st in ("min", "median", "max")}
    if mode == "weak":
        sp = M.scaled_speedup(t_base, wall, p)
        cols["scaled_efficiency"] = t_base / wall
    else:
        sp = M.speedup(t_base, wall, base_p)
    prov = s.get("provenance", {})
    cols.update({
        "rows": s["data"]["rows"], "cols": s["data"]["cols"], "steps": s["steps"],
        "solver": s.get("solver", ""), "reduction": s.get("reduction", ""), "wall_s": wall,
        "other_s": wall - sum(ph.get(n, {}).get("median", 0.0) for n in PHASES),
        "speedup": sp, "efficiency": M.efficiency(sp, p), "karp_flatt": M.karp_flatt(sp, p),
        "samples_per_s": s["data"]["rows"] * s["steps"] / wall if wall > 0 else "",
        "bytes_reduced_per_step": s.get("bytes_reduced_per_step", ""), "baseline_ranks": base_p,
        **{k: prov.get(k, "") for k in ("git_sha", "lepton_hpc", "python", "numpy", "scipy", "h5py",
                                       "mpi4py", "mpi_library")},
        "slurm_job_id": (prov.get("slurm") or {}).get("job_id") or r["launch"].get("slurm_job_id", ""),
    })
    for alg in M.ALGORITHMS:
        pred = cm.predict(p, s["data"]["rows"], alg)["t_total_s"]
        cols[f"predicted_{alg}_s"] = pred
        cols[f"prediction_error_{alg}"] = M.prediction_error(pred, wall)
    return cols


def result_rows(runs: list[dict], used: list[dict], study: Study, cm: M.CostModel, out: Path) -> list[dict]:
    """One results.csv row per run, by ranks and repeat; speedups are against the fewest used ranks."""
    base_p = min(r["ranks"] for r in used)
    t_base = float(np.median([r["summary"]["wall_s"] for r in used if r["ranks"] == base_p]))
    rows = []
    for r in sorted(runs, key=lambda r: (r["ranks"], r["repeat"])):
        row = {k: "" for k in COLUMNS}
        row.update({"mode": study.mode, "ranks": r["ranks"], "repeat": r["repeat"], "status": r["status"],
                    "oversubscribed": r["oversubscribed"], "cores": r["cores"], "nodes": r["nodes"],
                    "run_dir": str(r["dir"].relative_to(out)), "contended": r["contended"],
                    "used": r.get("used", False),
                    **{k: _blank(r["launch"].get(k)) for k in ("launch_s", "load_1m", "cpu_share")}})
        if r["summary"] is not None and r["status"] == "ok":
            row.update(_measured_columns(r, study.mode, t_base, base_p, cm))
        rows.append(row)
    return rows


def _projection(cm: M.CostModel, study: Study, measured: list[int], over: set, wall_med: dict,
                project_to: int) -> list[dict]:
    """projection.csv's rows: the model at every projected rank count, beside the measured medians."""
    proj = M.project(cm, study.mode, study.base_rows, M.projection_ranks(measured, 16, project_to))
    for pr in proj:
        p = pr["ranks"]
        pr["measured"] = p in wall_med
        pr["oversubscribed"] = p in over
        pr["measured_wall_s"] = wall_med.get(p, "")
        pr["prediction_error"] = M.prediction_error(pr["t_total_s"], wall_med[p]) if p in wall_med else ""
    return proj


def _check(cm: M.CostModel, study: Study, measured: list[int], over: set, wall_med: dict) -> tuple[list, dict]:
    """The measured points with both algorithms' predictions, and the prediction check over those
    not oversubscribed."""
    points_out, checked, errs = [], [], []
    for p in measured:
        preds = {alg: cm.predict(p, study.rows_at(p), alg)["t_total_s"] for alg in M.ALGORITHMS}
        err = {alg: M.prediction_error(v, wall_med[p]) for alg, v in preds.items()}
        in_check = p not in over
        points_out.append({"ranks": p, "oversubscribed": p in over, "in_check": in_check,
                           "measured_wall_s_median": wall_med[p], "predicted_s": preds, "error": err})
        if in_check:
            checked.append(p)
            errs.extend(abs(e) for e in err.values())
    max_err = max(errs) if errs else math.nan
    return points_out, {
        "limit": CHECK_LIMIT, "max_abs_error": max_err, "pass": bool(errs) and max_err <= CHECK_LIMIT,
        "ranks_checked": checked, "excluded_oversubscribed": sorted(over),
        "note": "prediction error = predicted / measured median wall time - 1, both algorithms; rank "
                "counts above the usable cores are oversubscribed (ranks share cores), shown but "
                "excluded from the check and from the fit"}


def _per_row_s(points: list[dict]) -> dict[str, float]:
    """Measured read + compute seconds per row of the busiest rank, by rank count."""
    return {str(pt["ranks"]): (pt["read_max"] + pt["compute_max"])
            / max(1, M.busiest_rank(M.work_split(pt["rows"], pt["chunk_rows"], pt["ranks"]))[0])
            for pt in points}


def _report(study: Study, runs: list[dict], ok: list[dict], net: dict, cm: M.CostModel, points: list[dict],
            checked: tuple[list, dict], proj: list[dict], keep_contended: bool) -> dict:
    """projection.json's content; ``checked`` is :func:`_check`'s answer."""
    first = ok[0]["summary"]
    nc = n_chunks(study.base_rows, cm.chunk_rows)
    return {
        "mode": study.mode, "job": _short(study.job), "overrides": study.overrides, "rows": study.base_rows,
        "cols": first["data"]["cols"], "steps": first["steps"], "reduction": cm.reduction,
        "collective": "Allgatherv of tree nodes" if cm.reduction == "exact" else "Allreduce",
        "n_chunks": nc, "cores": sorted({r["cores"] for r in runs}),
        "contention": {**contention(runs), "runs_left_out": sum(not r["used"] for r in ok),
                       "keep_contended": keep_contended},
        "network": net, "model": cm.to_dict(),
        "per_row_s_by_ranks": _per_row_s(points),
        "formula": "T(p) = F + c*R(p) + m*(g*C(p) + t_red(p; alpha, beta, algorithm)); R, C = rows, chunks of the "
                   "busiest rank; m = steps + 2 reductions",
        "measured_points": checked[0],
        "check": checked[1],
        "projection": proj,
    }


def analyze(out, alpha: float | None = None, beta: float | None = None, network: str | None = None,
            cores: int | None = None, bench_argv=(), project_to: int = 4096, plot: bool = True,
            keep_contended: bool = False, log=print) -> dict:
    """Write results.csv, projection.csv, projection.json (and scaling.png); return projection.json's dict."""
    out = Path(out).resolve()
    study = Study.load(out)
    runs = load_runs(study)
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        raise UserError(f"no successful run in {out / 'runs'} (see the launch.log files there)")
    net = network_params(out, alpha, beta, network, list(bench_argv), log)
    _mark_runs(runs, ok, study, cores, keep_contended)
    used = [r for r in ok if r["used"]]
    cm, points = _fit_model(ok, used, net, log)

    rows = result_rows(runs, used, study, cm, out)
    write_csv(out / "results.csv", rows, COLUMNS)

    measured = sorted({r["ranks"] for r in used})
    over = {r["ranks"] for r in used if r["oversubscribed"]}
    wall_med = _median_by_ranks(rows, "wall_s")
    proj = _projection(cm, study, measured, over, wall_med, project_to)
    write_csv(out / "projection.csv", proj, PROJECTION_COLUMNS)

    checked = _check(cm, study, measured, over, wall_med)
    report = _report(study, runs, ok, net, cm, points, checked, proj, keep_contended)
    write_json(out / "projection.json", report, default=_json_default)
    if plot:
        from .plot import plot_study

        plot_study(out / "scaling.png", study, rows, report)
    log(text_summary(rows, report))
    return report


def contention(runs: list[dict]) -> dict:
    """How many runs shared their cores with other work (cpu_share below CONTENDED of the fair share)."""
    known = [r for r in runs if r["status"] == "ok" and r["contended"] != ""]
    shares = [r["launch"]["cpu_share"] for r in known if r["contended"]]
    return {"runs_known": len(known), "runs_contended": len(shares),
            "cpu_share_min": min(shares) if shares else None, "cpu_share_max": max(shares) if shares else None,
            "threshold": CONTENDED,
            "note": "cpu_share = CPU seconds of all ranks (and the launcher) / (ranks x launch seconds); MPI ranks "
                    "busy-poll, so an undisturbed run is near 1 (cores/ranks when oversubscribed); contended runs "
                    "shared their cores with other processes and are slower for reasons outside the job. Where a "
                    "rank count has undisturbed runs, its contended runs are left out of the medians, the speedup "
                    "baseline, the model fit and the check (column used = False); --keep-contended counts them"}


def _short(path: str) -> str:
    """A path relative to the working directory when it lies inside it (committable reports)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def _blank(v):
    return "" if v is None else v


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _fmt(v):
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:.6g}"
    return v


def write_csv(path: Path, rows: list[dict], columns) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k, "")) for k in columns})


def text_summary(rows: list[dict], report: dict) -> str:
    lines = [f"{'ranks':>5} {'wall_s':>8} {'speedup':>8} {'eff':>6} {'karp-flatt':>10} {'pred err':>8}  "
             f"(medians over repeats; error of the Rabenseifner model)"]
    err = {pt["ranks"]: pt["error"]["rabenseifner"] for pt in report["measured_points"]}
    by = {}
    for r in rows:
        if r["status"] == "ok" and r["used"]:
            by.setdefault(r["ranks"], []).append(r)
    for p, rs in sorted(by.items()):
        med = lambda k: float(np.median([x[k] for x in rs]))  # noqa: E731
        kf = med("karp_flatt") if p > 1 else math.nan
        note = "oversubscribed" if rs[0]["oversubscribed"] else ""
        lines.append(f"{p:>5} {med('wall_s'):>8.3f} {med('speedup'):>8.3f} {med('efficiency'):>6.3f} "
                     f"{'' if math.isnan(kf) else f'{kf:.4f}':>10} {err[p]:>+8.1%}  {note}")
    c = report["check"]
    net = report["network"]
    ct = report["contention"]
    if ct["runs_contended"]:
        lines.append(f"warning: {ct['runs_contended']} of {ct['runs_known']} runs shared their cores with other "
                     f"processes (their CPU share {ct['cpu_share_min']:.2f}-{ct['cpu_share_max']:.2f}): "
                     f"the machine was busy; {ct['runs_left_out']} left out where undisturbed runs of the same "
                     f"rank count exist (results.csv: contended, used)")
    lines.append(f"model: alpha {net['alpha_s'] * 1e6:.3g} us, beta {net['beta_s_per_byte'] * 1e9:.3g} ns/B "
                 f"({net['source']}); per row {report['model']['per_row_s'] * 1e9:.3g} ns, fixed "
                 f"{report['model']['fixed_s']:.3g} s")
    lines.append(f"prediction check at ranks {c['ranks_checked']}: max |error| {c['max_abs_error']:.1%} "
                 f"(limit {c['limit']:.0%}) -> {'PASS' if c['pass'] else 'FAIL'}"
                 + (f"; oversubscribed, not checked: {c['excluded_oversubscribed']}" if c['excluded_oversubscribed']
                    else ""))
    return "\n".join(lines)
