"""Datasets whose file space is allocated when they are created, so that ranks writing their rows
in turn (:func:`lepton_hpc.data.ordered_write.write_in_rank_order`) give the same bytes whatever the
rank count: every chunk's address is fixed by the creating rank, before any row is written.

No fill value is written (every element is written later), no timestamps are kept, and the file
uses :data:`lepton_hpc.data.classification.LIBVER`: the bytes depend only on the shapes, the
attrs and the values.
"""

from __future__ import annotations

import h5py
import numpy as np

from .classification import LIBVER

__all__ = ["LIBVER", "UTF8", "create_file", "early_dataset"]

UTF8 = h5py.string_dtype("utf-8")


def create_file(path: str) -> h5py.File:
    """A new HDF5 file at ``path`` (truncating), in the deterministic format."""
    return h5py.File(path, "w", libver=LIBVER)


def early_dataset(parent, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype) -> h5py.Dataset:
    """A chunked dataset with every chunk allocated now (``chunks`` clipped to at least 1)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    chunks = tuple(max(1, min(int(c), int(s))) if s else 1 for c, s in zip(chunks, shape))
    maxshape = tuple(None if s == 0 else s for s in shape)  # an empty dataset still has a chunk shape
    return parent.create_dataset(name, shape=shape, dtype=np.dtype(dtype), chunks=chunks, dcpl=dcpl,
                                 maxshape=maxshape, fill_time="never", track_times=False)
