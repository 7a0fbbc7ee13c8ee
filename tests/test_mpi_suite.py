"""Run the pytest-mpi tests in tests/mpi under mpiexec at 1, 2, 3 and 4 ranks."""

import sys

import pytest

from mpirun import ROOT, run_mpi


@pytest.mark.parametrize("n_ranks", [1, 2, 3, 4])
def test_mpi_suite(n_ranks):
    proc = run_mpi(n_ranks, ["--with-mpi", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                             str(ROOT / "tests" / "mpi")], module="pytest", timeout=600,
                   env={"MPIEXEC_TIMEOUT": "570"})  # the whole in-process suite in one launch
    sys.stdout.write(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
