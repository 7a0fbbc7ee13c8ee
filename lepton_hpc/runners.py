"""Which runner class carries out a job, by ``model.kind``.

A runner is constructed as ``Runner(cfg, comm, out_dir, resume)`` and offers
``setup()``, ``run() -> exit code``, ``summary(exit_code) -> dict | None``
(the dict on rank 0) and ``close()``, all collective over ``comm``.
"""

from __future__ import annotations

import os
from importlib import import_module

from .config import JobConfig
from .errors import UserError

RUNNERS = {
    "linear": "lepton_hpc.trainer:Trainer",
    "logistic": "lepton_hpc.trainer:Trainer",
    "softmax": "lepton_hpc.trainer:Trainer",
    "mf": "lepton_hpc.recommender.trainer:MFTrainer",
    "matmul": "lepton_hpc.matmul_job:MatmulJob",
}


def runner_for(cfg: JobConfig) -> type:
    target = RUNNERS.get(cfg.model.kind)
    if target is None:
        raise UserError(f"model.kind={cfg.model.kind!r} has no runner in this version; "
                         f"available: {', '.join(sorted(RUNNERS))}")
    module, name = target.split(":")
    return getattr(import_module(module), name)


def threads_per_rank(configured: int) -> int:
    """BLAS threads per rank: train.threads, else $SLURM_CPUS_PER_TASK, else 1."""
    if configured > 0:
        return configured
    try:
        return max(1, int(os.environ.get("SLURM_CPUS_PER_TASK", "1")))
    except ValueError:
        return 1
