"""What a data file is when it is not HDF5, and the command that converts it.

:func:`describe_non_hdf5` reads a file's first bytes (never the whole file) and names
CSV/TSV, Parquet (``PAR1``), NumPy ``.npy`` (``\\x93NUMPY``), JSON Lines and gzip, and an
HDF5 file shorter than its superblock records (cut short), so that h5py's "file signature not
found" or "truncated file" never reaches the user: every reader of
``data.path`` (training, ``data info``, ``evaluate``, ``predict``) asks here first.
No MPI, no h5py: the caller agrees on the sentence across ranks.
"""

from __future__ import annotations

import os

#: HDF5's signature; it sits at byte 0, 512, 1024, 2048, ... (a user block may precede it)
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
HEAD_BYTES = 4096


def _cmd(path: str) -> str:
    """The --out to suggest: ``STEM.h5`` beside ``path``, or ``STEM.imported.h5`` when that is
    ``path`` itself (a CSV named ``plain.h5``: import refuses --out equal to its input)."""
    stem = os.path.splitext(os.path.basename(path))[0] or "data"
    out = os.path.join(os.path.dirname(path), f"{stem}.h5")
    if os.path.abspath(out) == os.path.abspath(path):
        out = os.path.join(os.path.dirname(path), f"{stem}.imported.h5")
    return out


def hdf5_offset(head: bytes, path: str) -> int | None:
    """Where HDF5's signature is: offset 0 or a power-of-two offset >= 512 (checked up to 1 GiB)."""
    if head.startswith(HDF5_MAGIC):
        return 0
    size, offset = os.path.getsize(path), 512
    with open(path, "rb") as fh:
        while offset + len(HDF5_MAGIC) <= min(size, 1 << 30):
            fh.seek(offset)
            if fh.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
                return offset
            offset *= 2
    return None


def is_hdf5(head: bytes, path: str) -> bool:
    """HDF5's signature at offset 0 or at a power-of-two offset >= 512 (checked up to 1 GiB)."""
    return hdf5_offset(head, path) is not None


def hdf5_stored_eof(path: str, offset: int) -> int | None:
    """The file size the HDF5 superblock at ``offset`` records (its end-of-file address, which
    HDF5 checks against the file's size on open); None for a superblock this does not parse."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        sb = fh.read(96)
    if len(sb) < 16:
        return None
    version = sb[8]
    if version in (0, 1):
        n_off, at = sb[13], 24 + (4 if version == 1 else 0)  # base, free-space, EOF addresses follow
    elif version in (2, 3):
        n_off, at = sb[9], 12  # base, superblock-extension, EOF addresses follow
    else:
        return None
    at += 2 * n_off
    if n_off not in (2, 4, 8) or len(sb) < at + n_off:
        return None
    return int.from_bytes(sb[at:at + n_off], "little")


def truncated_hdf5(path: str) -> str | None:
    """The sentence for an HDF5 file shorter than its superblock says (a partial copy or an
    interrupted write); None otherwise."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
        offset = hdf5_offset(head, path)
        stored = None if offset is None else hdf5_stored_eof(path, offset)
        size = os.path.getsize(path)
    except OSError:
        return None
    if stored is None or size >= stored:
        return None
    return (f"{path} is truncated or corrupt (an HDF5 file cut short: {size} of its {stored} bytes are there); "
            f"re-create it, e.g. copy it again or re-run the import or synth command that made it")


def _text_kind(head: bytes) -> str | None:
    """csv, tsv or jsonl from the first lines of a text file; None when it is not text."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end of the head
        if exc.start < len(head) - 4:
            return None
        text = head[:exc.start].decode("utf-8")
    if "\x00" in text:
        return None
    lines = [ln for ln in text.lstrip("\ufeff").splitlines()[:5] if ln.strip()]
    if not lines:
        return None
    if all(ln.lstrip().startswith("{") for ln in lines):
        return "jsonl"
    if "\t" in lines[0]:
        return "tsv"
    return "csv"


def sniff_kind(path: str) -> str | None:
    """What ``path`` holds, from its first bytes: hdf5, parquet, npy, gzip, zip, jsonl, csv, tsv or
    binary; None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
        if is_hdf5(head, path):
            return "hdf5"
    except OSError:
        return None
    for magic, kind in ((b"PAR1", "parquet"), (b"\x93NUMPY", "npy"), (b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip")):
        if head.startswith(magic):
            return kind
    return _text_kind(head) or "binary"


_NAMES = {"hdf5": "an HDF5 file", "parquet": "a Parquet file", "npy": "a NumPy .npy array",
          "gzip": "a gzip-compressed file", "zip": "a zip archive (.npz or similar)",
          "jsonl": "a JSON Lines text file", "csv": "a CSV text file", "tsv": "a TSV text file"}
#: what each import reads; a file of another recognised kind is refused by name (binary text that is
#: not UTF-8 is left to the reader, which names the line)
_READS = {"csv": ("csv", "tsv", "jsonl", "binary"), "text": ("csv", "tsv", "jsonl", "binary"),
          "parquet": ("parquet",), "npy": ("npy",)}


def wrong_input(path: str, source: str) -> str | None:
    """The sentence for an input of ``import source`` (csv, text, parquet, npy) that is another
    kind of file, with what to do instead; None when it is the kind that import reads (or unreadable)."""
    kind = sniff_kind(os.fspath(path))
    if kind is None or kind in _READS.get(source, (kind,)):
        return None
    run, out = "python -m lepton_hpc.data", _cmd(os.fspath(path))
    what = f"{path} is {_NAMES.get(kind, 'not a text file')}, not the {source} input `import {source}` reads"
    if kind == "gzip":
        return f"{what}: decompress it first (gunzip -k {path}) and import the file it holds"
    if kind == "zip":
        return f"{what}: unpack it first and import the files it holds"
    if kind == "hdf5":
        return f"{what}: it needs no import; give it as data.path (`{run} info {path}` shows what it holds)"
    if kind == "parquet":
        return f"{what}: import it with `{run} import parquet {path} --target COLUMN --out {out}`"
    if kind == "npy":
        return f"{what}: import it with `{run} import npy X.npy y.npy --out {out}`"
    if kind == "jsonl":
        return (f"{what}: import it with `{run} import text {path} --text-column FIELD --label-column FIELD "
                f"--out {out}`")
    if kind in ("csv", "tsv"):
        delim = " --delimiter tab" if kind == "tsv" else ""
        return f"{what}: import it with `{run} import csv {path} --target COLUMN{delim} --out {out}`"
    return f"{what}: save the arrays with numpy.save" if source == "npy" else what


def describe_non_hdf5(path: str) -> str | None:
    """A sentence naming what ``path`` is and the import command to run; None for HDF5.

    Also None when the file cannot be read (the caller's own open reports that). An
    unrecognised binary file is named as not HDF5, with the import commands there are.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
        if is_hdf5(head, path):
            return truncated_hdf5(path)
    except OSError:
        return None
    out = _cmd(path)
    run = "python -m lepton_hpc.data import"
    if head.startswith(b"PAR1"):
        return f"{path} is a Parquet file, not HDF5: convert it with `{run} parquet {path} --target COLUMN --out {out}`"
    if head.startswith(b"\x93NUMPY"):
        return (f"{path} is a NumPy .npy array, not HDF5: convert the feature and target arrays with "
                f"`{run} npy X.npy y.npy --out {out}`")
    if head.startswith(b"\x1f\x8b"):
        return (f"{path} is a gzip-compressed file, not HDF5: decompress it (gunzip {path}) and import what "
                f"it holds, e.g. `{run} csv FILE.csv --target COLUMN --out {out}`")
    if head.startswith(b"PK\x03\x04"):
        return (f"{path} is a zip archive (.npz or similar), not HDF5: unpack it and import the arrays with "
                f"`{run} npy X.npy y.npy --out {out}`")
    kind = _text_kind(head)
    if kind == "jsonl":
        return (f"{path} is a JSON Lines text file, not HDF5: convert it with "
                f"`{run} text {path} --text-column FIELD --label-column FIELD --out {out}`")
    if kind in ("csv", "tsv"):
        delim = " --delimiter $'\\t'" if kind == "tsv" else ""
        return (f"{path} is a {kind.upper()} text file, not HDF5: convert it with "
                f"`{run} csv {path} --target COLUMN{delim} --out {out}`")
    return (f"{path} is not an HDF5 file (no HDF5 signature): make one with `{run} csv FILE.csv --target "
            f"COLUMN --out {out}` or `{run} npy X.npy y.npy --out {out}`")
