"""Strong and weak scaling studies of the application, and the cost model behind projections.

    python -m lepton_hpc.scaling strong|weak JOB.toml --ranks 1,2,4 --repeats 3 [--launcher mpiexec|slurm]
    python -m lepton_hpc.scaling analyze DIR

Modules: :mod:`.model` (pure maths), :mod:`.launch` (mpiexec and Slurm sweeps),
:mod:`.analysis` (summaries → results.csv, cost-model fit → projection.csv/json),
:mod:`.plot` (scaling.png), :mod:`.cli` (the command line).
"""

from .model import (ALGORITHMS, CostModel, allgather_time, allreduce_time, efficiency, fit_cost_model,
                    hockney_fit, karp_flatt, project, scaled_speedup, speedup)

__all__ = ["ALGORITHMS", "CostModel", "allgather_time", "allreduce_time", "efficiency", "fit_cost_model",
           "hockney_fit", "karp_flatt", "project", "scaled_speedup", "speedup"]
