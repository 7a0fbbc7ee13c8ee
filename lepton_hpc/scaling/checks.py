"""Every check of a scaling command line that can fail, made before anything is written or launched.

A failed start leaves nothing behind: the numbers, the ``--network`` file, the
launcher and the ``--out`` directory are all checked first (:func:`check_sweep`,
:func:`check_analyze`); only then does the sweep write ``study.json`` and ``runs/``.

How ``--out`` is judged (:func:`study_out`): a missing or empty directory becomes a
new study; a directory with a ``study.json`` is a scaling study, continued when it is
the same study (same mode, job, ``--set`` items and rows: its finished runs are kept,
missing and failed ones run, and its rank counts and repeats grow to cover both the old
and the new command line) and refused otherwise; anything else that is not empty (a training run directory, a
file, a folder of other things) is refused, so a study never writes into it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from ..errors import UserError

#: option -> smallest allowed value (integers)
MINIMUM = {"cores": 1, "project_to": 1, "bench_ranks": 2, "bench_max_bytes": 8, "bench_reps": 1,
           "repeats": 1, "timeout": 1, "retry_contended": 0}

#: what a training run leaves in its --out (python -m lepton_hpc.train)
RUN_MARKERS = ("config.toml", "checkpoints", "summary.json", "metrics.jsonl", ".lock")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_numbers(args) -> None:
    """Integer options within their range, --alpha/--beta finite and >= 0, --quiet-wait >= 0."""
    for dest, low in MINIMUM.items():
        v = getattr(args, dest, None)
        if v is not None and v < low:
            what = "a positive number" if low == 1 else f"at least {low}"
            raise UserError(f"{_flag(dest)} must be {what}, got {v}")
    for dest in ("alpha", "beta", "quiet_wait"):
        v = getattr(args, dest, None)
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise UserError(f"{_flag(dest)} must be a finite number >= 0, got {v:g}")


def read_network(path, label: str | None = None) -> dict:
    """The ``alpha_s`` and ``beta_s_per_byte`` of a JSON network description (the bench allreduce output).

    ``label`` names the file in the messages (default ``--network PATH``).
    """
    p = Path(path)
    name = label or f"--network {path}"
    if not p.is_file():
        raise UserError(f"{name}: no such file" if not p.exists() else f"{name} is not a file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"{name} is not a JSON network description (write one with "
                        f"`python -m lepton_hpc.bench allreduce > net.json`, or give --alpha and --beta)") from None
    except OSError as exc:
        raise UserError(f"{name} cannot be read: {exc.strerror or exc}") from None
    keys = ("alpha_s", "beta_s_per_byte")
    ok = isinstance(data, dict) and all(
        isinstance(data.get(k), (int, float)) and not isinstance(data.get(k), bool) for k in keys)
    if not ok:
        raise UserError(f"{name} is not a network description: it needs numbers alpha_s and "
                        f"beta_s_per_byte (the JSON `python -m lepton_hpc.bench allreduce` prints)")
    if not all(math.isfinite(data[k]) and data[k] >= 0 for k in keys):
        raise UserError(f"{name}: alpha_s and beta_s_per_byte must be finite and >= 0, got "
                        f"{data['alpha_s']!r} and {data['beta_s_per_byte']!r}")
    return data


def find_launcher(given: str | None) -> str:
    """The mpiexec of the sweep: ``--mpiexec`` must name an executable (a path or a name on PATH)."""
    from ..mpiexec import find_mpiexec

    if given is None:
        return find_mpiexec(None)
    exe = shutil.which(given)
    if exe is None:
        raise UserError(f"--mpiexec {given}: no such executable (give the path of an mpiexec, or leave "
                        f"--mpiexec out to use the venv's)")
    return exe


def study_out(out: Path, same_study):
    """Can a study be written to ``out``? The Study there when this one continues it, else None (a new study).

    ``same_study(old)`` says whether the Study loaded from ``out/study.json`` is this one.
    """
    from .launch import Study

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory; choose a new --out for the study")
    base = next(p for p in (out, *out.parents) if p.exists())
    if not base.is_dir():
        raise UserError(f"--out {out} cannot be made: {base} is a file, not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"--out {out} cannot be written: no permission in {base}")
    if (out / "study.json").is_file():
        old = Study.load(out)
        if not same_study(old):
            raise UserError(f"{out} holds another study ({old.mode} of {old.job} with {old.overrides}); "
                            f"choose a new --out")
        return old
    if not out.is_dir() or not any(out.iterdir()):
        return None
    found = [m for m in RUN_MARKERS if (out / m).exists()]
    if found:
        raise UserError(f"--out {out} is a training run directory (it has {found[0]}), not a scaling study; "
                        f"choose a new --out for the study")
    raise UserError(f"--out {out} is a directory that is not empty and not a scaling study (no study.json); "
                    f"choose a new or empty --out")


def check_analyze(args) -> None:
    """``analyze DIR``: the numbers and the network file (the study directory is read by Study.load)."""
    check_numbers(args)
    if args.network is not None:
        read_network(args.network)
