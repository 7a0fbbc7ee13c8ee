"""The matmul benchmark runs at a tiny size and reports every field.

Only the shape and the arithmetic of the report are checked: the speed target
is for the full-size run (n = 4000) on a quiet machine, never for a timed test.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_spread, positive

from lepton_hpc.bench import matmul as bench_matmul
from lepton_hpc.bench.matmul import flops_dense, flops_factored, main

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--m", "48", "--n", "40", "--p", "36", "--k", "4", "--repeats", "2", "--sweep", "2,8"]




def check_report(r: dict, m=48, n=40, p=36, k=4, sweep=(2, 4, 8)) -> None:
    assert r["bench"] == "matmul"
    assert (r["m"], r["n"], r["p"], r["k"], r["repeats"]) == (m, n, p, k, 2)
    assert r["flops_dense"] == 2 * m * n * p == flops_dense(m, n, p)
    assert r["flops_factored"] == 2 * k * p * (m + n) + k * p == flops_factored(m, n, p, k)
    assert r["flop_ratio"] == pytest.approx(r["flops_dense"] / r["flops_factored"])
    for key in ("dense_s", "factored_s", "dense_cpu_s", "factored_cpu_s"):
        assert set(r[key]) == {"min", "median", "max"}
    assert_spread(r["dense_s"])
    assert_spread(r["factored_s"])
    assert positive(r["speedup"]) and positive(r["gflop_s"]["dense"]) and positive(r["gflop_s"]["factored"])
    assert r["speedup"] == pytest.approx(r["dense_s"]["median"] / r["factored_s"]["median"])
    assert r["ratio"] == pytest.approx(r["speedup"] / r["flop_ratio"])
    assert_spread(r["paired_ratio"])
    assert r["target"] == 0.5 and r["target_is"] == ">=" and r["pass"] == (r["ratio"] >= 0.5)
    assert r["in_target_regime"] is False  # n < 4000
    assert r["rel_diff_factored_vs_dense"] < 1e-12  # the same product, both ways
    assert [e["k"] for e in r["sweep"]] == list(sweep)
    for e in r["sweep"]:
        assert e["flop_ratio"] == pytest.approx(flops_dense(m, n, p) / flops_factored(m, n, p, e["k"]))
        assert e["ratio"] == pytest.approx(e["speedup"] / e["flop_ratio"])
        assert_spread(e["factored_s"])
        assert e["pass"] == (e["ratio"] >= 0.5)
    assert next(e for e in r["sweep"] if e["k"] == k)["speedup"] == r["speedup"]
    assert positive(r["wall_s"])
    prov = r["provenance"]
    assert prov["numpy"] and prov["lepton_hpc"] and prov["blas"] and prov["blas"][0]["num_threads"] == 1


def test_main_returns_the_report():
    check_report(main(TINY))


def test_module_prints_one_json_object():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "lepton_hpc.bench", "matmul", *TINY], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout[-3000:]
    check_report(json.loads(lines[0]))
    assert "speedup" in proc.stderr  # the note goes to stderr


def test_default_k_is_n_over_20_and_auto_sweep_fits_the_matrix():
    args = bench_matmul.parse_args(["--m", "60", "--n", "80", "--p", "10"])
    assert args.k == 4 and args.ranks == [1, 2, 4, 8]  # n/80, n/40, n/20, n/10
    args = bench_matmul.parse_args(["--m", "5", "--n", "80", "--p", "10", "--k", "3"])
    assert args.ranks == [1, 2, 3]  # n/10 = 8 > min(m, n) = 5 is dropped
    assert bench_matmul.parse_args(["--sweep", "none"]).ranks == [200]


@pytest.mark.parametrize("argv", [["--k", "100", "--m", "50"], ["--sweep", "2,x"], ["--repeats", "0"],
                                  ["--sweep", "0"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_matmul.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_every_bench_is_listed_by_lepton_hpc_bench_help():
    proc = subprocess.run([sys.executable, "-m", "lepton_hpc.bench", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("gradpass", "reduce", "ranks", "matmul", "allreduce", "models"):
        assert f"  {name} " in proc.stdout
