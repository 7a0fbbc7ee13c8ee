"""``ranks``: gd step time at ``-n 1`` over ``-n 2`` (target >= 1.6).

    python -m lepton_hpc.bench ranks [--rows 2000000 --cols 32 --steps 20 --rounds 3 --reduction exact]

Every round launches the :mod:`.reduce` worker at 1 and at 2 ranks (order
alternating by round); each launch gives its median step time.
"""

from __future__ import annotations

import numpy as np

from .common import job_cli, spread, verdict
from .reduce import launch

HELP = "step time -n 1 / -n 2 (target >= 1.6)"


def bench_ranks(args) -> dict:
    per = {1: [], 2: []}
    for rnd in range(args.rounds):
        for n in (1, 2) if rnd % 2 == 0 else (2, 1):
            res = launch(args, n, args.reduction)
            per[n].append(float(np.median(res["modes"][args.reduction]["step_s"])))
    return {"data": res["data"], "reduction": args.reduction, "steps": args.steps, "rounds": args.rounds,
            "step_s_n1": spread(per[1]), "step_s_n2": spread(per[2]),
            "step_s_per_launch": {"n1": per[1], "n2": per[2]},
            **verdict(per[1], per[2], 1.6, ">="), "_blas": res["blas"]}


def _extra(p) -> None:
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reduction", default="exact", choices=("exact", "fast"))


def cli(argv) -> int:
    return job_cli("ranks", HELP, bench_ranks, argv, _extra, steps=True)
