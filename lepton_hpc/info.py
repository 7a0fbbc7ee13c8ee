"""``lepton-hpc info``: what this installation runs with.

Versions (lepton_hpc, Python, numpy, scipy, h5py, mpi4py), the MPI library, which
gradient kernel is built (C with the ISA clone this CPU gets, or the numpy fallback),
the BLAS libraries and their threads (threadpoolctl), and whether this process was
started by a launcher (mpirun/mpiexec, srun). Runs in one process; MPI is initialised
only to ask the library its version.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

#: Environment variables a launcher sets in every process it starts, and whose launcher they name.
LAUNCHER_ENV = (
    ("SLURM_PROCID", "srun (Slurm)"),
    ("PMIX_RANK", "a PMIx launcher (mpirun/prterun, srun --mpi=pmix)"),
    ("OMPI_COMM_WORLD_SIZE", "Open MPI's mpirun"),
    ("PMI_RANK", "a PMI launcher (MPICH/Intel MPI hydra mpiexec, srun --mpi=pmi2)"),
    ("HYDRA_CONTROL_FD", "MPICH's hydra mpiexec"),
    ("HYDI_CONTROL_FD", "MPICH's hydra mpiexec"),
    ("PMI_FD", "a PMI launcher"),
)


def launcher(env=None) -> str | None:
    """The launcher this process runs under, from its environment; None when started directly."""
    env = os.environ if env is None else env
    for key, name in LAUNCHER_ENV:
        if key in env:
            return f"{name} ({key}={env[key]})"
    return None


def report() -> dict:
    """Everything ``info`` prints, as a dict (the JSON of ``--json``)."""
    import h5py
    import mpi4py
    import numpy
    import scipy
    from threadpoolctl import threadpool_info

    from . import __version__
    from .models import fused

    from . import comm  # initialises MPI: the library answers only then

    mpi = comm.library()
    return {
        "lepton_hpc": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "numpy": numpy.__version__, "scipy": scipy.__version__, "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version, "mpi4py": mpi4py.__version__,
        "mpi_library": mpi["library"],
        "mpi_standard": mpi["standard"],
        "gradient_kernel": fused.describe(),
        "blas": [{"library": i.get("internal_api"), "version": i.get("version"),
                  "threads": i.get("num_threads"), "path": i.get("filepath")}
                 for i in threadpool_info() if i.get("user_api") == "blas"],
        "launcher": launcher() or "none: started directly, runs as 1 rank (start with mpirun -n N or srun)",
        "world_size": mpi["world_size"],
        "cpu_count": os.cpu_count(),
    }


def text(rep: dict) -> str:
    width = max(map(len, rep))
    lines = []
    for key, value in rep.items():
        if key == "blas":
            value = "; ".join(f"{b['library']} {b['version']}, {b['threads']} thread(s)" for b in value) or \
                "none found by threadpoolctl"
        lines.append(f"{key:<{width}}  {value}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from .cli import prog

    p = argparse.ArgumentParser(prog=prog("info"), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of aligned lines")
    args = p.parse_args(argv)
    rep = report()
    from . import comm

    if comm.library()["world_rank"] == 0:  # under mpirun -n N: one report, with world_size N
        print(json.dumps(rep, indent=1) if args.json else text(rep), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
