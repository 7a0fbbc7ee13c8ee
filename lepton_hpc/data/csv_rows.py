"""Reading a CSV file's records for :func:`lepton_hpc.data.importers.import_csv`: UTF-8 lines,
the header row and the target column, numeric feature values; every problem is a
:class:`~lepton_hpc.errors.UserError` that names the file and the line. Nothing here writes.
"""

from __future__ import annotations

import csv
import math

import numpy as np

from ..errors import UserError


def as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _utf8_lines(fh, path: str):
    """The lines of a binary file as text (a BOM dropped), naming the line that is not UTF-8."""
    for n, raw in enumerate(fh, 1):
        try:
            yield raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path} line {n}: not valid UTF-8 text") from None


def _find_target(header: list[str], target, path: str) -> int:
    names = [h.strip() for h in header]
    key = str(target).strip()
    hits = [i for i, h in enumerate(names) if h == key]
    if len(hits) > 1:
        raise UserError(f"{path} line 1: the target column name {key!r} appears {len(hits)} times "
                         f"in the header; give its index with --target instead")
    if hits:
        return hits[0]
    try:
        index = int(key)
    except ValueError:
        raise UserError(f"{path} line 1: no column named {key!r} in the header "
                         f"(columns: {', '.join(repr(n) for n in names)})") from None
    if not -len(names) <= index < len(names):
        raise UserError(f"{path} line 1: --target {index} is out of range; the header has "
                         f"{len(names)} columns (0..{len(names) - 1})")
    return index % len(names)


class CsvRows:
    """The records of a CSV file opened in binary mode, remembering the line the current one starts on
    (a quoted field may span lines)."""

    def __init__(self, fh, path: str, delimiter: str):
        self.path, self.line = path, 1
        self._reader = csv.reader(_utf8_lines(fh, path), delimiter=delimiter, strict=True)

    def where(self) -> str:
        return f"{self.path} line {self.line}"

    def next(self) -> list[str]:
        """The next record (raises StopIteration at the end of the file)."""
        self.line = self._reader.line_num + 1
        try:
            return next(self._reader)
        except csv.Error as exc:
            raise UserError(f"{self.where()}: not readable as CSV ({exc})") from None


def read_header(rows: CsvRows, target) -> tuple[list[str], int]:
    """The column names of the header row (blank lines before it skipped) and the target column's index."""
    try:
        header = rows.next()
        while header == []:
            header = rows.next()
    except StopIteration:
        raise UserError(f"{rows.path} is empty; a header row with the column names is required") from None
    if all(as_number(h) is not None for h in header):
        raise UserError(f"{rows.where()}: the first row holds only numbers; a header row "
                         f"with the column names is required")
    t = _find_target(header, target, rows.path)
    if len(header) < 2:
        raise UserError(f"{rows.where()}: the header has only the target column; "
                         f"at least one feature column is needed")
    return [h.strip() for h in header], t


def parse_features(row: list[str], feat_idx: list[int], names: list[str], rows: CsvRows, out: np.ndarray) -> None:
    """Parse the feature columns of ``row`` into ``out``; each must be a finite number."""
    for j, i in enumerate(feat_idx):
        text = row[i].strip()
        x = as_number(text)
        if x is None:
            what = "an empty value" if text == "" else f"non-numeric value {text!r}"
            raise UserError(f"{rows.where()}: column {names[i]!r} has {what}")
        if not math.isfinite(x):
            raise UserError(f"{rows.where()}: column {names[i]!r} has non-finite value {text!r}")
        out[j] = x
