"""scaling.png: time split by phase, speedup against ideal, efficiency — measured beside projected."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.atomic import atomic_path
from ..metrics import PHASES

COLORS = {"read": "#8c6d31", "compute": "#3182bd", "reduce": "#e6550d", "update": "#31a354",
          "checkpoint": "#756bb1", "other": "#bdbdbd"}
ALG_STYLE = {"rabenseifner": ("#1f77b4", "-"), "ring": ("#d62728", "--")}


def _by_ranks(rows: list[dict], used: bool = True) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok" and bool(r["used"]) == used:
            out.setdefault(r["ranks"], []).append(r)
    return dict(sorted(out.items()))


def _contention_note(report: dict) -> str:
    ct = report.get("contention") or {}
    if not ct.get("runs_contended"):
        return ""
    return (f"\nshared machine: {ct['runs_contended']} of {ct['runs_known']} runs got < {ct['threshold']:.0%} of "
            f"their cores' CPU time (other processes beside them); {ct['runs_left_out']} of them left out (×) "
            f"where undisturbed runs of the same rank count exist")


def _phase_whiskers(ax, x, bottom, lo, hi, total) -> None:
    """Imbalance of one phase: its min..max over ranks, drawn inside the segment where it shows."""
    for i in range(len(x)):
        if hi[i] - lo[i] > 0.01 * max(total.max(), 1e-12):
            ax.plot([x[i] + 0.22] * 2, [bottom[i] + lo[i], bottom[i] + hi[i]], color="black", lw=1.2)
            ax.plot([x[i] + 0.19, x[i] + 0.25], [bottom[i] + hi[i]] * 2, color="black", lw=1.2)
            ax.plot([x[i] + 0.19, x[i] + 0.25], [bottom[i] + lo[i]] * 2, color="black", lw=1.2)


def _plot_phases(ax, by: dict[int, list[dict]], over: set, report: dict) -> None:
    """Panel 1: time split by phase, means over the repeats (means add up, medians do not)."""
    def mean(p, key):
        return float(np.mean([float(r[key]) for r in by[p]]))

    ranks = list(by)
    x = np.arange(len(ranks))
    bottom = np.zeros(len(ranks))
    for name in (*PHASES, "other"):
        key = "other_s" if name == "other" else f"{name}_median_s"
        h = np.array([mean(p, key) for p in ranks])
        h = np.maximum(h, 0.0)
        hatch = ["//" if p in over else "" for p in ranks]
        for i in range(len(ranks)):
            ax.bar(x[i], h[i], 0.6, bottom=bottom[i], color=COLORS[name], hatch=hatch[i], edgecolor="white",
                   linewidth=0.5, label=name if i == 0 else None)
        if name != "other":
            lo = np.array([mean(p, f"{name}_min_s") for p in ranks])
            hi = np.array([mean(p, f"{name}_max_s") for p in ranks])
            _phase_whiskers(ax, x, bottom, lo, hi, bottom + h)
        bottom += h
    pred = {p["ranks"]: p["predicted_s"]["rabenseifner"] for p in report["measured_points"]}
    ax.scatter(x, [pred[p] for p in ranks], marker="D", color="black", zorder=5, s=28,
               label="model (total)")
    ax.set_xticks(x, [f"{p}\n(oversub.)" if p in over else str(p) for p in ranks])
    ax.set_xlabel("ranks")
    ax.set_ylabel("seconds per run (mean over repeats)")
    ax.set_title("Time by phase (median over ranks;\nwhiskers: min–max over ranks)", fontsize=10)
    ax.legend(fontsize=8, loc="upper right", ncol=2)


def _plot_measured_and_model(ax, key: str, by: dict, left_out: dict, over: set, report: dict, weak: bool) -> None:
    """Panels 2 and 3: ``key`` (speedup or efficiency) of the model per algorithm and of the measured runs."""
    proj = report["projection"]
    pmax = max(r["ranks"] for r in proj)
    for alg, (color, ls) in ALG_STYLE.items():
        pts = sorted((r["ranks"], r[key]) for r in proj if r["algorithm"] == alg)
        ax.plot(*zip(*pts), color=color, ls=ls, lw=1.6, label=f"model ({alg})")
    for p, rs in by.items():
        vals = [float(r[key]) for r in rs]
        o = p in over
        ax.scatter([p] * len(vals), vals, s=12, color="gray", alpha=0.6, zorder=4)
        ax.scatter([p], [np.median(vals)], s=60, zorder=5, facecolor="none" if o else "black",
                   edgecolor="#d62728" if o else "black", linewidth=1.5)
    for p, rs in left_out.items():
        ax.scatter([p] * len(rs), [float(r[key]) for r in rs], s=22, marker="x", color="gray", zorder=4)
    ax.scatter([], [], s=60, color="black", label="measured (median; dots: repeats)")
    if left_out:
        ax.scatter([], [], s=22, marker="x", color="gray", label="contended run (left out)")
    if over:
        ax.scatter([], [], s=60, facecolor="none", edgecolor="#d62728", linewidth=1.5,
                   label="measured, oversubscribed (not checked)")
    cores = max(report["cores"]) if report["cores"] else None
    if cores and over:
        ax.axvline(cores, color="#d62728", ls=":", lw=1)
    nc = report["n_chunks"]
    if not weak and nc < pmax:
        ax.axvline(nc, color="gray", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlim(0.8, pmax * 1.5)
    ax.set_xlabel("ranks" + (f"   (red dotted: this machine's {cores} cores)" if cores and over else ""))
    ax.grid(True, which="major", alpha=0.3)


def _finish_speedup(ax, by: dict, left_out: dict, report: dict, weak: bool) -> None:
    """Panel 2's ideal line, log scale, limits, labels and the note where chunks run out."""
    proj = report["projection"]
    pmax = max(r["ranks"] for r in proj)
    ideal = np.array([1, pmax])
    ax.plot(ideal, ideal, color="gray", ls="-.", lw=1, label="ideal")
    ax.set_yscale("log", base=2)
    top = max([r["speedup"] for r in proj] + [float(r["speedup"]) for rs in by.values() for r in rs])
    low = min([r["speedup"] for r in proj] + [float(r["speedup"]) for rs in (*by.values(), *left_out.values())
                                              for r in rs])
    ax.set_ylim(min(0.5, low / 1.5), min(pmax * 1.5, max(8.0, top * 6)))  # the ideal line leaves at the top
    ax.set_ylabel("scaled speedup p·T(1)/T(p)" if weak else "speedup T(1)/T(p)")
    ax.set_title(("Weak" if weak else "Strong") + " scaling: speedup vs ideal", fontsize=10)
    if not weak and report["n_chunks"] < pmax:
        ax.text(report["n_chunks"] * 0.9, 0.02, f"{report['n_chunks']} chunks: the busiest rank\nkeeps one "
                f"chunk past here", fontsize=7, ha="right", va="bottom", color="dimgray",
                transform=ax.get_xaxis_transform())
    ax.legend(fontsize=8, loc="upper left")


def _finish_efficiency(ax, weak: bool) -> None:
    ax.axhline(1.0, color="gray", ls="-.", lw=1)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("scaled efficiency T(1)/T(p)" if weak else "parallel efficiency S/p")
    ax.set_title("Efficiency", fontsize=10)
    ax.legend(fontsize=8, loc="center right")


def _suptitle(study, report: dict) -> str:
    """The figure's title: the job, the fitted model and the prediction check."""
    net, c, m = report["network"], report["check"], report["model"]
    job = Path(report["job"]).name
    return (
        f"{study.mode} scaling of {job}: {report['rows']:,} rows × {report['cols']} cols, {report['steps']} steps, "
        f"{report['reduction']} reduction ({report['collective']})\n"
        f"model: {m['per_row_s'] * 1e9:.3g} ns/row, fixed {m['fixed_s']:.2f} s, α = {net['alpha_s'] * 1e6:.3g} µs, "
        f"β = {net['beta_s_per_byte'] * 1e9:.3g} ns/B; prediction error at ranks {c['ranks_checked']}: "
        f"max {c['max_abs_error']:.1%} (limit {c['limit']:.0%})" + _contention_note(report))


def plot_study(path: Path, study, rows: list[dict], report: dict) -> Path:
    """Write scaling.png to ``path``: time by phase, speedup and efficiency, measured beside the model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = _by_ranks(rows)
    left_out = _by_ranks(rows, used=False)
    over = set(report["check"]["excluded_oversubscribed"])
    weak = study.mode == "weak"
    fig, (ax_t, ax_s, ax_e) = plt.subplots(1, 3, figsize=(17, 5.8), layout="constrained",
                                           gridspec_kw={"width_ratios": [1, 1.15, 1.15]})
    _plot_phases(ax_t, by, over, report)
    for ax, key in ((ax_s, "speedup"), (ax_e, "efficiency")):
        _plot_measured_and_model(ax, key, by, left_out, over, report, weak)
    _finish_speedup(ax_s, by, left_out, report, weak)
    _finish_efficiency(ax_e, weak)
    fig.suptitle(_suptitle(study, report), fontsize=10)
    with atomic_path(path) as tmp:
        # the tmp name's suffix is not the image format: matplotlib is told it
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(path)
