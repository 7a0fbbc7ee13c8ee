"""What a data file that is not HDF5 is, and which import command turns it into one.

:func:`describe_non_hdf5` looks at the first bytes only (Parquet's ``PAR1`` magic, JSON Lines'
``{``, delimited text) and returns one sentence for the user, or None for an HDF5 file (or
anything it cannot place). Used where a data file is opened (the shard reader, data info,
evaluate).
"""

from __future__ import annotations

import os

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_IMPORT = "mpirun -n N python -m lepton_hpc.data import"


def describe_non_hdf5(path: str) -> str | None:
    """One sentence naming the import command for ``path`` if it is Parquet, JSON Lines or CSV/TSV text."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    if head.startswith(HDF5_MAGIC) or not head:
        return None
    name = os.path.basename(path)
    if head.startswith(b"PAR1"):
        return (f"{path} is a Parquet file, not HDF5; convert it first: {_IMPORT} parquet {name} "
                f"--target COLUMN --out DATA.h5, then set data.path=DATA.h5")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not a multi-byte character cut at the end of the window
            return None
        text = head[:exc.start].decode("utf-8")
    first = text.lstrip("\ufeff").lstrip().split("\n", 1)[0]
    if first.startswith("{"):
        return (f"{path} looks like JSON Lines, not HDF5; for labelled text convert it with: {_IMPORT} text "
                f"{name} --text-column TEXT --label-column LABEL --out DATA.h5, then set data.path=DATA.h5")
    delimiter = "tab" if "\t" in first else "," if "," in first else ";" if ";" in first else None
    if delimiter is None:
        return None
    option = "" if delimiter == "," else f" --delimiter {delimiter!r}" if delimiter != "tab" else " --delimiter tab"
    return (f"{path} looks like delimited text (CSV), not HDF5; convert it first: {_IMPORT} csv {name}"
            f"{option} --target COLUMN --out DATA.h5 (or import text for documents), then set data.path=DATA.h5")
