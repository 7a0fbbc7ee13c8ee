"""Running the sweep: one training run per (rank count, repeat), by mpiexec or Slurm.

Layout of a study directory::

    DIR/study.json                 what was asked (mode, job, overrides, ranks, repeats, launcher)
    DIR/runs/nPPPP-rR/             the run directory of `python -m lepton_hpc.train` (summary.json, …)
    DIR/runs/nPPPP-rR/launch.json  how it was launched: command, exit code, seconds, host, cores
    DIR/slurm/                     generated batch scripts and their logs (--launcher slurm)
    DIR/network.json               the α, β used (measured or given)
    DIR/results.csv, projection.csv, projection.json, scaling.png   written by `analyze`
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from ..data.atomic import write_json, write_text
from ..errors import UserError
from ..mpiexec import find_mpiexec

RANK_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CONTENDED = 0.75  # a run whose processes got less than this share of their cores' CPU time shared them


def usable_cores() -> int:
    """CPUs this process may run on (the affinity mask), the oversubscription limit."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class Study:
    mode: str                       # strong | weak
    job: str                        # absolute path of the job TOML
    overrides: list                 # --set items, in order (train.tol=0 first, the user's after)
    ranks: list
    repeats: int
    launcher: str                   # mpiexec | slurm
    out: str                        # absolute path of the study directory
    base_rows: int                  # data.rows of the job; weak: rows per rank (run p gets base_rows·p)
    cores: int                      # usable cores here (mpiexec) — ranks above it are oversubscribed
    timeout_s: int = 3600
    created: str = ""
    python: str = sys.executable
    slurm_job_ids: dict = field(default_factory=dict)   # rank count -> job id; "analyze" -> id

    def rows_at(self, p: int) -> int:
        return self.base_rows * p if self.mode == "weak" else self.base_rows

    def train_args(self, p: int, run_dir: Path) -> list[str]:
        sets = [*self.overrides, *([f"data.rows={self.rows_at(p)}"] if self.mode == "weak" else [])]
        return [self.job, "--out", str(run_dir), *[a for s in sets for a in ("--set", s)]]

    def save(self) -> None:
        Path(self.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(self.out) / "study.json", asdict(self))

    @classmethod
    def load(cls, out: Path) -> "Study":
        path = Path(out) / "study.json"
        if not path.is_file():
            raise UserError(f"{out} is not a scaling study directory (no study.json); run "
                             f"`python -m lepton_hpc.scaling strong|weak JOB.toml --out {out}` first")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            raw["slurm_job_ids"] = {str(k): v for k, v in raw.get("slurm_job_ids", {}).items()}
            # where the study is now, not where it was made: a committed or copied study analyzes in place
            raw["out"] = str(Path(out).resolve())
            return cls(**raw)
        except (ValueError, TypeError, AttributeError):
            raise UserError(f"{path} is not the study.json of a scaling study (it does not read as one); "
                            f"choose another directory") from None


def run_dir(out: Path, p: int, repeat: int) -> Path:
    return Path(out) / "runs" / f"n{p:04d}-r{repeat}"


def parse_run_dir(name: str) -> tuple[int, int] | None:
    if not (name.startswith("n") and "-r" in name):
        return None
    a, b = name[1:].split("-r", 1)
    return (int(a), int(b)) if a.isdigit() and b.isdigit() else None


def idle_cpus(window_s: float = 1.0) -> float | None:
    """CPUs idle on this machine over the next ``window_s`` seconds (from /proc/stat), None if unknown."""
    def snap():
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total (jiffies over all CPUs)

    try:
        i0, t0 = snap()
        time.sleep(window_s)
        i1, t1 = snap()
    except (OSError, ValueError, IndexError):
        return None
    return (os.cpu_count() or 1) * (i1 - i0) / max(1, t1 - t0)


def wait_for_quiet(p: int, cores: int, limit_s: float, log=print) -> float | None:
    """Wait (at most ``limit_s``) until min(p, cores) CPUs are 90% idle; returns the last idle count."""
    if limit_s <= 0:
        return None
    need = 0.9 * min(p, cores)
    deadline = time.monotonic() + limit_s
    idle = idle_cpus()
    while idle is not None and idle < need and time.monotonic() < deadline:
        idle = idle_cpus()
    if idle is not None and idle < need:
        log(f"  machine still busy after {limit_s:.0f}s ({idle:.1f} CPUs idle, want {need:.1f}); running anyway")
    return idle


def _children_cpu_s() -> float:
    """User + system CPU seconds of every finished child process and its descendants."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _order(ranks: list[int], repeat: int) -> list[int]:
    """Ascending on even repeats, descending on odd ones: slow drifts of a noisy machine spread out."""
    return list(ranks) if repeat % 2 == 0 else list(reversed(ranks))


def contended(cpu_share: float | None, ranks: int, cores: int) -> bool:
    """Did other processes take this run's cores? (CPU share below CONTENDED of its fair share)"""
    return cpu_share is not None and cpu_share < CONTENDED * min(1.0, cores / ranks)


def _text(part) -> str:
    return part.decode(errors="replace") if isinstance(part, bytes) else (part or "")


def _launch_one(study: Study, exe: str, env: dict, p: int, rep: int, quiet_wait_s: float, log) -> dict:
    rd = run_dir(Path(study.out), p, rep)
    if rd.exists():
        shutil.rmtree(rd)  # a failed earlier attempt of ours: start it again
    rd.parent.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "-n", str(p), study.python, "-m", "lepton_hpc.train", *study.train_args(p, rd)]
    idle = wait_for_quiet(p, study.cores, quiet_wait_s, log)
    t = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cpu0 = _children_cpu_s()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=study.timeout_s + 30)
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = 124
        text = f"{_text(exc.stdout)}{_text(exc.stderr)}\n(killed after {study.timeout_s + 30}s)"
    seconds = time.perf_counter() - t
    cpu = _children_cpu_s() - cpu0
    rd.mkdir(parents=True, exist_ok=True)
    write_text(rd / "launch.log", text)
    info = {"ranks": p, "repeat": rep, "launcher": "mpiexec", "command": shlex.join(cmd),
            "returncode": rc, "launch_s": seconds, "started": started, "host": socket.gethostname(),
            "cores": study.cores, "nodes": 1, "load_1m": load, "idle_cpus_before": idle,
            "cpu_share": cpu / (p * seconds) if seconds > 0 else None}
    write_json(rd / "launch.json", info)
    busy = contended(info["cpu_share"], p, study.cores)
    status = "ok" if rc == 0 else f"FAILED (exit {rc}; see {rd / 'launch.log'})"
    log(f"n={p} repeat {rep}: {seconds:.1f}s {status}"
        + (f" (contended: CPU share {info['cpu_share']:.2f})" if busy and rc == 0 else ""))
    if rc != 0:
        log("  " + "\n  ".join(text.strip().splitlines()[-5:]))
    info["contended"] = busy
    return info


def run_mpiexec(study: Study, mpiexec: str | None = None, log=print, quiet_wait_s: float = 0.0,
                retry_contended: int = 0) -> list[dict]:
    """Every (rank count, repeat) under ``mpiexec -n p``; skips runs that already have a summary.

    A run that other processes contended (see :func:`contended`) is run again up to
    ``retry_contended`` times; the earlier attempt is kept as ``nPPPP-rR.contended-K``.
    """
    exe = find_mpiexec(mpiexec)
    env = {**os.environ, **RANK_ENV, "MPIEXEC_TIMEOUT": str(study.timeout_s), "PYTHONUNBUFFERED": "1"}
    if env.get("SLURM_JOB_ID"):
        env["LEPTON_SKIP_NTASKS_CHECK"] = "1"  # mpiexec inside an allocation: the world is ours
    done = []
    for rep in range(study.repeats):
        for p in _order(study.ranks, rep):
            rd = run_dir(Path(study.out), p, rep)
            if (rd / "summary.json").is_file():
                log(f"n={p} repeat {rep}: already done ({rd})")
                continue
            info = _launch_one(study, exe, env, p, rep, quiet_wait_s, log)
            for k in range(1, retry_contended + 1):
                if info["returncode"] != 0 or not info["contended"]:
                    break
                keep = rd.with_name(f"{rd.name}.contended-{k}")
                if keep.exists():
                    shutil.rmtree(keep)
                rd.rename(keep)
                info = _launch_one(study, exe, env, p, rep, quiet_wait_s, log)
            done.append(info)
    return done


# -- Slurm ----------------------------------------------------------------------------------

BATCH = """#!/bin/bash
# Generated by `python -m lepton_hpc.scaling` ({mode} scaling study {out}).
# One allocation of {p} task(s) runs every repeat of this rank count, one srun step each.
#SBATCH --job-name=lepton-scaling-n{p}
#SBATCH --ntasks={p}
#SBATCH --cpus-per-task=1
#SBATCH --output={slurm_dir}/n{p:04d}-%j.out
#SBATCH --chdir={cwd}
set -u
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
export PYTHONPATH={pythonpath}${{PYTHONPATH:+:$PYTHONPATH}}
MPI_PLUGIN=${{LEPTON_MPI:-pmi2}}
now() {{ date +%s.%N; }}
# cores per node: the CPUs Slurm gave this job here, but no more than the node really has
CORES=$(nproc --all)
if [ -n "${{SLURM_CPUS_ON_NODE:-}}" ] && [ "$SLURM_CPUS_ON_NODE" -lt "$CORES" ]; then CORES=$SLURM_CPUS_ON_NODE; fi
rc=0
for rep in {repeats}; do
    run={runs}/n{p:04d}-r$rep
    if [ -f "$run/summary.json" ]; then echo "repeat $rep already done"; continue; fi
    rm -rf "$run"; mkdir -p "$run"
    started=$(date +%FT%T); load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo null); t0=$(now)
    srun --mpi="$MPI_PLUGIN" --ntasks={p} {python} -m lepton_hpc.train {args} > "$run/launch.log" 2>&1
    code=$?
    t1=$(now)
    [ $code -eq 0 ] || rc=$code
    cat > "$run/launch.json" <<JSON
{{"ranks": {p}, "repeat": $rep, "launcher": "slurm", "command": "srun --mpi=$MPI_PLUGIN --ntasks={p} python -m lepton_hpc.train ...",
 "returncode": $code, "launch_s": $(awk "BEGIN {{print $t1 - $t0}}"), "started": "$started",
 "load_1m": $load, "host": "$(hostname -s)", "cores": $CORES, "nodes": ${{SLURM_JOB_NUM_NODES:-1}}, "slurm_job_id": "$SLURM_JOB_ID"}}
JSON
    echo "repeat $rep: exit $code"
done
exit $rc
"""


def _sbatch(args: list[str], cwd: str) -> str:
    cmd = ["sbatch", "--parsable", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)
    except FileNotFoundError:
        raise UserError("--launcher slurm needs sbatch on PATH (run on a Slurm login node)") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"{shlex.join(cmd)} did not answer within 120 s") from None
    job_id = proc.stdout.strip().split(";")[0]
    if proc.returncode != 0 or not job_id.isdigit():
        raise UserError(f"{shlex.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return job_id


def submit_slurm(study: Study, analyze_args: list[str], sbatch_args: list[str], analyze_ntasks: int,
                 log=print) -> dict:
    """One batch job per rank count, then ``analyze`` with --dependency=afterany on all of them."""
    if shutil.which("sbatch") is None:
        raise UserError("--launcher slurm needs sbatch on PATH (run on a Slurm login node)")
    out = Path(study.out)
    sdir = out / "slurm"
    sdir.mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    cwd = os.getcwd()
    pkg_root = str(Path(__file__).resolve().parents[2])
    ids = {}
    for p in study.ranks:
        script = sdir / f"n{p:04d}.sbatch"
        args = " ".join(shlex.quote(a) for a in study.train_args(p, Path("RUNDIR")))
        args = args.replace("RUNDIR", '"$run"')
        script.write_text(BATCH.format(mode=study.mode, out=out, p=p, slurm_dir=sdir, cwd=cwd,
                                       pythonpath=shlex.quote(pkg_root),
                                       repeats=" ".join(map(str, range(study.repeats))),
                                       runs=shlex.quote(str(out / "runs")), python=shlex.quote(study.python),
                                       args=args))
        ids[str(p)] = _sbatch([*sbatch_args, str(script)], cwd)
        log(f"submitted n={p}: job {ids[str(p)]} ({script})")
    analyze = [study.python, "-m", "lepton_hpc.scaling", "analyze", str(out), *analyze_args]
    wrap = (f"export PYTHONPATH={shlex.quote(pkg_root)}${{PYTHONPATH:+:$PYTHONPATH}} "
            f"OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1; " + shlex.join(analyze))
    ids["analyze"] = _sbatch([*sbatch_args, f"--dependency=afterany:{':'.join(ids[str(p)] for p in study.ranks)}",
                              "--job-name=lepton-scaling-analyze", f"--ntasks={analyze_ntasks}",
                              "--cpus-per-task=1", f"--output={sdir}/analyze-%j.out", f"--chdir={cwd}",
                              "--wrap", wrap], cwd)
    log(f"submitted analysis: job {ids['analyze']} (after {', '.join(ids[str(p)] for p in study.ranks)}); "
        f"it writes {out / 'results.csv'} and {out / 'scaling.png'}")
    study.slurm_job_ids = ids
    study.save()
    return ids
