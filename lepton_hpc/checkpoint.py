"""Atomic HDF5 checkpoints with a checksum, kept newest-K, resumable on any rank count.

Layout of ``checkpoints/step-NNNNNNNN.h5``::

    /model/w, /model/b           parameters (b only with an intercept)
    /optimizer/<name>            optimizer arrays; scalars as attributes of /optimizer
    /rng                         attribute ``state``: JSON of the trainer's bit generator
    attrs: step, world_size, config (TOML), data_fingerprint, optimizer_class,
           lepton_hpc version, checksum (sha256 of everything above)

The commit point is the rename: data goes to a hidden temporary file, which
is fsynced, renamed into place and the directory fsynced. A file that is
missing its checksum or fails it does not count as a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from .errors import UserError

PATTERN = re.compile(r"^step-(\d{8})\.h5$")


@dataclass
class State:
    """Everything a checkpoint holds."""

    step: int
    arrays: dict[str, np.ndarray]                    # "model/w", "model/b", ...
    optimizer: dict = field(default_factory=dict)   # state_dict(): arrays and scalars
    rng: str = ""                                    # JSON bit-generator state
    attrs: dict = field(default_factory=dict)        # config, data_fingerprint, world_size, ...


def path_for(directory: Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.h5"


def _digest(f: h5py.File) -> str:
    """sha256 over every dataset's name and bytes and every attribute but the checksum."""
    h = hashlib.sha256()

    def visit(name, obj):
        h.update(name.encode())
        for key in sorted(obj.attrs):
            if key != "checksum":
                h.update(key.encode())
                h.update(repr(_plain(obj.attrs[key])).encode())
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            h.update(str(data.dtype).encode() + str(data.shape).encode())
            h.update(np.ascontiguousarray(data).tobytes())

    visit("/", f)
    f.visititems(visit)
    return h.hexdigest()


def _plain(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(directory: Path, state: State, keep: int) -> Path:
    """Write ``state`` atomically and prune to the newest ``keep``. Not collective.

    Call on one rank only (the parameters are replicated).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = path_for(directory, state.step)
    tmp = directory / f".{final.name}.tmp"
    with h5py.File(tmp, "w") as f:
        for name, arr in state.arrays.items():
            f.create_dataset(name, data=arr)
        opt = f.create_group("optimizer")
        for key, value in state.optimizer.items():
            if isinstance(value, np.ndarray):
                opt.create_dataset(key, data=value)
            else:
                opt.attrs[key] = value
        f.create_group("rng").attrs["state"] = state.rng
        for key, value in state.attrs.items():
            f.attrs[key] = value
        f.attrs["step"] = state.step
        f.attrs["lepton_hpc_version"] = __version__
        f.flush()
        f.attrs["checksum"] = _digest(f)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(directory)
    for old in list_steps(directory)[:-keep]:
        path_for(directory, old).unlink(missing_ok=True)
    return final


def list_steps(directory: Path) -> list[int]:
    """Steps of committed checkpoint files in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for m in map(PATTERN.match, os.listdir(directory)) if m)


def load(path: Path) -> State:
    """Read and validate one checkpoint. Raises ValueError if corrupt."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            stored = f.attrs.get("checksum")
            if stored is None:
                raise UserError(f"checkpoint {path} has no checksum (an unfinished write); "
                                 f"resume from another checkpoint")
            if _plain(stored) != _digest(f):
                raise UserError(f"checkpoint {path} fails its checksum (corrupt); resume from another "
                                 f"checkpoint or start a fresh --out")
            arrays = {}
            f["model"].visititems(lambda n, o: arrays.__setitem__(f"model/{n}", o[()])
                                  if isinstance(o, h5py.Dataset) else None)
            opt = {k: _plain(v) for k, v in f["optimizer"].attrs.items()}
            opt.update({k: f["optimizer"][k][()] for k in f["optimizer"]})
            attrs = {k: _plain(v) for k, v in f.attrs.items() if k != "checksum"}
            return State(step=int(attrs.pop("step")), arrays=arrays, optimizer=opt,
                         rng=_plain(f["rng"].attrs["state"]), attrs=attrs)
    except ValueError:
        raise
    except (OSError, KeyError) as exc:
        raise UserError(f"checkpoint {path} is unreadable or incomplete ({exc}); resume from another "
                         f"checkpoint or start a fresh --out") from None


def latest_valid(directory: Path, warn=print) -> State | None:
    """The newest checkpoint in ``directory`` that passes its checksum.

    None when there is no checkpoint at all; ValueError when there are some
    but none is valid (starting over would silently discard the run).
    """
    steps = list_steps(directory)
    for step in reversed(steps):
        try:
            return load(path_for(directory, step))
        except ValueError as exc:
            warn(f"warning: skipping {exc}")
    if steps:
        raise UserError(f"none of the {len(steps)} checkpoints in {directory} is valid; resume from a "
                         f"good checkpoint file with --resume PATH or start a fresh --out")
    return None


def rng_state_json(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def restore_rng(text: str) -> np.random.Generator:
    state = json.loads(text)
    bitgen = getattr(np.random, state["bit_generator"])()
    bitgen.state = state
    return np.random.Generator(bitgen)
