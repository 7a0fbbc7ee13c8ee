"""The run directory's rules: what ``--out`` may be, who may write it, what a resume may change.

* A fresh run needs ``--out`` absent or empty; an existing run directory (it has
  ``config.toml``) is continued with ``--resume auto``; any other existing
  directory is refused, so no run writes into a folder it did not make.
* One run at a time: rank 0 holds ``OUT/.lock`` with ``fcntl.flock`` for the whole
  run. The kernel drops the lock when the process ends, however it ends (a killed
  or OOM-killed run leaves the file, never a stuck lock). flock is honoured across
  nodes on NFSv4 (Linux maps it to a POSIX lock), GPFS and Lustre mounted with
  ``-o flock``; where the file system refuses locks (Lustre ``noflock``), the run
  says so once and goes on unprotected.
* Nothing is written before every check has passed: a start that fails removes the
  lock file and the folders it created, so it leaves nothing behind.
* ``--resume auto`` uses the run's own ``config.toml``; a job file or ``--set`` may
  change only :data:`~lepton_hpc.config.RESUME_MUTABLE` (what cannot alter the result so
  far), anything else is refused in one sentence.

Nothing here talks to MPI: rank 0 calls it through :func:`lepton_hpc.comm.on_root`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
from pathlib import Path

from ..errors import UserError

LOCK_NAME = ".lock"
CONFIG_NAME = "config.toml"
#: what a launcher (lepton_hpc.scaling) writes into a run directory before the run starts: a
#: directory holding only these still counts as empty
LAUNCHER_FILES = ("launch.log", "launch.json")
_NAME = re.compile(r"^# resolved config of job ['\"](.*?)['\"](?: \(model\.kind = .*\))?\s*$", re.M)
#: flock errors that mean "this file system does not do locks", not "someone holds it"
_NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}


def kind(out: Path) -> str:
    """``absent``, ``empty`` (nothing but a stale lock file or the launcher's files), ``run`` (has
    config.toml) or ``other``."""
    if not out.exists():
        return "absent"
    if not out.is_dir():
        return "other"
    names = {p.name for p in out.iterdir()}
    if names <= {LOCK_NAME, *LAUNCHER_FILES}:
        return "empty"
    return "run" if CONFIG_NAME in names else "other"


def check(out: Path, resume: str | None, has_checkpoints: bool) -> None:
    """The rules for ``--out`` (see the module doc); a UserError in one sentence."""
    what = kind(out)
    if what == "other":
        raise UserError(f"--out {out} exists and is not a run directory (no {CONFIG_NAME}); choose a new "
                        f"or empty --out so nothing of yours is overwritten")
    if resume is None and has_checkpoints:
        raise UserError(f"run directory {out} already holds checkpoints; pass --resume auto to continue it "
                        f"or choose a new --out")
    if resume is None and what == "run":
        raise UserError(f"run directory {out} already holds a run ({CONFIG_NAME}, no checkpoint); pass "
                        f"--resume auto to start it again or choose a new --out")


class Lock:
    """``OUT/.lock`` held with flock by rank 0 for the run's lifetime (see the module doc).

    :meth:`release` with ``clean=True`` (a start that failed) removes the lock file and
    the folders this run created, so nothing is left behind.
    """

    def __init__(self, out: Path, warn=print):
        self.out, self.path = Path(out), Path(out) / LOCK_NAME
        self.created = _missing_parents(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.made_file = not self.path.exists()  # a failed start removes only what it made
        self.fd = None
        for _ in range(5):  # the file may be replaced between open and flock: lock the one on disk
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read(fd)
                os.close(fd)
                if exc.errno in _NO_LOCKS:
                    warn(f"warning: the file system of {self.out} does not support file locks ({os.strerror(exc.errno)}); "
                         f"nothing stops a second run from writing the same --out")
                    return
                self.release(clean=True, unlink=False)
                raise UserError(f"run directory {self.out} is in use by another run ({holder or 'unknown holder'} "
                                f"holds {self.path}); wait for it to end or choose another --out") from None
            if _same_file(fd, self.path):
                self.fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
                return
            os.close(fd)
        raise UserError(f"could not lock {self.path}: it keeps being replaced; is another run starting there?")

    def release(self, clean: bool = False, unlink: bool = True) -> None:
        """Give the lock up; ``clean``: also remove the lock file and the folders this run made."""
        if clean and unlink and self.made_file:
            try:
                self.path.unlink()  # while still holding it: a waiting run sees the file is gone
            except OSError:
                pass
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if clean:
            for folder in self.created:
                try:
                    folder.rmdir()  # only if empty
                except OSError:
                    break


def _missing_parents(out: Path) -> list[Path]:
    """The folders ``mkdir -p out`` would create, deepest first."""
    missing, p = [], out.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    return missing


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""


# -- --resume auto: the run's own config ------------------------------------------------------

def resume_config(out: Path, job: str | None, overrides: list[str], how: str = "--resume auto"):
    """The config of ``--resume auto`` (or ``how``) on ``out``: its config.toml, with what the job file and
    ``--set`` change (only :data:`RESUME_MUTABLE` keys; a UserError naming the first other
    one). None when ``out`` holds no config.toml (the run starts from step 0)."""
    from ..config import load

    path = out / CONFIG_NAME
    if not path.is_file():
        return None
    found = _NAME.search(path.read_text())
    name = found.group(1) if found else out.name
    saved = load(str(path), relative_to=Path.cwd())
    if job is not None:
        wanted, where = load(job, overrides), f"the job file {job}" + (" and --set" if overrides else "")
    else:
        wanted, where = load(str(path), overrides, relative_to=Path.cwd()), "--set"
    return _continued(saved, wanted, name, where, f"{how} continues {out} with its own {CONFIG_NAME}",
                      "start a fresh --out")


def checkpoint_config(checkpoint: str, overrides: list[str]):
    """The config of ``--resume CHECKPOINT`` without a job file: the one the checkpoint was
    written with (its ``config`` attribute), with what ``--set`` changes (only
    :data:`RESUME_MUTABLE` keys, as for ``--resume auto``)."""
    from ..checkpoint import step_attrs
    from ..config import load_text

    text = step_attrs(Path(checkpoint)).get("config")
    if not isinstance(text, str):
        raise UserError(f"checkpoint {checkpoint} carries no run config; give the job file it was trained with")
    found = _NAME.search(text)
    name = found.group(1) if found else "run"
    saved = load_text(text, name, f"the run config in {checkpoint}")
    wanted = load_text(text, name, f"the run config in {checkpoint}", overrides)
    return _continued(saved, wanted, name, "--set", f"--resume {checkpoint} continues with the config it was "
                      f"written with", "give a job file to branch with other settings")


def _continued(saved, wanted, name: str, where: str, what: str, instead: str):
    """``saved`` with the :data:`RESUME_MUTABLE` keys that ``wanted`` changes; a UserError for another key."""
    from ..config import RESUME_MUTABLE, build

    wanted_d, saved_d = wanted.to_dict(), saved.to_dict()
    changed = [(s, k) for s in saved_d for k in saved_d[s] if saved_d[s][k] != wanted_d[s][k]]
    bad = [sk for sk in changed if f"{sk[0]}.{sk[1]}" not in RESUME_MUTABLE]
    if bad:
        s, k = bad[0]
        raise UserError(f"{what}, where {s}.{k} = {saved_d[s][k]!r}, but {where} asks for {wanted_d[s][k]!r}, "
                        f"which would change the result so far; on resume only {', '.join(RESUME_MUTABLE)} may "
                        f"change ({instead} to change {s}.{k})")
    merged = {s: {**saved_d[s], **{k: wanted_d[s][k] for (s2, k) in changed if s2 == s}} for s in saved_d}
    return build(merged, name)
