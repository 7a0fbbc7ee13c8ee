"""Byte ranges ("blocks") of line-oriented text files, cut the same way whatever the rank count.

A file's data bytes (after its header line) are cut at nominal offsets ``data_start + k *
block_bytes``; each cut moves forward to the start of the next line (the byte after the first
newline at or after the offset), so a block holds whole lines. The blocks of every input file,
numbered in file order, are the logical chunks of an import: rank ``q`` parses the blocks
:class:`lepton_hpc.layout.Layout` gives it, and per-block results (row counts, sums) are
independent of the rank count. Every rank computes the same list with a few small reads near
each cut; nothing here communicates.

Limitation: a quoted field that holds a newline must not straddle a cut. Such CSV files are not
supported (the importers say so in their help); a parse error then names the line.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from dataclasses import dataclass

from ..errors import UserError
from .sniff import wrong_input

#: Nominal bytes per block (a few MiB: parsing buffers stay small, ranks get several blocks).
BLOCK_BYTES = 8 << 20
_SCAN = 1 << 16


@dataclass(frozen=True)
class Block:
    """Bytes ``[start, end)`` of ``paths[file]``; ``index`` counts blocks over all files."""

    index: int
    file: int
    path: str
    start: int
    end: int

    def read(self) -> bytes:
        with open(self.path, "rb") as fh:
            fh.seek(self.start)
            return fh.read(self.end - self.start)


def _next_line_start(fh, offset: int, size: int) -> int:
    """The first byte after the first newline at or after ``offset - 1`` (``size`` if none)."""
    pos = max(offset - 1, 0)
    fh.seek(pos)
    while pos < size:
        buf = fh.read(_SCAN)
        if not buf:
            break
        hit = buf.find(b"\n")
        if hit >= 0:
            return pos + hit + 1
        pos += len(buf)
    return size


def file_cuts(path: str, data_start: int, block_bytes: int) -> list[tuple[int, int]]:
    """The non-empty ``(start, end)`` byte ranges of ``path``'s data, in order."""
    size = os.path.getsize(path)
    starts = [data_start]
    with open(path, "rb") as fh:
        k = 1
        while data_start + k * block_bytes < size:
            starts.append(max(_next_line_start(fh, data_start + k * block_bytes, size), starts[-1]))
            k += 1
    ends = starts[1:] + [size]
    return [(a, b) for a, b in zip(starts, ends) if b > a]


def plan_blocks(paths: list[str], data_starts: list[int], block_bytes: int = BLOCK_BYTES) -> list[Block]:
    """Every block of every file, numbered in order (the same list on every rank)."""
    if block_bytes <= 0:
        raise UserError(f"--block-bytes must be > 0, got {block_bytes}")
    blocks: list[Block] = []
    for f, (path, start) in enumerate(zip(paths, data_starts)):
        for a, b in file_cuts(path, start, block_bytes):
            blocks.append(Block(len(blocks), f, path, a, b))
    return blocks


def check_inputs(paths: list[str], out: str, what: str) -> None:
    """Each input exists and is what the importer reads; ``out`` can name a new file that is none of them."""
    from .atomic import check_output

    if not paths:
        raise UserError(f"import {what} needs at least one input file")
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f"{what} file {path} does not exist")
        wrong = wrong_input(path, what.lower())
        if wrong is not None:
            raise UserError(wrong)
    check_output(out, paths)


def read_header(path: str, delimiter: str, header: bool) -> tuple[list[str], int]:
    """The column names of ``path`` and the byte offset where its data start.

    ``header`` False: the names are ``x0``, ``x1``, ... (as many as the first line has fields)
    and the data start at byte 0. A UTF-8 byte order mark is skipped.
    """
    with open(path, "rb") as fh:
        first = fh.readline()
        while header and first.strip() == b"" and first:
            first = fh.readline()  # blank lines before the header
        end = fh.tell()
    if not first.strip():
        raise UserError(f"{path} is empty; a header row with the column names is required" if header
                        else f"{path} is empty")
    bom = first.startswith(codecs.BOM_UTF8)
    try:
        text = first[len(codecs.BOM_UTF8) if bom else 0:].decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} line 1: not valid UTF-8 text") from None
    try:
        fields = next(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise UserError(f"{path} line 1: not readable as CSV ({exc})") from None
    if not header:
        return [f"x{j}" for j in range(len(fields))], len(codecs.BOM_UTF8) if bom else 0
    names = [h.strip() for h in fields]
    if all(_is_number(h) for h in names):
        raise UserError(f"{path} line 1: the first row holds only numbers; a header row with the column "
                        f"names is required (or give --header no)")
    seen = set()
    for name in names:
        if name in seen:
            raise UserError(f"{path} line 1: the column name {name!r} appears twice in the header")
        seen.add(name)
    return names, end


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def lines_before(counts: dict[int, int], blocks: list[Block], index: int) -> int:
    """Newlines in the blocks of ``blocks[index]``'s file before it (``counts``: block -> newlines)."""
    b = blocks[index]
    return sum(counts.get(k.index, 0) for k in blocks[:index] if k.file == b.file)


def header_lines(path: str, data_start: int) -> int:
    """Lines before the data of ``path`` (the header and blank lines before it)."""
    if data_start == 0:
        return 0
    with open(path, "rb") as fh:
        return fh.read(data_start).count(b"\n")
