"""Checkpoints that own their format: named parts, replicated or row-sharded, and a commit marker.

A problem declares its state as named parts (:class:`Part`): a replicated array
(the GLM weights, V, optimizer moments of replicated parameters) or this rank's
rows of a row-sharded one (the recommender's U and its optimizer moments). One
step on disk::

    checkpoints/step-NNNNNNNN.h5                 replicated parts and the run's attributes (rank 0)
    checkpoints/step-NNNNNNNN.shards/rank-RRRRR.h5   rows [lo, hi) of every sharded part (each owner)
    checkpoints/step-NNNNNNNN.commit             the commit marker (JSON): every file's sha256 and
                                                 where each sharded part's rows are

Replicated parts are written once, by rank 0; sharded parts by their owners in
parallel, so nothing is gathered to one rank. Every file goes through the atomic
writer (tmp → fsync → rename). The marker is written last, by rank 0, after every
rank has reported its file: a step without a marker, or whose files fail their
checksums, does not exist. Loading reads each rank's own rows at any rank count.
The GLM contract stays: ``step-NNNNNNNN.h5`` holds ``/model/w`` (and ``/model/b``).

Everything here is collective over ``comm`` except :func:`list_steps`,
:func:`open_local`, :func:`latest_local` and :class:`Snapshot`; MPI is reached only
through :mod:`lepton_hpc.comm`, imported inside the collective functions, so
reading a checkpoint in one process (``lepton_hpc.load``) never imports mpi4py.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from .data.atomic import atomic_path, write_json
from .errors import UserError

MARKER = re.compile(r"^step-(\d{8})\.commit$")


@dataclass
class Part:
    """One named piece of state.

    ``rows`` is None for a replicated array (identical on every rank), or
    ``(lo, hi, n_rows)`` when ``array`` holds rows ``[lo, hi)`` of an
    ``n_rows``-row array sharded over the ranks.
    """

    array: np.ndarray
    rows: tuple[int, int, int] | None = None


def main_file(directory: Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.h5"


def marker_file(directory: Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.commit"


def shard_dir(directory: Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.shards"


def list_steps(directory: Path) -> list[int]:
    """Steps with a commit marker in ``directory``, oldest first (not collective)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for m in map(MARKER.match, (p.name for p in directory.iterdir())) if m)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _write_h5(path: Path, arrays: dict[str, np.ndarray], attrs: dict) -> dict:
    """Write datasets and attributes atomically; the file's record for the marker."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, arr in arrays.items():
                f.create_dataset(name, data=arr)
            for key, value in attrs.items():
                group, _, name = key.rpartition("/")  # "optimizer/t": attribute t of group /optimizer
                (f.require_group(group) if group else f).attrs[name] = value
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


# -- saving ------------------------------------------------------------------------------

def save(comm, directory: Path, step: int, parts: dict[str, Part], attrs: dict, keep: int) -> Path:
    """Write one step and commit it; prune to the newest ``keep``. Collective over ``comm``.

    ``attrs`` (JSON-able values) land as attributes of the main file. An
    ``OSError`` on any rank becomes the same error on every rank, and the step
    is left uncommitted.
    """
    from . import comm as C

    directory = Path(directory)
    sharded = {k: p for k, p in parts.items() if p.rows is not None}
    mine = None
    try:
        mine = _write_own_files(comm.rank, directory, step, parts, sharded, attrs)
    except OSError as exc:
        mine = {"error": exc}
    reports = C.gather(comm, mine)
    message = None
    if comm.rank == 0:
        errors = [r["error"] for r in reports if "error" in r]
        failed = errors[0] if errors else None
        if failed is None:
            try:
                _commit(directory, step, reports, sharded, keep)
            except OSError as exc:
                failed = exc
        if failed is not None:
            message = _failed_save(directory, step, failed)
    C.check(comm, message)
    return main_file(directory, step)


def os_reason(exc: OSError) -> str:
    """The plain reason of an OSError ("No space left on device"), without h5py's dump."""
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _failed_save(directory: Path, step: int, exc: OSError) -> str:
    """Rank 0: drop the uncommitted step's files (space back) and say what is left intact."""
    if step not in list_steps(directory):
        try:
            remove_step(directory, step)
        except OSError:
            pass
    kept = list_steps(directory)
    intact = (f"the committed checkpoints (steps {', '.join(map(str, kept))}) are intact and --resume auto "
              f"continues from step {kept[-1]}" if kept else "no earlier checkpoint was written")
    hint = "; free space there (or lower checkpoint.keep) and" if exc.errno == errno.ENOSPC else "; fix it and"
    return (f"could not write checkpoint step {step} to {directory}: {os_reason(exc)}{hint} run again: "
            f"{intact}")


def _write_own_files(rank: int, directory: Path, step: int, parts: dict, sharded: dict, attrs: dict) -> dict:
    files, pieces = {}, {}
    if sharded:
        lo, hi, _ = next(iter(sharded.values())).rows
        if any(p.rows[1] > p.rows[0] for p in sharded.values()):  # e.g. a rank with items but no users
            sdir = shard_dir(directory, step)
            sdir.mkdir(parents=True, exist_ok=True)
            rel = f"{sdir.name}/rank-{rank:05d}.h5"
            files[rel] = _write_h5(directory / rel, {k: p.array for k, p in sharded.items()},
                                   {"step": step, "row_lo": lo, "row_hi": hi})
            pieces = {k: [rel, *p.rows[:2]] for k, p in sharded.items()}
    if rank == 0:
        directory.mkdir(parents=True, exist_ok=True)
        replicated = {k: p.array for k, p in parts.items() if p.rows is None}
        full = {**attrs, "step": step, "lepton_hpc_version": __version__}
        files[main_file(directory, step).name] = _write_h5(main_file(directory, step), replicated, full)
    return {"files": files, "pieces": pieces}


def _commit(directory: Path, step: int, reports: list[dict], sharded: dict, keep: int) -> None:
    """Rank 0: the marker, written last; then prune old steps (marker first)."""
    files = {name: rec for r in reports for name, rec in r["files"].items()}
    layout = {}
    for name, part in sharded.items():
        arr = part.array
        layout[name] = {"n_rows": part.rows[2], "row_shape": list(arr.shape[1:]), "dtype": arr.dtype.str,
                        "pieces": sorted((r["pieces"][name] for r in reports if name in r["pieces"]),
                                         key=lambda p: p[1])}
    write_json(marker_file(directory, step), {"step": step, "files": files, "sharded": layout})
    for old in list_steps(directory)[:-keep]:
        remove_step(directory, old)


def remove_step(directory: Path, step: int) -> None:
    """Delete a step: the marker first, so a crash halfway leaves no committed-looking step."""
    marker_file(directory, step).unlink(missing_ok=True)
    main_file(directory, step).unlink(missing_ok=True)
    shutil.rmtree(shard_dir(directory, step), ignore_errors=True)


# -- loading -----------------------------------------------------------------------------

@dataclass
class Snapshot:
    """A committed, verified step; each rank reads what it needs from it."""

    directory: Path
    step: int
    marker: dict
    attrs: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return main_file(self.directory, self.step)

    def replicated(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Every replicated dataset under ``prefix`` (e.g. ``"model/"``), by full name."""
        out = {}
        with h5py.File(self.path, "r") as f:
            f.visititems(lambda n, o: out.__setitem__(n, o[()])
                         if isinstance(o, h5py.Dataset) and n.startswith(prefix) else None)
        return out

    def group_attrs(self, group: str) -> dict:
        with h5py.File(self.path, "r") as f:
            return {k: _plain(v) for k, v in f[group].attrs.items()} if group in f else {}

    def shape(self, name: str) -> tuple:
        """Global shape of a part, replicated or sharded."""
        if name in self.marker["sharded"]:
            spec = self.marker["sharded"][name]
            return (spec["n_rows"], *spec["row_shape"])
        with h5py.File(self.path, "r") as f:
            return f[name].shape if name in f else None

    def rows(self, name: str, lo: int, hi: int) -> np.ndarray:
        """Rows ``[lo, hi)`` of part ``name``, from whichever files hold them (any rank count); a
        replicated part is read from the main file (V is replicated or item-sharded)."""
        if name not in self.marker["sharded"]:
            with h5py.File(self.path, "r") as f:
                return f[name][lo:hi]
        spec = self.marker["sharded"][name]
        out = np.empty((hi - lo, *spec["row_shape"]), dtype=np.dtype(spec["dtype"]))
        for rel, a, b in spec["pieces"]:
            s, e = max(a, lo), min(b, hi)
            if s >= e:
                continue
            with h5py.File(self.directory / rel, "r") as f:
                f[name].read_direct(out, np.s_[s - a:e - a], np.s_[s - lo:e - lo])
        return out


def verify(directory: Path, marker: dict, rank: int = 0, size: int = 1) -> None:
    """Check the share ``rank`` of ``size`` of a step's files (dealt round-robin); UserError on a bad one.

    Not collective: with the defaults, one process checks every file.
    """
    names = sorted(marker["files"])
    for name in names[rank::size]:
        path = directory / name
        rec = marker["files"][name]
        if not path.is_file():
            raise UserError(f"checkpoint file {path} is missing")
        if sha256_file(path) != rec["sha256"]:
            raise UserError(f"checkpoint file {path} fails its checksum (corrupt or torn)")
    covered = {n: sum(b - a for _, a, b in s["pieces"]) for n, s in marker["sharded"].items()}
    for name, spec in marker["sharded"].items():
        if covered[name] != spec["n_rows"]:
            raise UserError(f"checkpoint step {marker['step']} holds {covered[name]} of {spec['n_rows']} "
                            f"rows of {name}")


def _read_marker(directory: Path, step: int) -> dict:
    path = marker_file(directory, step)
    try:
        marker = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"checkpoint marker {path} is unreadable ({exc})") from None
    if marker.get("step") != step or "files" not in marker:
        raise UserError(f"checkpoint marker {path} is malformed")
    return marker


def _plain(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _attrs(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: _plain(v) for k, v in f.attrs.items()}


def open_step(comm, directory: Path, step: int) -> Snapshot:
    """Verify one committed step and open it (UserError on every rank if it is bad). Collective."""
    from . import comm as C

    directory = Path(directory)
    marker = C.on_root(comm, _read_marker, directory, step)
    C.agree(comm, verify, directory, marker, comm.rank, comm.size)
    return Snapshot(directory, step, marker, C.on_root(comm, _attrs, main_file(directory, step)))


def open_local_path(path: Path) -> Snapshot:
    """:func:`open_path` in one process, without MPI."""
    path = Path(path)
    return open_local(path.parent, committed_step(path))


def open_local(directory: Path, step: int) -> Snapshot:
    """:func:`open_step` in one process, without MPI (loading a model in Python, tests)."""
    directory = Path(directory)
    marker = _read_marker(directory, step)
    verify(directory, marker)
    return Snapshot(directory, step, marker, _attrs(main_file(directory, step)))


def latest_local(directory: Path, warn=print) -> Snapshot | None:
    """:func:`latest` in one process, without MPI."""
    steps = list_steps(directory)
    for step in reversed(steps):
        try:
            return open_local(directory, step)
        except UserError as exc:
            warn(f"warning: skipping checkpoint step {step}: {exc}")
    if steps:
        raise UserError(f"none of the {len(steps)} checkpoints in {directory} is valid")
    return None


STEP_FILE = re.compile(r"^step-(\d{8})\.h5$")


def committed_step(path: Path) -> int:
    """The step of ``checkpoints/step-NNNNNNNN.h5`` if its commit marker exists; UserError otherwise,
    naming the committed steps beside it (not collective)."""
    path = Path(path)
    m = STEP_FILE.match(path.name)
    if m and marker_file(path.parent, int(m.group(1))).is_file():
        return int(m.group(1))
    steps = [main_file(path.parent, s).name for s in list_steps(path.parent)]
    have = f"committed there: {', '.join(steps)}" if steps else "no committed step there"
    raise UserError(f"{path} is not a committed checkpoint ({have}); pass a checkpoints/step-NNNNNNNN.h5 "
                    f"with its step-NNNNNNNN.commit marker (a finished write), or the run directory")


def step_attrs(path: Path) -> dict:
    """The attributes of the committed step whose main file is ``path`` (its ``config``,
    fingerprint...), without verifying its files (not collective)."""
    path = Path(path)
    committed_step(path)
    try:
        return _attrs(path)
    except OSError as exc:
        raise UserError(f"checkpoint {path} cannot be read ({exc})") from None


def open_path(comm, path: Path) -> Snapshot:
    """The step whose main file is ``path`` (``--resume PATH``, ``--checkpoint PATH``). Collective."""
    from . import comm as C

    path = Path(path)
    return open_step(comm, path.parent, C.on_root(comm, committed_step, path))


def latest(comm, directory: Path, warn=print) -> Snapshot | None:
    """The newest committed step that passes its checksums. Collective.

    None when there is no committed step; a UserError when there are some but
    none is valid (starting over would silently discard the run).
    """
    from . import comm as C

    steps = C.on_root(comm, list_steps, Path(directory))
    for step in reversed(steps):
        try:
            return open_step(comm, directory, step)
        except C.JobError as exc:
            warn(f"warning: skipping checkpoint step {step}: {exc}")
    if steps:
        raise C.JobError(f"none of the {len(steps)} checkpoints in {directory} is valid; resume from a good "
                         f"checkpoint file with --resume PATH or start a fresh --out")
    return None


# -- optimizer state as parts ----------------------------------------------------------------

def optimizer_parts(prefix: str, opt, rows: tuple[int, int, int] | None = None, row_width: int = 0):
    """An optimizer's state as parts (its arrays) and attributes of group ``/prefix`` (its scalars).

    With ``rows``, the accumulators are the flattened local block of a row-sharded
    parameter: they are stored as sharded parts of ``row_width`` columns.
    """
    parts, attrs = {}, {}
    for key, value in opt.state_dict().items():
        if key in opt.accumulator_names:
            arr = value.reshape(-1, row_width) if rows is not None else value
            parts[f"{prefix}/{key}"] = Part(arr, rows)
        else:
            attrs[f"{prefix}/{key}"] = opt.name if key == "optimizer" else value
    return parts, attrs


def optimizer_state(snapshot: Snapshot, prefix: str, opt, rows: tuple[int, int] | None = None) -> dict:
    """The dict for ``opt.load_state_dict`` from :func:`optimizer_parts`' output."""
    state = snapshot.group_attrs(prefix)
    if rows is None:
        state.update({name.split("/", 1)[1]: a for name, a in snapshot.replicated(prefix + "/").items()})
    else:
        for name in snapshot.marker["sharded"]:
            if name.startswith(prefix + "/"):
                state[name.split("/", 1)[1]] = snapshot.rows(name, *rows).reshape(-1)
    return state
