"""The ``import`` subcommand of ``python -m lepton_hpc.data``, run under MPI (``mpirun -n N``).

``csv`` and ``parquet`` (:mod:`lepton_hpc.data.table_import`) and ``text``
(:mod:`lepton_hpc.data.text_import`) are parallel: every rank parses its own part of the
input. ``sklearn:NAME`` and ``npy`` are small and run on rank 0. Rank 0 prints the file's
description; a bad input is one sentence and exit code 1 on every rank (:func:`lepton_hpc.comm.run_app`).
"""

from __future__ import annotations

import argparse

from .. import comm as C
from ..errors import UserError
from .blocks import BLOCK_BYTES
from .importers import SKLEARN_SETS, TASKS, run_import
from .table_spec import MISSING_POLICIES

SOURCES = "sklearn:NAME, csv FILE..., parquet FILE..., text FILE..., npy X.npy y.npy"


def add_import_parser(sub) -> argparse.ArgumentParser:
    m = sub.add_parser("import", help=f"convert data ({SOURCES}) to HDF5, in parallel under mpirun")
    m.add_argument("source", help=f"sklearn:{'|'.join(SKLEARN_SETS)}, csv, parquet, text or npy")
    m.add_argument("paths", nargs="*", help="csv/parquet/text: the input files; npy: X.npy y.npy")
    m.add_argument("--target", help="csv/parquet: the target column, by name or index")
    m.add_argument("--task", choices=list(TASKS), default=None, help="default: inferred from the target")
    m.add_argument("--delimiter", default=",", help="csv/text: one character, or 'tab' (default ,)")
    m.add_argument("--header", default="yes", help="csv: yes (the first line names the columns) or no "
                                                   "(columns x0, x1, ...; --target by index)")
    m.add_argument("--columns", help="csv/parquet: the feature columns to keep (COL,COL,...; default all)")
    m.add_argument("--drop", help="csv/parquet: feature columns to leave out (COL,COL,...)")
    m.add_argument("--categorical", help="columns one-hot encoded (COL=VALUE per category, sorted)")
    m.add_argument("--hashed", help="category columns hashed (MurmurHash3) into --hash-width columns each")
    m.add_argument("--hash-width", type=int, default=0, help="output columns per --hashed column")
    m.add_argument("--missing", choices=list(MISSING_POLICIES), default="error",
                   help="a missing numeric value: an error (default), or filled with the column's mean, "
                        "exact median (over the whole input) or zero")
    m.add_argument("--missing-indicator", action="store_true",
                   help="append a 0/1 column isnull(COL) per numeric column with a missing value")
    m.add_argument("--block-bytes", type=int, default=BLOCK_BYTES, help="csv/text: bytes per parsed block")
    m.add_argument("--chunk-rows", type=int, default=4096, help="rows per HDF5 chunk of the output (default 4096)")
    m.add_argument("--text-column", help="text: the column (or JSON key) holding the document")
    m.add_argument("--label-column", help="text: the column (or JSON key) holding the class label")
    m.add_argument("--format", choices=["auto", "csv", "tsv", "jsonl"], default="auto",
                   help="text: the input format (auto: by the file extension)")
    m.add_argument("--ngrams", default="1,1", help="text: word n-gram range MIN,MAX (default 1,1)")
    m.add_argument("--hash-bits", type=int, default=20, help="text: 2^k hashed feature columns (default 20)")
    m.add_argument("--tfidf", action="store_true", help="text: TF-IDF weights (document frequencies over "
                                                        "the whole input)")
    m.add_argument("--norm", choices=["l2", "l1", "none"], default="l2", help="text: row normalisation")
    m.add_argument("--out", required=True, help="output HDF5 file (written atomically: a failed import leaves none)")
    return m


def _table(comm, args) -> None:
    from .table_import import import_table

    if args.target is None:
        raise UserError(f"import {args.source} needs --target COLUMN (a column name or index)")
    import_table(comm, args.source, args.paths, args.target, args.out, task=args.task,
                 delimiter=args.delimiter, header=args.header, columns=args.columns, drop=args.drop,
                 categorical=args.categorical, hashed=args.hashed, hash_width=args.hash_width,
                 missing=args.missing, indicator=args.missing_indicator, chunk_rows=args.chunk_rows,
                 block_bytes=args.block_bytes)


def _text(comm, args) -> None:
    from .text_import import import_text

    import_text(comm, args.paths, args.out, text_column=args.text_column, label_column=args.label_column,
                fmt=args.format, delimiter=None if args.delimiter == "," and args.format != "csv" else args.delimiter,
                ngrams=args.ngrams, hash_bits=args.hash_bits, tfidf=args.tfidf, norm=args.norm,
                block_bytes=args.block_bytes)


def run_import_cli(args, info) -> int:
    """Run ``import`` on every rank of the job; rank 0 prints ``info(out)``."""
    def main(comm) -> int:
        if args.source in ("csv", "parquet"):
            _table(comm, args)
        elif args.source == "text":
            _text(comm, args)
        else:
            C.on_root(comm, run_import, args.source, args.paths, args.out, args.target, args.task,
                      args.delimiter, args.chunk_rows)
        if comm.rank == 0:
            print(info(args.out), flush=True)
        return 0

    return C.run_app(main)
