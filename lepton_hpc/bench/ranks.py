"""``ranks``: the -n 2 speedup of a gd step as a share of what the memory allows (target >= 0.8).

    python -m lepton_hpc.bench ranks [--rows 2000000 --cols 32 --steps 20 --rounds 3 --reduction exact]

A full-batch step is bound by memory bandwidth, and two processes on this kind of
machine read barely faster than one. So the target is not a fixed speedup: every
round launches the :mod:`.reduce` worker at 1 and at 2 ranks (order alternating by
round), and each launch gives its median step time and the time its ranks take to
read their X once, all at the same time. ``ratio`` is the step speedup
(t_step(-n 1) / t_step(-n 2)) over the read-bandwidth ratio (bw(-n 2) / bw(-n 1)) of
the same launches: 1.0 means -n 2 gains all that the memory system gives.
"""

from __future__ import annotations

import numpy as np

from .common import job_cli, spread
from .common import positive_int
from .reduce import launch

HELP = "-n 2 step speedup over the -n 2 / -n 1 read-bandwidth ratio (target >= 0.8)"
TARGET = 0.8


def bench_ranks(args) -> dict:
    per = {1: [], 2: []}
    bw = {1: [], 2: []}
    for rnd in range(args.rounds):
        for n in (1, 2) if rnd % 2 == 0 else (2, 1):
            res = launch(args, n, args.reduction)
            per[n].append(float(np.median(res["modes"][args.reduction]["step_s"])))
            bw[n].append(res["x_bytes"] / float(np.median(res["read_s"])))
    speedup = np.asarray(per[1]) / np.asarray(per[2])  # per round: the two launches ran back to back
    bw_ratio = np.asarray(bw[2]) / np.asarray(bw[1])
    paired = speedup / bw_ratio
    ratio = float(np.median(per[1]) / np.median(per[2])) / float(np.median(bw[2]) / np.median(bw[1]))
    return {"data": res["data"], "reduction": args.reduction, "steps": args.steps, "rounds": args.rounds,
            "step_s_n1": spread(per[1]), "step_s_n2": spread(per[2]),
            "step_s_per_launch": {"n1": per[1], "n2": per[2]},
            "speedup": float(np.median(per[1]) / np.median(per[2])), "speedup_per_round": speedup.tolist(),
            "read_gb_s": {"n1": spread(np.asarray(bw[1]) / 1e9), "n2": spread(np.asarray(bw[2]) / 1e9)},
            "read_bandwidth_ratio": float(np.median(bw[2]) / np.median(bw[1])),
            "ratio": ratio, "paired_ratio": spread(paired), "target": TARGET, "target_is": ">=",
            "pass": bool(ratio >= TARGET), "_blas": res["blas"]}


def _extra(p) -> None:
    p.add_argument("--rounds", type=positive_int, default=3, help="pairs of -n 1 / -n 2 launches (default 3)")
    p.add_argument("--reduction", default="exact", choices=("exact", "fast"),
                   help="comm.reduction of both launches (default exact)")


def cli(argv) -> int:
    return job_cli("ranks", HELP, bench_ranks, argv, _extra, steps=True)
