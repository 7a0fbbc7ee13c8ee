"""analyze() on a synthetic study directory (no MPI): results.csv, projection, check, plot; bench fit."""

import csv
import json
import math

import numpy as np
import pytest

from lepton_hpc.bench.allreduce import analyse, sizes
from lepton_hpc.layout import block_range, dyadic_cover, n_chunks
from lepton_hpc.scaling import model as M
from lepton_hpc.scaling.analysis import COLUMNS, analyze
from lepton_hpc.scaling.launch import Study, run_dir

ROWS, COLS, STEPS, CHUNK, WIDTH = 400_000, 8, 20, 4096, 11
ALPHA, BETA = 2e-6, 5e-10
TRUE = M.CostModel(fixed_s=0.3, per_row_s=1e-6, per_chunk_reduce_s=2e-6, reductions=STEPS + 2, width=WIDTH,
                   chunk_rows=CHUNK, reduction="exact", alpha_s=ALPHA, beta_s_per_byte=BETA)


def fake_summary(p: int, rows: int, slow: float = 1.0, jitter: float = 1.0) -> dict:
    pr = TRUE.predict(p, rows, "rabenseifner")
    t_rows = pr["t_rows_s"] * jitter
    reduce_min = pr["t_reduce_local_s"] + pr["t_comm_s"]
    wall = (TRUE.fixed_s + t_rows + reduce_min) * slow
    nc = n_chunks(rows, CHUNK)
    cover0 = len(dyadic_cover(*block_range(nc, p, 0)))
    spread = lambda v, imb=0.0: {"min": v * (1 - imb), "median": v, "max": v * (1 + imb)}  # noqa: E731
    return {
        "exit_code": 0, "steps": STEPS, "solver": "gd", "reduction": "exact", "world_size": p,
        "data": {"rows": rows, "cols": COLS}, "wall_s": wall, "bytes_reduced_per_step": cover0 * WIDTH * 8,
        "phases_s": {"read": spread(0.4 * t_rows * slow), "compute": spread(0.6 * t_rows * slow),
                     "reduce": spread(reduce_min * slow, 0.5 if p > 1 else 0.0), "update": spread(1e-3),
                     "checkpoint": spread(0.05)},
        "provenance": {"git_sha": "abc123", "lepton_hpc": "0.1.0", "python": "3.11", "numpy": "2",
                       "scipy": "1", "h5py": "3", "mpi4py": "4", "mpi_library": "MPICH Version: 5",
                       "slurm": {"job_id": "4242" if p == 2 else None}},
    }


def make_study(tmp_path, mode="strong", ranks=(1, 2, 4), repeats=2, cores=2, fail=None, busy=None):
    out = tmp_path / "study"
    st = Study(mode=mode, job=str(tmp_path / "job.toml"), overrides=["train.tol=0"], ranks=list(ranks),
               repeats=repeats, launcher="mpiexec", out=str(out), base_rows=ROWS, cores=cores)
    st.save()
    for p in ranks:
        for r in range(repeats):
            d = run_dir(out, p, r)
            d.mkdir(parents=True)
            (d / "config.toml").write_text(f"[data]\nchunk_rows = {CHUNK}\n")
            share = (0.4 if busy == (p, r) else 0.97) * min(1.0, cores / p)
            (d / "launch.json").write_text(json.dumps({"returncode": 0, "launch_s": 1.5, "cores": cores,
                                                       "nodes": 1, "cpu_share": share, "load_1m": 1.0}))
            if fail == (p, r):
                continue
            rows = ROWS * p if mode == "weak" else ROWS
            slow = 3.0 if p > cores else 1.0  # oversubscribed ranks share cores
            slow *= 2.5 if busy == (p, r) else 1.0  # another process took half the CPU time
            jitter = 1.0 + 0.02 * (r - 0.5)
            (d / "summary.json").write_text(json.dumps(fake_summary(p, rows, slow, jitter)))
    return out


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_strong_study_results_projection_and_check(tmp_path):
    out = make_study(tmp_path)
    report = analyze(out, alpha=ALPHA, beta=BETA, plot=False, log=lambda *_: None)
    rows = read_csv(out / "results.csv")
    assert list(rows[0]) == COLUMNS and len(rows) == 6
    by = {(int(r["ranks"]), int(r["repeat"])): r for r in rows}
    t1 = np.median([float(by[(1, r)]["wall_s"]) for r in range(2)])
    r2 = by[(2, 0)]
    s = t1 / float(r2["wall_s"])
    assert float(r2["speedup"]) == pytest.approx(s, rel=1e-5)
    assert float(r2["efficiency"]) == pytest.approx(s / 2, rel=1e-5)
    assert float(r2["karp_flatt"]) == pytest.approx((1 / s - 1 / 2) / (1 - 1 / 2), rel=1e-4)
    assert by[(1, 0)]["karp_flatt"] == ""
    assert float(r2["samples_per_s"]) == pytest.approx(ROWS * STEPS / float(r2["wall_s"]), rel=1e-5)
    assert r2["slurm_job_id"] == "4242" and r2["git_sha"] == "abc123" and r2["mpi_library"].startswith("MPICH")
    assert int(r2["bytes_reduced_per_step"]) > 0
    for ph in ("read", "compute", "reduce", "update", "checkpoint"):
        assert float(r2[f"{ph}_min_s"]) <= float(r2[f"{ph}_median_s"]) <= float(r2[f"{ph}_max_s"])
    assert by[(4, 0)]["oversubscribed"] == "True" and by[(2, 0)]["oversubscribed"] == "False"

    # the fit recovers the model the data came from; 4 ranks (oversubscribed) is excluded
    m = report["model"]
    assert m["fitted_on"] == [1, 2] and m["width"] == WIDTH and m["reduction"] == "exact"
    assert m["per_row_s"] == pytest.approx(TRUE.per_row_s, rel=0.02)
    c = report["check"]
    assert c["pass"] and c["ranks_checked"] == [1, 2] and c["excluded_oversubscribed"] == [4]
    assert c["max_abs_error"] < 0.02
    four = [p for p in report["measured_points"] if p["ranks"] == 4][0]
    assert not four["in_check"] and four["error"]["ring"] < -0.5  # 3x slower than the model: shown, not checked
    for alg in M.ALGORITHMS:
        assert abs(float(r2[f"prediction_error_{alg}"])) < 0.02

    proj = read_csv(out / "projection.csv")
    ranks = sorted({int(r["ranks"]) for r in proj})
    assert {16, 4096, 1, 2, 4} <= set(ranks) and {r["algorithm"] for r in proj} == set(M.ALGORITHMS)
    assert all(r["measured"] == "True" for r in proj if int(r["ranks"]) in (1, 2, 4))
    assert json.loads((out / "projection.json").read_text())["network"]["source"].startswith("given")


def test_weak_study_and_failed_run(tmp_path):
    out = make_study(tmp_path, mode="weak", ranks=(1, 2), repeats=2, fail=(2, 1))
    report = analyze(out, alpha=ALPHA, beta=BETA, plot=False, log=lambda *_: None)
    rows = read_csv(out / "results.csv")
    by = {(int(r["ranks"]), int(r["repeat"])): r for r in rows}
    assert by[(2, 1)]["status"].startswith("failed") and by[(2, 1)]["wall_s"] == ""
    r2 = by[(2, 0)]
    assert int(r2["rows"]) == 2 * ROWS
    eff = float(r2["scaled_efficiency"])
    assert float(r2["efficiency"]) == pytest.approx(eff, rel=1e-5)
    assert float(r2["speedup"]) == pytest.approx(2 * eff, rel=1e-5)
    assert report["check"]["pass"]
    weak = [r for r in report["projection"] if r["algorithm"] == "rabenseifner"]
    assert [r["rows"] for r in weak] == [ROWS * r["ranks"] for r in weak]


def test_network_from_file_and_cache(tmp_path):
    out = make_study(tmp_path, ranks=(1, 2), repeats=1)
    net = tmp_path / "net.json"
    net.write_text(json.dumps({"alpha_s": 1e-5, "beta_s_per_byte": 1e-9, "ranks": 2}))
    report = analyze(out, network=str(net), plot=False, log=lambda *_: None)
    assert report["network"]["alpha_s"] == 1e-5 and "net.json" in report["network"]["source"]
    report = analyze(out, network=str(net), beta=2e-9, plot=False, log=lambda *_: None)
    assert report["network"]["beta_s_per_byte"] == 2e-9 and report["network"]["alpha_s"] == 1e-5
    (out / "network.json").write_text(json.dumps({"alpha_s": 3e-6, "beta_s_per_byte": 4e-10, "source": "cached"}))
    report = analyze(out, plot=False, log=lambda *_: None)  # no bench: the study's network.json
    assert report["network"]["alpha_s"] == 3e-6 and report["network"]["source"] == "cached"


def test_analyze_refuses_a_directory_without_a_study(tmp_path):
    with pytest.raises(ValueError, match="study.json"):
        analyze(tmp_path, alpha=1e-6, beta=1e-9, plot=False)


def test_bench_sizes_and_fit_of_a_synthetic_table():
    assert sizes(8, 64) == [8, 16, 32, 64]
    assert sizes(100, 8 << 20)[0] == 128 and sizes(8, 8 << 20)[-1] == 8 << 20
    with pytest.raises(ValueError):
        sizes(4, 8)
    a, b = 4e-6, 3e-10  # the Allreduce line at 2 ranks: t = 2α + nβ
    table = [{"bytes": n, "median_s": a + b * n, "min_s": a + b * n} for n in sizes(8, 1 << 20)]
    rep = analyse({"ranks": 2, "table": table, "mpi_library": "MPICH"}, "rabenseifner")
    assert rep["alpha_s"] == pytest.approx(a / 2) and rep["beta_s_per_byte"] == pytest.approx(b)
    assert rep["per_algorithm"]["ring"]["alpha_s"] == pytest.approx(a / 2)
    assert rep["fit"]["rms_rel"] < 1e-9 and all(math.isfinite(r["residual_rel"]) for r in rep["table"])
    rep4 = analyse({"ranks": 4, "table": table, "mpi_library": "MPICH"}, "ring")
    assert rep4["alpha_s"] == pytest.approx(a / 6) and rep4["beta_s_per_byte"] == pytest.approx(b / 1.5)


def test_contended_runs_are_flagged_and_left_out_where_clean_ones_exist(tmp_path):
    out = make_study(tmp_path, ranks=(1, 2), repeats=3, busy=(2, 1))
    report = analyze(out, alpha=ALPHA, beta=BETA, plot=True, log=lambda *_: None)
    rows = {(int(r["ranks"]), int(r["repeat"])): r for r in read_csv(out / "results.csv")}
    assert rows[(2, 1)]["contended"] == "True" and rows[(2, 1)]["used"] == "False"
    assert all(r["contended"] == "False" and r["used"] == "True" for k, r in rows.items() if k != (2, 1))
    ct = report["contention"]
    assert (ct["runs_known"], ct["runs_contended"], ct["runs_left_out"]) == (6, 1, 1)
    assert report["check"]["pass"] and report["check"]["max_abs_error"] < 0.02  # the slow run does not count
    assert (out / "scaling.png").stat().st_size > 10_000
    kept = analyze(out, alpha=ALPHA, beta=BETA, plot=False, keep_contended=True, log=lambda *_: None)
    assert kept["contention"]["runs_left_out"] == 0
    assert all(r["used"] == "True" for r in read_csv(out / "results.csv"))
    two = [p for p in kept["measured_points"] if p["ranks"] == 2][0]
    assert two["measured_wall_s_median"] > [p for p in report["measured_points"] if p["ranks"] == 2][0][
        "measured_wall_s_median"]


def test_figure_is_readable_at_readme_width_with_the_projection_apart(tmp_path, monkeypatch):
    """Every text >= 9 pt on a figure as wide as the README shows it; measured and projected in
    their own panels; both vertical markers named in a legend."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from lepton_hpc.scaling import plot
    seen = {}
    real = plot.plot_study
    monkeypatch.setattr(plot, "plot_study", lambda path, *args: seen.setdefault("args", args) and real(path, *args))
    out = make_study(tmp_path, ranks=(1, 2, 4), repeats=2)
    analyze(out, alpha=ALPHA, beta=BETA, cores=2, plot=True, log=lambda *_: None)
    fig = plot.figure(*seen["args"])
    try:
        assert tuple(fig.get_size_inches()) == (plot.WIDTH_IN, plot.HEIGHT_IN) and plot.WIDTH_IN <= 8.8
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]
        assert sizes and min(sizes) >= 9
        measured, projected = fig.axes[1], fig.axes[3]
        assert measured.get_xlim()[1] < 16 <= 4096 <= projected.get_xlim()[1]
        labels = " | ".join(t.get_text() for t in projected.get_legend().get_texts())
        assert "2 cores here" in labels and "chunks" in labels, labels
    finally:
        plt.close(fig)
    import struct
    with open(out / "scaling.png", "rb") as f:
        width, height = struct.unpack(">II", f.read(24)[16:24])
    assert (width, height) == (round(plot.WIDTH_IN * plot.DPI), round(plot.HEIGHT_IN * plot.DPI))
