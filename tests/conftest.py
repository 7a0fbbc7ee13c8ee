"""pytest setup: the pytest-mpi tests run only under mpiexec (see test_mpi_suite.py), and the
slow lanes are marked by where they live, so ``-m "not e2e and not slurm"`` is the fast lane:

* ``e2e``: everything in tests/e2e and tests/test_mpi_suite.py (they launch mpiexec);
* ``slurm``: everything in tests/slurm (and any test that marks itself).

Two xdist workers (``-n 2 --dist loadgroup`` in pyproject.toml): one runs the Slurm tests, which
mostly wait for the batch system, the other everything else in order. Nothing else runs
beside the CPU-bound tests, so their timings (the scaling study's model check) stay honest.
"""

import sys
from pathlib import Path

import pytest

# A plain pytest session must not collect tests/mpi at size 1 without --with-mpi.
collect_ignore = [] if "--with-mpi" in sys.argv else ["mpi"]

HERE = Path(__file__).resolve().parent
E2E = (HERE / "e2e", HERE / "test_mpi_suite.py")
SLURM = (HERE / "slurm",)


def _under(path: Path, places) -> bool:
    return any(path == place or place in path.parents for place in places)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if _under(path, E2E):
            item.add_marker(pytest.mark.e2e)
        if _under(path, SLURM):
            item.add_marker(pytest.mark.slurm)
        item.add_marker(pytest.mark.xdist_group("slurm" if item.get_closest_marker("slurm") else "main"))
