"""pytest setup: the pytest-mpi tests run only under mpiexec (see test_mpi_suite.py)."""

import sys

# A plain pytest session must not collect tests/mpi at size 1 without --with-mpi.
collect_ignore = [] if "--with-mpi" in sys.argv else ["mpi"]
