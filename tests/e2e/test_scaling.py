"""`python -m lepton_hpc.scaling strong` on a real small sweep (ranks 1, 2) and the Allreduce bench.

Two cores here: rank counts 1 and 2 are the measured points the cost model must predict
within 25%; more ranks would be oversubscribed (shown, flagged, not checked).
"""

import csv
import json
import math
import subprocess
import sys

import pytest
from mpirun import ROOT, mpiexec, rank_env

from lepton_hpc.scaling.analysis import COLUMNS

JOB = ROOT / "jobs" / "default.toml"
TINY = ["--set", "data.rows=600000", "--set", "data.cols=16", "--set", "train.steps=10",
        "--set", "checkpoint.every=0"]


def run(args, timeout=240):
    mpiexec()  # skips when there is none
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env=rank_env(), cwd=ROOT)


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_strong_sweep_writes_results_projection_and_plot(tmp_path):
    out = tmp_path / "study"
    proc = run(["-m", "lepton_hpc.scaling", "strong", str(JOB), "--ranks", "1,2", "--repeats", "1",
                "--out", str(out), *TINY, "--timeout", "120", "--bench-max-bytes", "16384", "--bench-reps", "5",
                "--retry-contended", "2"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == COLUMNS
    assert [(r["ranks"], r["repeat"], r["status"]) for r in rows] == [("1", "0", "ok"), ("2", "0", "ok")]
    for r in rows:
        for key in ("wall_s", "speedup", "efficiency", "samples_per_s", "compute_max_s", "reduce_min_s",
                    "predicted_rabenseifner_s"):
            assert float(r[key]) > 0, (key, r[key])
        assert r["mpi_library"] and r["numpy"] and r["lepton_hpc"] and r["oversubscribed"] == "False"
        assert int(r["bytes_reduced_per_step"]) > 0 and int(r["steps"]) == 10
    assert rows[0]["karp_flatt"] == "" and math.isfinite(float(rows[1]["karp_flatt"]))
    assert float(rows[0]["speedup"]) == 1.0
    assert (out / "scaling.png").stat().st_size > 10_000

    report = json.loads((out / "projection.json").read_text())
    assert report["network"]["source"].startswith("measured") and (out / "network.json").is_file()
    ranks = {p["ranks"] for p in report["projection"]}
    assert {1, 2, 16, 4096} <= ranks
    assert all(finite(p["t_total_s"]) and p["t_total_s"] > 0 for p in report["projection"])
    assert report["check"]["ranks_checked"] == [1, 2]
    for r in rows:
        assert r["contended"] in ("True", "False") and 0 < float(r["cpu_share"]) <= 1.5

    # the cost model, fitted on this sweep with the measured alpha, beta, predicts it within 25%
    errors = {(p["ranks"], alg): err for p in report["measured_points"] for alg, err in p["error"].items()}
    assert all(p["in_check"] and not p["oversubscribed"] for p in report["measured_points"])
    worst = max(abs(e) for e in errors.values())
    assert report["check"]["max_abs_error"] == worst
    ct = report["contention"]
    if worst > 0.25 and ct["runs_contended"]:  # other processes took the cores: the times are the machine's
        pytest.xfail(f"model error {worst:.0%} > 25%, but {ct['runs_contended']} of {ct['runs_known']} runs got "
                     f"only {ct['cpu_share_min']:.2f}-{ct['cpu_share_max']:.2f} of their cores (busy machine)")
    assert worst <= 0.25, f"the model misses the measured points: {errors}"
    assert report["check"]["pass"]


def test_bench_allreduce_prints_one_json_with_the_fit(tmp_path):
    proc = run(["-m", "lepton_hpc.bench", "allreduce", "--max-bytes", "4096", "--reps", "3"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[-2000:]
    rep = json.loads(lines[0])
    assert rep["bench"] == "allreduce" and rep["ranks"] == 2 and rep["algorithm"] == "rabenseifner"
    assert finite(rep["alpha_s"]) and rep["alpha_s"] >= 0
    assert finite(rep["beta_s_per_byte"]) and rep["beta_s_per_byte"] >= 0
    assert set(rep["per_algorithm"]) == {"ring", "rabenseifner"}
    assert {"a_s", "b_s_per_byte", "rms_rel", "max_abs_rel"} <= set(rep["fit"])
    assert [r["bytes"] for r in rep["table"]] == [8 << k for k in range(10)]
    for r in rep["table"]:
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"] and finite(r["residual_rel"]) and r["iters"] >= 1
    assert rep["mpi_library"] and rep["provenance"]["numpy"]
