"""The one atomic writer: tmp file beside the target → fsync → rename → fsync the directory.

A crash at any instant leaves either the old file or the new one under the final
name, never a torn one; on an exception the temporary file is removed.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path


def fsync_path(path, directory: bool = False) -> None:
    """``fsync`` a file (or a directory) by path."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    For writers that open the file themselves (``h5py.File(tmp, "w")``): close it
    inside the ``with`` block. HDF5 writes metadata when it closes a file, so the
    file is re-opened and fsynced by descriptor here, after it is closed.
    """
    final = Path(path)
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(final.parent if str(final.parent) else ".", directory=True)


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, obj, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent) + "\n")
