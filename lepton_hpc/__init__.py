"""lepton_hpc: an SPMD MPI training engine (the Lepton adaptive update, factored matrices)."""

__version__ = "0.1.0"
