"""scaling.png: time split by phase, speedup against ideal, efficiency — measured beside projected."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.atomic import atomic_path
from ..metrics import PHASES

COLORS = {"read": "#8c6d31", "compute": "#3182bd", "reduce": "#e6550d", "update": "#31a354",
          "checkpoint": "#756bb1", "other": "#bdbdbd"}
ALG_STYLE = {"rabenseifner": ("#1f77b4", "-"), "ring": ("#d62728", "--")}
#: The README shows the figure WIDTH_IN inches wide at 100 px per inch (<img width=880>): every
#: text is FONT points there. DPI only adds pixels for zooming.
WIDTH_IN, HEIGHT_IN, FONT, DPI = 8.8, 8.0, 9, 150


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
    """Panel (a): time split by phase, means over the repeats (means add up, medians do not)."""
    def mean(p, key):
        return float(np.mean([float(r[key]) for r in by[p]]))

    ranks = list(by)
    x = np.arange(len(ranks))
    bottom = np.zeros(len(ranks))
    for name in (*PHASES, "other"):
        key = "other_s" if name == "other" else f"{name}_median_s"
        h = np.maximum(np.array([mean(p, key) for p in ranks]), 0.0)
        for i in range(len(ranks)):
            ax.bar(x[i], h[i], 0.6, bottom=bottom[i], color=COLORS[name], hatch="//" if ranks[i] in over else "",
                   edgecolor="white", linewidth=0.5, label=name if i == 0 else None)
        if name != "other":
            lo = np.array([mean(p, f"{name}_min_s") for p in ranks])
            hi = np.array([mean(p, f"{name}_max_s") for p in ranks])
            _phase_whiskers(ax, x, bottom, lo, hi, bottom + h)
        bottom += h
    pred = {p["ranks"]: p["predicted_s"]["rabenseifner"] for p in report["measured_points"]}
    ax.scatter(x, [pred[p] for p in ranks], marker="D", color="black", zorder=5, s=24, label="model (total)")
    ax.set_xticks(x, [f"{p}\n(oversub.)" if p in over else str(p) for p in ranks])
    ax.set_ylim(0, max(bottom.max(), max(pred.values())) * 1.6)  # headroom: the legend sits above the bars
    ax.set_xlabel("ranks")
    ax.set_ylabel("seconds per run")
    ax.set_title("(a) time by phase: median over ranks,\nwhiskers min–max over ranks", fontsize=FONT)
    ax.legend(fontsize=FONT, loc="upper center", ncol=3, handlelength=1.0, columnspacing=0.8, borderpad=0.3,
              labelspacing=0.25)


def _model_lines(ax, key: str, proj: list[dict], pmax: float) -> None:
    for alg, (color, ls) in ALG_STYLE.items():
        pts = sorted((r["ranks"], r[key]) for r in proj if r["algorithm"] == alg and r["ranks"] <= pmax)
        ax.plot(*zip(*pts), color=color, ls=ls, lw=1.5, label=f"model, {alg}")


def _measured(ax, key: str, by: dict, left_out: dict, over: set, small: bool = False) -> None:
    """The measured runs of ``key``: every repeat as a dot, the median as a circle."""
    for p, rs in by.items():
        vals = [float(r[key]) for r in rs]
        o = p in over
        ax.scatter([p] * len(vals), vals, s=10, color="gray", alpha=0.6, zorder=4)
        ax.scatter([p], [np.median(vals)], s=28 if small else 50, zorder=5, facecolor="none" if o else "black",
                   edgecolor="#d62728" if o else "black", linewidth=1.4)
    for p, rs in left_out.items():
        ax.scatter([p] * len(rs), [float(r[key]) for r in rs], s=20, marker="x", color="gray", zorder=4)
    if small:
        ax.scatter([], [], s=28, color="black", label="measured (median)")
        return
    ax.scatter([], [], s=50, color="black", label="measured: median, dots repeats")
    if left_out:
        ax.scatter([], [], s=20, marker="x", color="gray", label="contended run, left out")
    if over:
        ax.scatter([], [], s=50, facecolor="none", edgecolor="#d62728", linewidth=1.4,
                   label="oversubscribed, not checked")


def _markers(ax, report: dict, over: set, pmax: float, weak: bool) -> None:
    """The two vertical markers, each with its own label: this machine's cores, and where the chunks run out."""
    cores = max(report["cores"]) if report["cores"] else None
    if cores and cores < pmax:
        ax.axvline(cores, color="#d62728", ls=":", lw=1.2, label=f"{cores} cores here: more ranks oversubscribe")
    nc = report["n_chunks"]
    if not weak and nc < pmax:
        ax.axvline(nc, color="dimgray", ls=":", lw=1.2, label=f"{nc} chunks: no rank has more than one past here")


def _log2_x(ax, lo: float, hi: float) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_formatter(_plain())
    ax.set_xlabel("ranks")
    ax.grid(True, which="major", alpha=0.3)


def _plain():
    """Tick labels 1, 2, 4, ... rather than 2^0, 2^1, ..."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:g}")


def _plot_measured(ax, key: str, by: dict, left_out: dict, over: set, report: dict, weak: bool) -> None:
    """Panels (b) and (c): ``key`` at the measured rank counts, the model over the same range."""
    pmax = max([*by, *left_out]) * 1.3
    _model_lines(ax, key, report["projection"], pmax)
    _measured(ax, key, by, left_out, over)
    _markers(ax, report, over, pmax, weak)
    _log2_x(ax, 0.8, pmax)
    if key == "speedup":
        ideal = np.array([1, pmax])
        ax.plot(ideal, ideal, color="gray", ls="-.", lw=1, label="ideal")
        ax.set_ylabel("scaled speedup p·T(1)/T(p)" if weak else "speedup T(1)/T(p)")
        ax.set_title(f"(b) {'weak' if weak else 'strong'} scaling: speedup, measured", fontsize=FONT)
        ax.legend(fontsize=FONT, loc="upper left", borderpad=0.3, labelspacing=0.25)
    else:
        ax.axhline(1.0, color="gray", ls="-.", lw=1)
        ax.set_ylim(0, 1.2)
        ax.set_ylabel("scaled efficiency T(1)/T(p)" if weak else "parallel efficiency S/p")
        ax.set_title("(c) efficiency, measured", fontsize=FONT)
        ax.legend(fontsize=FONT, loc="lower left", borderpad=0.3, labelspacing=0.25)


def _plot_projection(ax, by: dict, left_out: dict, over: set, report: dict, weak: bool) -> None:
    """Panel (d): the model's speedup out to the projection's largest rank count, the markers labelled."""
    proj = report["projection"]
    pmax = max(r["ranks"] for r in proj)
    _model_lines(ax, "speedup", proj, pmax)
    _measured(ax, "speedup", by, {}, over, small=True)
    ax.plot([1, pmax], [1, pmax], color="gray", ls="-.", lw=1, label="ideal")
    _markers(ax, report, over, pmax * 1.5, weak)
    _log2_x(ax, 0.8, pmax * 1.5)
    ax.set_xticks([1, 8, 64, 512, 4096][:1 + int(np.log2(pmax) // 3)])
    ax.set_yscale("log", base=2)
    top = max(r["speedup"] for r in proj)
    ax.set_ylim(0.5, max(8.0, top * 8))
    ax.yaxis.set_major_formatter(_plain())
    ax.set_ylabel("scaled speedup" if weak else "speedup T(1)/T(p)")
    ax.set_title(f"(d) projection to {pmax} ranks (cost model)", fontsize=FONT)
    ax.legend(fontsize=FONT, loc="upper left", borderpad=0.3, labelspacing=0.25)


def _suptitle(study, report: dict) -> str:
    """The figure's title: the job, the fitted model and the prediction check."""
    import textwrap

    net, c, m = report["network"], report["check"], report["model"]
    job = Path(report["job"]).name
    lines = [
        f"{study.mode} scaling of {job}: {report['rows']:,} rows × {report['cols']} cols, {report['steps']} steps, "
        f"{report['reduction']} reduction",
        f"model: {m['per_row_s'] * 1e6:.3g} µs/row, fixed {m['fixed_s']:.2f} s, α = {net['alpha_s'] * 1e6:.3g} µs, "
        f"β = {net['beta_s_per_byte'] * 1e9:.3g} ns/B; error at ranks {c['ranks_checked']}: "
        f"max {c['max_abs_error']:.1%} (limit {c['limit']:.0%})"]
    note = _contention_note(report).strip()
    return "\n".join(lines + (textwrap.wrap(note, 105) if note else []))


def figure(study, rows: list[dict], report: dict):
    """The matplotlib figure: (a) time by phase, (b) speedup and (c) efficiency at the measured rank
    counts, (d) the projection; sized for the README's width (WIDTH_IN inches shown at 100 px per
    inch, so FONT-point text stays FONT points there)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = _by_ranks(rows)
    left_out = _by_ranks(rows, used=False)
    over = set(report["check"]["excluded_oversubscribed"])
    weak = study.mode == "weak"
    with plt.rc_context({"font.size": FONT, "axes.titlesize": FONT, "axes.labelsize": FONT,
                         "xtick.labelsize": FONT, "ytick.labelsize": FONT, "legend.fontsize": FONT}):
        fig, axes = plt.subplots(2, 2, figsize=(WIDTH_IN, HEIGHT_IN), layout="constrained")
        (ax_t, ax_s), (ax_e, ax_p) = axes
        _plot_phases(ax_t, by, over, report)
        _plot_measured(ax_s, "speedup", by, left_out, over, report, weak)
        _plot_measured(ax_e, "efficiency", by, left_out, over, report, weak)
        _plot_projection(ax_p, by, left_out, over, report, weak)
        fig.suptitle(_suptitle(study, report), fontsize=FONT)
        fig.canvas.draw()  # lay out inside the rc context, so its sizes hold
    return fig


def plot_study(path: Path, study, rows: list[dict], report: dict) -> Path:
    """Write :func:`figure` to ``path`` (scaling.png)."""
    import matplotlib.pyplot as plt

    fig = figure(study, rows, report)
    with atomic_path(path) as tmp:
        # the tmp name's suffix is not the image format: matplotlib is told it
        fig.savefig(tmp, dpi=DPI, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(path)
