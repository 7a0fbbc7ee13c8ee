"""Parallel import of tabular data: ``mpirun -n N python -m lepton_hpc.data import csv|parquet
FILE... --target COL --out DATA.h5``.

Every rank parses only its own blocks (:mod:`lepton_hpc.data.blocks`: byte ranges of a CSV cut
at line starts, or the row groups of a Parquet file) with pyarrow; no rank reads the whole
input. The ranks then agree (:mod:`lepton_hpc.data.table_stats`) on the first error, the
values that fill in missing entries, the one-hot categories and the target's classes, build
their own rows of the output and write them, block by block, in rank order into datasets allocated up front
(:mod:`lepton_hpc.data.ordered_write`, :mod:`lepton_hpc.data.h5_prealloc`). The file is the
dense layout every importer writes (see :mod:`lepton_hpc.data.importers` for the attrs
contract) and its bytes do not depend on the rank count. A rank holds its share of the output
plus one block of output rows at a time
(the rows are built block by block while the rank writes).

Limitation: CSV fields may be quoted but must not hold a newline (the blocks are cut at
newlines); a parse error then names the line.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from .. import comm as C
from ..errors import UserError
from ..layout import Layout
from .blocks import BLOCK_BYTES, Block, check_inputs, header_lines, lines_before, plan_blocks, read_header
from .h5_prealloc import UTF8, create_file, early_dataset
from .importers import TASKS, _class_task, _label_attr, classes_attr
from .ordered_write import write_in_rank_order
from .table_blocks import (BlockError, csv_line_of_row, parquet_problem, parquet_table, parse_csv_block,
                           table_to_block)
from .table_spec import build_spec
from .table_stats import categories, class_codes, decide_target, fill_values, first_error, first_text_row

FORMATS = ("csv", "parquet")


def csv_delimiter(delimiter: str) -> str:
    delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
    if len(delimiter) != 1:
        raise UserError(f"--delimiter must be one character (or 'tab'), got {delimiter!r}")
    return delimiter


def _header_flag(header) -> bool:
    if isinstance(header, bool):
        return header
    value = str(header).strip().lower()
    if value not in ("yes", "no", "true", "false", "1", "0"):
        raise UserError(f"--header must be yes or no, got {header!r}")
    return value in ("yes", "true", "1")


# -- planning (the same on every rank) -----------------------------------------------
def _plan_csv(paths, delimiter, header, block_bytes):
    names, starts = None, []
    for path in paths:
        these, start = read_header(path, delimiter, header)
        if names is not None and these != names:
            raise UserError(f"{path} line 1: the columns ({', '.join(these)}) differ from those of "
                            f"{paths[0]} ({', '.join(names)})")
        names = names or these
        starts.append(start)
    return names, plan_blocks(paths, starts, block_bytes), [header_lines(p, s) for p, s in zip(paths, starts)]


def _parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("importing Parquet needs pyarrow; install it with pip install 'lepton_hpc[io]'") from None
    return pq


def _plan_parquet(paths):
    pq = _parquet()
    names, blocks = None, []
    for f, path in enumerate(paths):
        try:
            meta = pq.ParquetFile(path).metadata
        except Exception as exc:  # pyarrow raises its own types for a file that is not Parquet
            raise UserError(f"{path} is not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        these = list(meta.schema.to_arrow_schema().names)
        if names is not None and these != names:
            raise UserError(f"{path}: the columns ({', '.join(these)}) differ from those of {paths[0]}")
        names = names or these
        blocks += [Block(len(blocks) + g, f, path, g, g + 1) for g in range(meta.num_row_groups)]
    return names, blocks, [0] * len(paths)


# -- parsing this rank's blocks ------------------------------------------------------
def _parse_mine(fmt, blocks, mine, spec, delimiter):
    datas, files = [], {}
    for b in mine:
        block = blocks[b]
        if fmt == "csv":
            d, err = parse_csv_block(block.read(), spec, delimiter, b)
        else:
            if block.path not in files:
                files = {block.path: _parquet().ParquetFile(block.path)}
            table, err = parquet_table(files[block.path], block.start, spec, block.path, b)
            d = None
            if err is None:
                d, reason = table_to_block(table, spec, 0, b)
                err = None if d is not None else parquet_problem(table, spec, reason, b)
        if err is not None:
            return datas, err
        datas.append(d)
    return datas, None


def _locator(fmt, blocks, counts, lines0, delimiter):
    def locate(err: BlockError) -> str:
        block = blocks[err.block]
        if fmt == "parquet":
            where = f"row group {block.start}" + ("" if err.row is None else f", row {err.row}")
            return f"{block.path} {where}: {err.text}"
        local = err.line if err.line is not None else csv_line_of_row(block.read(), delimiter, err.row)
        line = lines0[block.file] + lines_before(counts, blocks, err.block) + local
        return f"{block.path} line {line}: {err.text}"
    return locate


# -- the output -----------------------------------------------------------------------
def _columns(spec, cats, missing):
    """The output's feature names and, per feature column, (kind, index in its kind, first output column)."""
    names, plan = [], []
    n = {"numeric": 0, "onehot": 0, "hashed": 0}
    for j in spec.features:
        kind = spec.kinds[j]
        k = n[kind]
        n[kind] += 1
        plan.append((kind, k, len(names)))
        col = spec.names[j]
        if kind == "numeric":
            names.append(col)
        elif kind == "onehot":
            names += [f"{col}={v}" for v in cats[k]]
        else:
            names += [f"{col}#{i}" for i in range(spec.hash_width)]
    indicators = []
    if spec.indicator:
        for k, j in enumerate(spec.numeric):
            if missing[k] > 0:
                indicators.append((k, len(names)))
                names.append(f"isnull({spec.names[j]})")
    return names, plan, indicators


def _numeric_runs(plan):
    """(first numeric column, first output column, length) of each run of adjacent numeric columns."""
    runs = []
    for what, k, off in plan:
        if what != "numeric":
            continue
        if runs and runs[-1][0] + runs[-1][2] == k and runs[-1][1] + runs[-1][2] == off:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((k, off, 1))
    return runs


def _block_rows(datas, n_out, plan, indicators, fill, cats, kind, classes):
    """This rank's rows of X and y, block by block: ``(lo, X rows, y rows)`` with ``lo`` counted
    from the rank's first row. Each block's parsed arrays are released once its rows are built."""
    runs = _numeric_runs(plan)
    lo = 0
    while datas:
        d = datas.pop(0)
        X = np.zeros((d.rows, n_out))
        rows = np.arange(d.rows)
        missing = np.isnan(d.num)
        if missing.any():
            np.copyto(d.num, np.broadcast_to(fill, d.num.shape), where=missing)
        for k, off, n in runs:  # one copy per run of adjacent numeric columns
            X[:, off:off + n] = d.num[:, k:k + n]
        for what, k, off in plan:
            if what == "onehot":
                codes, dictionary = d.cats[k]
                index = {v: i for i, v in enumerate(cats[k])}
                lut = np.array([index[v] for v in dictionary] + [-1], dtype=np.int64)
                g = lut[codes]
                X[rows[g >= 0], off + g[g >= 0]] = 1.0
            elif what == "hashed":
                b = d.hashed[k]
                X[rows[b >= 0], off + b[b >= 0]] = 1.0
        for k, off in indicators:
            X[:, off] = missing[:, k]
        yield lo, X, class_codes(d, kind, classes)
        lo += d.rows


def _plan(fmt, paths, target, out, task, delimiter, header, columns, drop, categorical, hashed, hash_width,
          missing, indicator, chunk_rows, block_bytes):
    """Check the options and the inputs; the blocks and the column spec (the same on every rank)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}; use csv or parquet")
    if task is not None and task not in TASKS:
        raise UserError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    if chunk_rows <= 0:
        raise UserError(f"--chunk-rows must be > 0, got {chunk_rows}")
    if not out:
        raise UserError("--out must name the HDF5 file to write")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise UserError(f"cannot write {out}: the folder {folder} does not exist")
    check_inputs(paths, out, fmt.upper() if fmt == "csv" else "Parquet")
    delim = csv_delimiter(delimiter)
    names, blocks, lines0 = (_plan_csv(paths, delim, _header_flag(header), block_bytes) if fmt == "csv"
                             else _plan_parquet(paths))
    where = f"{paths[0]} line 1" if fmt == "csv" else paths[0]
    spec = build_spec(names, target, where, columns, drop, categorical, hashed, missing, indicator, hash_width)
    return delim, blocks, lines0, spec



def import_table(comm, fmt: str, paths: list[str], target, out: str, task: str | None = None,
                 delimiter: str = ",", header=True, columns=None, drop=None, categorical=None, hashed=None,
                 hash_width: int = 0, missing: str = "error", indicator: bool = False, chunk_rows: int = 4096,
                 block_bytes: int = BLOCK_BYTES) -> dict:
    """Import ``paths`` (``fmt`` csv or parquet) to the HDF5 file ``out``. Collective over ``comm``.

    Returns the root attrs written. See the module doc and :mod:`lepton_hpc.data.table_spec`
    for the options; every bad input is a :class:`~lepton_hpc.comm.JobError` on every rank.
    """
    delim, blocks, lines0, spec = C.agree(comm, _plan, fmt, paths, target, out, task, delimiter, header, columns,
                                          drop, categorical, hashed, hash_width, missing, indicator, chunk_rows,
                                          block_bytes)
    mine = list(Layout(len(blocks), 1, comm.size, comm.rank).chunks())
    datas, err = C.agree(comm, _parse_mine, fmt, blocks, mine, spec, delim)
    gathered = C.allgather(comm, [(b, d.rows, d.newlines, d.target_info()) for b, d in zip(mine, datas)])
    per_block = {b: (rows, nl, info) for part in gathered for b, rows, nl, info in part}
    counts = {b: v[1] for b, v in per_block.items()}
    first_error(comm, err, _locator(fmt, blocks, counts, lines0, delim))
    rows = [per_block[b][0] for b in range(len(blocks))]
    n_rows = int(sum(rows))
    target_name = spec.names[spec.target]
    if n_rows == 0:
        C.check(comm, f"{paths[0]} has no data rows")
    kind, classes, task_out = C.agree(comm, decide_target, [per_block[b][2] for b in range(len(blocks))], task,
                                      target_name, paths[0], _class_task)
    if kind == "text-regression":
        bad = next(b for b in range(len(blocks)) if not per_block[b][2]["numeric"])
        err = None
        if bad in mine:
            d = datas[mine.index(bad)]
            r = first_text_row(d)
            err = BlockError(bad, f"the target {target_name!r} has non-numeric value "
                                  f"{d.y_dict[d.y_codes[r]]!r}, but --task is regression", row=r)
        first_error(comm, err, _locator(fmt, blocks, counts, lines0, delim))
    fill, n_missing = fill_values(comm, spec, len(blocks), datas, n_rows)
    cats = categories(comm, spec, datas)
    names, col_plan, indicators = _columns(spec, cats, n_missing)
    row_lo = int(sum(rows[:mine[0]])) if mine else n_rows
    n_local = int(sum(rows[b] for b in mine))
    n_classes = 0 if classes is None else len(classes)
    attrs = {"source": f"{fmt}:{','.join(paths)}", "task": task_out, "n_classes": n_classes,
             "target": target_name, "missing": spec.missing,
             "target_names": [target_name] if classes is None else [str(c) for c in classes],
             "classes": None if classes is None else _label_attr(classes)}

    def create(tmp):
        with create_file(tmp) as f:
            chunk = min(chunk_rows, max(n_rows, 1))
            Xd = early_dataset(f, "X", (n_rows, len(names)), (chunk, len(names)), np.float64)
            yd = early_dataset(f, "y", (n_rows,), (chunk,), np.float64)
            Xd.attrs["feature_names"] = np.asarray(names, dtype=UTF8)
            if classes is not None:
                yd.attrs["classes"] = classes_attr(classes)
            for key, value in attrs.items():
                if value is not None:
                    f.attrs[key] = value
            f.attrs["feature_names"] = np.asarray(names, dtype=UTF8)
            if spec.numeric and spec.missing in ("mean", "median"):
                Xd.attrs["fill_values"] = fill

    def write_own(tmp):  # the rows are built block by block, during this rank's turn
        with h5py.File(tmp, "r+") as f:
            for lo, Xb, yb in _block_rows(datas, len(names), col_plan, indicators, fill, cats, kind, classes):
                f["X"][row_lo + lo:row_lo + lo + len(yb)] = Xb
                f["y"][row_lo + lo:row_lo + lo + len(yb)] = yb

    write_in_rank_order(comm, out, create, write_own if n_local else None, f"writing {out}")
    return {**attrs, "feature_names": names, "n_rows": n_rows, "n_local": n_local}


def import_csv(path, target, out: str, task: str | None = None, delimiter: str = ",", chunk_rows: int = 4096,
               comm=None, fmt: str = "csv", **options) -> dict:
    """:func:`import_table` of one file (or a list) in this process alone (``comm`` None), or over ``comm``."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    paths = [os.fspath(p) for p in paths]
    own = comm is None
    comm = C.self_comm() if own else comm
    try:
        return import_table(comm, fmt, paths, target, out, task=task, delimiter=delimiter,
                            chunk_rows=chunk_rows, **options)
    finally:
        if own:
            C.free(comm)


def import_csv_serial(fmt, paths, target, out, task=None, delimiter=",", chunk_rows=4096) -> dict:
    """``run_import``'s csv/parquet: the table import in this process alone."""
    if target is None:
        raise UserError(f"import {fmt} needs --target COLUMN (a column name or index)")
    return import_csv(paths, target, out, task, delimiter, chunk_rows, fmt=fmt)
