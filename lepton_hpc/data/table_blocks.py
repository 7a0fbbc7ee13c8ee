"""One block of a tabular input parsed into arrays (:mod:`lepton_hpc.data.table_import`).

A CSV block (whole lines, :mod:`lepton_hpc.data.blocks`) is parsed by ``pyarrow.csv`` with
fixed column types (float64 for numeric features, text for the target and the category
columns), so the result does not depend on where the block was cut. A Parquet block is one row
group, read by ``pyarrow.parquet``. Either gives a :class:`BlockData`; a problem gives a
:class:`BlockError` that the caller turns into one sentence naming the file, the line (or row
group) and the column: the first problem of the block, found by a plain Python scan of its
lines (only when pyarrow or a check says something is wrong).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .table_spec import MISSING_TOKENS, TableSpec, null_values

#: a target with more distinct values in one block is kept as numbers only (a regression target)
MAX_LABELS_PER_BLOCK = 1000


def _arrow():
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
    except ImportError:
        raise UserError("importing CSV or Parquet needs pyarrow; install it with "
                        "pip install 'lepton_hpc[io]'") from None
    return pa, pc, pacsv


@dataclass
class BlockError:
    """The first problem of block ``block``: at its local ``line`` (CSV, 1-based) or ``row``."""

    block: int
    text: str
    line: int | None = None
    row: int | None = None


@dataclass
class BlockData:
    rows: int
    newlines: int
    num: np.ndarray            # (rows, n_numeric) float64, NaN where missing
    cats: list                 # per one-hot column: (codes int32, -1 missing; dictionary list[str])
    hashed: list               # per hashed column: bucket int32, -1 missing
    y_float: np.ndarray | None  # the target as numbers (None: some text is not a number)
    y_codes: np.ndarray | None  # the target dictionary-encoded (None: too many distinct values)
    y_dict: list | None

    def target_info(self) -> dict:
        """What the ranks agree the target on: numbers or text, its distinct labels."""
        values = None
        if self.y_float is not None and self.y_dict is not None:
            values = sorted(set(float(v) for v in np.unique(self.y_float)))
        return {"numeric": self.y_float is not None, "labels": self.y_dict, "values": values}


def _decode(col, pc, pa):
    """(int32 codes with -1 for null, dictionary as a list of str) of an arrow text column."""
    enc = pc.dictionary_encode(col).combine_chunks()
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return codes, enc.dictionary.to_pylist()


def _hash_buckets(col, width: int, pc, pa) -> np.ndarray:
    from .text_hash import murmur_unsigned

    codes, dictionary = _decode(col, pc, pa)
    buckets = np.array([murmur_unsigned(v) % width for v in dictionary] + [-1], dtype=np.int32)
    return buckets[codes]  # code -1 picks the trailing -1


def _target(col, pc, pa):
    try:
        y_float = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        y_float = None
    if y_float is not None and len(np.unique(y_float)) > MAX_LABELS_PER_BLOCK:
        return y_float, None, None
    text = col if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) else pc.cast(col, pa.string())
    codes, dictionary = _decode(text, pc, pa)
    return y_float, codes, dictionary


def table_to_block(table, spec: TableSpec, newlines: int, block: int):
    """Arrays of a parsed block (``table``: one column per used input column, by name), or the
    check that fails: returns ``(BlockData, None)`` or ``(None, reason)`` (``reason`` a short
    text, the caller scans for the exact place)."""
    pa, pc, _ = _arrow()
    names = spec.names
    rows = table.num_rows
    if table.column(names[spec.target]).null_count:
        return None, "missing target"
    num = np.empty((rows, len(spec.numeric)), dtype=np.float64, order="F")  # column by column
    for k, j in enumerate(spec.numeric):
        col = table.column(names[j])
        num[:, k] = col.to_numpy(zero_copy_only=False) if col.null_count else col.to_numpy()
    if rows and len(spec.numeric):
        if np.isinf(num).any():
            return None, "non-finite"
        if spec.missing == "error" and np.isnan(num).any():
            return None, "missing feature"
    cats = [_decode(table.column(names[j]), pc, pa) for j in spec.onehot]
    if spec.missing == "error" and any((c[0] < 0).any() for c in cats):
        return None, "missing feature"
    hashed = [_hash_buckets(table.column(names[j]), spec.hash_width, pc, pa) for j in spec.hashed]
    if spec.missing == "error" and any((h < 0).any() for h in hashed):
        return None, "missing feature"
    y_float, y_codes, y_dict = _target(table.column(names[spec.target]), pc, pa)
    if y_float is not None and not np.isfinite(y_float).all():
        return None, "non-finite target"
    return BlockData(rows, newlines, num, cats, hashed, y_float, y_codes, y_dict), None


# -- CSV ---------------------------------------------------------------------------
def parse_csv_block(data: bytes, spec: TableSpec, delimiter: str, block: int, threads: bool = True):
    """``(BlockData, None)`` or ``(None, BlockError)`` for the CSV bytes ``data`` (whole lines)."""
    pa, pc, pacsv = _arrow()
    names = list(spec.names)
    strings = set(spec.string_columns())
    types = {names[j]: (pa.string() if j in strings else pa.float64()) for j in spec.used}
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=threads, block_size=1 << 20),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=[names[j] for j in spec.used],
                                                 null_values=null_values(), strings_can_be_null=True,
                                                 quoted_strings_can_be_null=True))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        return None, scan_csv(data, spec, delimiter, block, str(exc).splitlines()[0])
    newlines = data.count(b"\n")
    result, reason = table_to_block(table, spec, newlines, block)
    lines = newlines + (0 if data.endswith(b"\n") or not data else 1)
    if result is not None and result.rows != lines and result.rows != _records(data, lines):
        result, reason = None, "a record spans lines"
    if result is None:
        return None, scan_csv(data, spec, delimiter, block, reason)
    return result, None


def _records(data: bytes, lines: int) -> int:
    """Non-empty lines of a block of ``lines`` lines (its records, when no quoted field holds a newline)."""
    blank = data.count(b"\n\n") + data.count(b"\n\r\n") + (1 if data.startswith((b"\n", b"\r\n")) else 0)
    return lines - blank


def _missing(text: str) -> bool:
    return text.strip().lower() in MISSING_TOKENS


def _record_problem(rec: list[str], spec: TableSpec) -> str | None:
    names = spec.names
    if len(rec) != len(names):
        return f"expected {len(names)} fields, found {len(rec)}"
    if _missing(rec[spec.target]):
        return f"the target {names[spec.target]!r} is missing"
    try:
        if not math.isfinite(float(rec[spec.target])):
            return f"the target {names[spec.target]!r} has non-finite value {rec[spec.target]!r}"
    except ValueError:
        pass  # a text label
    for j in spec.features:
        text = rec[j]
        if _missing(text):
            if spec.missing == "error":
                return (f"column {names[j]!r} has a missing value (give --missing mean|median|zero "
                        f"to fill it in)")
            continue
        if spec.kinds[j] != "numeric":
            continue
        try:
            value = float(text)
        except ValueError:
            return (f"column {names[j]!r} has non-numeric value {text!r} (list it in --categorical "
                    f"or --drop if it is not a number)")
        if not math.isfinite(value):
            return f"column {names[j]!r} has non-finite value {text!r}"
    return None


def scan_csv(data: bytes, spec: TableSpec, delimiter: str, block: int, fallback: str) -> BlockError:
    """The first problem of a CSV block, by a line-by-line Python scan."""
    line = 0

    def lines():
        nonlocal line
        for raw in io.BytesIO(data):
            line += 1
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError("not valid UTF-8 text") from None

    reader = csv.reader(lines(), delimiter=delimiter, strict=True)
    while True:
        start = line + 1
        try:
            rec = next(reader)
        except StopIteration:
            break
        except UserError as exc:
            return BlockError(block, str(exc), line=line)
        except csv.Error as exc:
            return BlockError(block, f"not readable as CSV ({exc})", line=start)
        if not rec:
            continue
        if line != start:
            return BlockError(block, "a quoted field holds a newline; import reads one record per line "
                                     "(newlines inside fields are not supported)", line=start)
        problem = _record_problem(rec, spec)
        if problem:
            return BlockError(block, problem, line=line)
    return BlockError(block, f"not readable ({fallback})", line=1)


def csv_line_of_row(data: bytes, delimiter: str, row: int) -> int:
    """The local line (1-based) on which record ``row`` (0-based, blank lines skipped) of a block ends."""
    reader = csv.reader(io.StringIO(data.decode("utf-8", "replace")), delimiter=delimiter)
    k = 0
    for rec in reader:
        if rec:
            if k == row:
                return reader.line_num
            k += 1
    return reader.line_num


# -- Parquet ---------------------------------------------------------------------------
def parquet_table(pf, group: int, spec: TableSpec, path: str, block: int):
    """Row group ``group`` of the open ``pyarrow.parquet.ParquetFile`` ``pf`` with numeric
    columns as float64 (NaN read as missing) and the others as text; or a BlockError."""
    pa, pc, _ = _arrow()
    names = spec.names
    table = pf.read_row_group(group, columns=[names[j] for j in spec.used])
    strings = set(spec.string_columns())
    cols = []
    for j in spec.used:
        col = table.column(names[j])
        if j in strings:
            if j == spec.target and (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
                cols.append(pc.cast(col, pa.float64()).cast(pa.string()) if pa.types.is_floating(col.type)
                            else pc.cast(col, pa.string()))
            else:
                cols.append(col if pa.types.is_string(col.type) else pc.cast(col, pa.string()))
            continue
        t = col.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                or pa.types.is_decimal(t)):
            return None, BlockError(block, f"column {names[j]!r} has type {t}, not numbers (list it in "
                                           f"--categorical or --drop)")
        col = pc.cast(col, pa.float64())
        cols.append(pc.if_else(pc.is_nan(col), pa.scalar(None, pa.float64()), col))
    return pa.table(cols, names=[names[j] for j in spec.used]), None


def parquet_problem(table, spec: TableSpec, reason: str, block: int) -> BlockError:
    """The first row of a Parquet row group with ``reason``'s problem."""
    pa, pc, _ = _arrow()
    names = spec.names
    checks = [(spec.target, "the target {!r} is missing", "null")]
    checks += [(j, "column {!r} has a missing value (give --missing mean|median|zero to fill it in)", "null")
               for j in spec.features if spec.missing == "error"]
    checks += [(j, "column {!r} has a non-finite value", "inf") for j in spec.numeric]
    checks += [(spec.target, "the target {!r} has a non-finite value", "target-inf")]
    best = None
    for j, text, kind in checks:
        col = table.column(names[j])
        if kind == "null":
            bad = col.is_null().to_numpy(zero_copy_only=False)
        elif kind == "inf":
            bad = np.isinf(col.to_numpy(zero_copy_only=False))
        else:
            try:
                bad = ~np.isfinite(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        if bad.any():
            r = int(np.argmax(bad))
            if best is None or r < best[0]:
                best = (r, text.format(names[j]))
    r, text = best if best else (0, reason)
    return BlockError(block, text, row=r)
