"""One way to write a file: all of it under its final name, or nothing new there.

Every writer of the application goes through :func:`atomic_path` (or the
:func:`write_text`/:func:`write_json`/:func:`write_bytes` helpers on top of
it): the data go to a temporary file in the same directory (so the rename
never crosses file systems), which is flushed and ``fsync``-ed, renamed over
the final name with ``os.replace`` and the directory is ``fsync``-ed, so a
crash at any point leaves either the old file or the complete new one. On an
exception the temporary file is removed and the final name is untouched.

Nothing here talks to MPI: call it on the rank that writes. A file written by
several ranks in turn uses the two halves, :func:`reserve_tmp` and
:func:`commit_tmp` (or :func:`discard_tmp`), on the rank that owns the name.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import UserError


def fsync_path(path: str | os.PathLike, directory: bool = False) -> None:
    """``fsync`` a file (or a directory) by path.

    h5py closes its file itself (and HDF5 writes metadata while closing), so
    the data of such a file can only be made durable by re-opening it.
    """
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TargetError(UserError, OSError):
    """A name that cannot become a file (empty, a folder, in a missing folder): one sentence for the
    user, and still an ``OSError`` for the writers that report failed writes as such (checkpoints)."""


def check_target(path: str | os.PathLike) -> str:
    """``path`` as a str if it can name a file to write: not empty, not a folder, its folder exists.

    The one check of every output name (``data synth``, ``data import``, ``predict``...), run
    before anything is written; :class:`TargetError` in one sentence otherwise.
    """
    final = os.fspath(path)
    if not final:
        raise TargetError("--out is empty; give the name of the file to write")
    folder = os.path.dirname(os.path.abspath(final))
    if not os.path.isdir(folder):
        raise TargetError(f"cannot write {final}: the folder {folder} does not exist (create it first)")
    if os.path.isdir(final):
        raise TargetError(f"cannot write {final}: it is a folder; give a file name")
    return final


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)  # also a hard link or a symlink to the file
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def _checkpoints_folder(path: Path) -> Path | None:
    """The run's ``checkpoints/`` folder that holds ``path`` (at any depth), or None."""
    for folder in path.parents:
        if folder.name == "checkpoints" and ((folder.parent / "config.toml").is_file()
                                             or any(folder.glob("step-*.commit"))):
            return folder
    return None


def check_output(out: str, inputs) -> None:
    """``--out`` can name a file (:func:`check_target`) that is none of ``inputs`` (None entries
    skipped; the same file by any path or link) and lies outside every run's ``checkpoints/``: one
    sentence otherwise, before any work. The rule of every writer (imports, synth, predict). Not collective."""
    check_target(out)
    folder = _checkpoints_folder(Path(out).resolve())
    if folder is not None:
        raise UserError(f"--out {out} is inside {folder}, a run's checkpoints folder; choose a name outside it "
                        f"so no checkpoint is overwritten")
    for path in inputs:
        if path and _same(out, str(path)):
            raise UserError(f"--out {out} is also an input file; choose another name")


def reserve_tmp(path: str | os.PathLike) -> str:
    """A fresh temporary name next to ``path`` (nothing exists there yet).

    The first half of :func:`atomic_path`, for writers that span processes (one rank
    reserves the name, several write to it, one commits it): finish with
    :func:`commit_tmp` on success or :func:`discard_tmp` on failure. ``path`` must be
    able to name a file (:func:`check_target`: a :class:`TargetError` otherwise).
    """
    final = check_target(path)
    directory = os.path.dirname(os.path.abspath(final))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(final)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    os.unlink(tmp)  # mkstemp's file is 0600: the writer creates its own, with the usual umask
    return tmp


def commit_tmp(tmp: str, path: str | os.PathLike) -> None:
    """Make the written ``tmp`` the file ``path``, durably: fsync, rename, fsync the directory.

    The second half of :func:`atomic_path`. On an error ``tmp`` is removed and ``path``
    is left as it was.
    """
    final = os.fspath(path)
    try:
        fsync_path(tmp)
        os.replace(tmp, final)
    except BaseException:
        discard_tmp(tmp)
        raise
    fsync_path(os.path.dirname(os.path.abspath(final)), directory=True)


def discard_tmp(tmp: str) -> None:
    """Remove a reserved temporary file if it was created (a failed write)."""
    if os.path.lexists(tmp):
        os.unlink(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary path to write to; on success it becomes ``path``, durably.

    Parameters
    ----------
    path : str or PathLike
        The final name: a file name in an existing folder (:func:`check_target`).

    Yields
    ------
    str
        A fresh name in the same directory (nothing exists there yet), for
        writers that open files themselves (``h5py.File(tmp, "w")``). Close
        the file before the ``with`` block ends.

    Notes
    -----
    On any exception inside the block the temporary file is removed and the
    exception propagates; an existing file at ``path`` is left as it was.
    :func:`reserve_tmp` and :func:`commit_tmp` are its two halves.
    """
    tmp = reserve_tmp(path)
    try:
        yield tmp
    except BaseException:
        discard_tmp(tmp)
        raise
    commit_tmp(tmp, path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, indent: int | None = 2, **kwargs) -> Path:
    """Write ``obj`` as JSON (``indent`` 2 and a final newline by default) atomically; returns ``path``.

    The object is serialised before anything is written, so an object that is
    not JSON-serialisable leaves no file behind. ``kwargs`` go to ``json.dumps``.
    """
    text = json.dumps(obj, indent=indent, **kwargs)
    return write_text(path, text + "\n" if indent is not None else text)
