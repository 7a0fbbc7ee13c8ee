"""The one place that finds ``mpiexec`` (benches, the scaling sweep, the tests).

The venv's own launcher comes first: the mpich wheel installs ``mpiexec``
beside the interpreter, and a system ``mpiexec`` of another MPI would start
ranks that cannot talk to this mpi4py.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .errors import UserError


def find_mpiexec(given: str | None = None) -> str:
    """The launcher to use: ``given``, else the ``mpiexec`` beside this Python, else PATH's.

    Raises
    ------
    UserError
        When there is none.
    """
    exe = given or shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if not exe:
        raise UserError("no mpiexec found: install the mpich wheel into this venv (pip install -e '.[mpich]') "
                        "or pass --mpiexec (the scaling sweep also takes --launcher slurm)")
    return exe
