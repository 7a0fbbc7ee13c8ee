"""lepton_hpc: an SPMD MPI training engine (the Lepton adaptive update, factored matrices).

``lepton_hpc.load(RUN_DIR)`` gives the fitted model of a run, in one process, without MPI.
"""

__version__ = "0.1.0"


def load(path):
    """The fitted model of a run directory, checkpoint step file or saved ``.npz`` (see :mod:`lepton_hpc.api`)."""
    from .api import load as _load

    return _load(path)
