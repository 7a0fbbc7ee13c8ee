"""Parallel import of labelled text: ``mpirun -n N python -m lepton_hpc.data import text FILE...
--text-column C --label-column L [--ngrams 1,2] [--hash-bits K] [--tfidf] --out DATA.h5``.

The input is CSV (header line), TSV (header line, tab-separated, no quoting) or JSON Lines (one
object per line), told by the extension (``.csv``, ``.tsv``/``.tab``, ``.jsonl``/``.ndjson``/``.json``)
or ``--format``. Every rank parses only its own blocks (:mod:`lepton_hpc.data.blocks`) with
pyarrow, hashes the documents (:mod:`lepton_hpc.data.text_features`: the features of
scikit-learn's ``HashingVectorizer``) and the ranks agree on the classes (the sorted distinct
label texts) and, for ``--tfidf``, on the document frequencies (integer sums over the ranks).
The output is the CSR layout (:mod:`lepton_hpc.data.csr_write`), byte-identical at any rank
count. A missing text is an empty document; a missing label is an error naming the line.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np

from .. import comm as C
from ..errors import UserError
from ..layout import Layout
from .blocks import BLOCK_BYTES, check_inputs, header_lines, lines_before, plan_blocks, read_header
from .csr_write import write_csr
from .importers import _class_task, classes_attr
from .table_blocks import BlockError, csv_line_of_row
from .table_stats import first_error
from .text_features import TOKEN_PATTERN, Hasher, concat, document_frequencies, finish, idf_weights, parse_ngrams

TEXT_FORMATS = ("csv", "tsv", "jsonl")
_EXT = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def text_format(path: str, fmt: str) -> str:
    if fmt and fmt != "auto":
        if fmt not in TEXT_FORMATS:
            raise UserError(f"--format must be one of auto, {', '.join(TEXT_FORMATS)}, got {fmt!r}")
        return fmt
    ext = os.path.splitext(path)[1].lower()
    if ext not in _EXT:
        raise UserError(f"{path}: cannot tell the format from the extension {ext or '(none)'}; "
                        f"give --format csv|tsv|jsonl")
    return _EXT[ext]


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
        import pyarrow.json as pajson
    except ImportError:
        raise UserError("import text needs pyarrow and mmh3; install them with pip install 'lepton_hpc[text]'") from None
    return pa, pc, pacsv, pajson


def _json_rows(data: bytes, text_col: str, label_col: str, block: int):
    """Python's json, line by line (when pyarrow's reader cannot take the block): rows or a BlockError."""
    docs, labels = [], []
    for line, raw in enumerate(io.BytesIO(data), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return None, BlockError(block, f"not a JSON object ({str(exc).splitlines()[0]})", line=line)
        if not isinstance(obj, dict):
            return None, BlockError(block, "not a JSON object", line=line)
        if label_col not in obj:
            return None, BlockError(block, f"the label key {label_col!r} is missing", line=line)
        value = obj.get(text_col)
        docs.append(None if value is None else str(value))
        labels.append(None if obj[label_col] is None else str(obj[label_col]))
    return (docs, labels), None


def _read_rows(data: bytes, fmt: str, names, text_col: str, label_col: str, block: int):
    """(documents, labels) of one block, or a BlockError."""
    pa, pc, pacsv, pajson = _pyarrow()
    if fmt == "jsonl":
        # the text as a string; the label as pyarrow infers it (numbers too), then as text; a label
        # key missing from the block, or text that is not a string, goes to Python's json, which
        # says which line lacks what
        try:
            table = pajson.read_json(pa.py_buffer(data), parse_options=pajson.ParseOptions(
                explicit_schema=pa.schema([(text_col, pa.string())]), unexpected_field_behavior="infer"))
            if label_col not in table.column_names:
                raise KeyError(label_col)
            label = table.column(label_col)
            docs = table.column(text_col).to_pylist()
            labels = (label if pa.types.is_string(label.type) else pc.cast(label, pa.string())).to_pylist()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
            return _json_rows(data, text_col, label_col, block)
        return (docs, labels), None
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",",
                                             quote_char=False if fmt == "tsv" else '"'),
            convert_options=pacsv.ConvertOptions(column_types={text_col: pa.string(), label_col: pa.string()},
                                                 include_columns=[text_col, label_col], null_values=[""],
                                                 strings_can_be_null=True))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        return None, BlockError(block, f"not readable as {fmt.upper()} ({str(exc).splitlines()[0]})", line=1)
    return (table.column(text_col).to_pylist(), table.column(label_col).to_pylist()), None  # "" is None


def _parse_mine(blocks, mine, fmt, names, text_col, label_col, hasher):
    out, err = [], None
    for b in mine:
        data = blocks[b].read()
        rows, err = _read_rows(data, fmt, names, text_col, label_col, b)
        if err is None:
            err = _label_error(rows[1], label_col, b)
        if err is not None:
            break
        with_text = sum(d is not None for d in rows[0])  # a missing key / null: an empty document
        out.append((b, data.count(b"\n"), rows[1], hasher.counts([d or "" for d in rows[0]]), with_text))
    return out, err


def _label_error(labels: list, label_col: str, block: int):
    """A BlockError for the first missing label, or one that is not Unicode text (a lone
    surrogate, as a JSON escape can make: no file can store it); else None."""
    if None in labels:
        return BlockError(block, f"the label {label_col!r} is missing", row=labels.index(None))
    try:
        "".join(set(labels)).encode("utf-8")
    except UnicodeEncodeError:
        row = next(i for i, v in enumerate(labels) if not _utf8(v))
        return BlockError(block, f"the label {label_col!r} is not valid Unicode (a lone surrogate in "
                                 f"{labels[row]!r}); fix that escape in the file", row=row)
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _line_of_row(data: bytes, fmt: str, row: int) -> int:
    if fmt == "csv":
        return csv_line_of_row(data, ",", row)
    k = 0
    for line, raw in enumerate(io.BytesIO(data), 1):
        if raw.strip():
            if k == row:
                return line
            k += 1
    return 1


def _plan(paths, out, fmt, text_col, label_col, ngrams, hash_bits, norm, block_bytes):
    check_inputs(paths, out, "text")
    if not text_col or not label_col:
        raise UserError("import text needs --text-column C and --label-column L")
    if not 1 <= int(hash_bits) <= 31:
        raise UserError(f"--hash-bits must be between 1 and 31, got {hash_bits}")
    if norm not in ("l2", "l1", "none", None):
        raise UserError(f"--norm must be l2, l1 or none, got {norm!r}")
    fmts = {text_format(p, fmt) for p in paths}
    if len(fmts) > 1:
        raise UserError(f"the input files mix formats ({', '.join(sorted(fmts))}); import them one format at a time")
    kind = fmts.pop()
    names, starts = None, [0] * len(paths)
    if kind != "jsonl":
        for i, path in enumerate(paths):
            these, starts[i] = read_header(path, "\t" if kind == "tsv" else ",", True)
            for col, what in ((text_col, "--text-column"), (label_col, "--label-column")):
                if col not in these:
                    raise UserError(f"{path} line 1: {what} names no column {col!r} "
                                    f"(columns: {', '.join(repr(n) for n in these)})")
            if names is not None and these != names:
                raise UserError(f"{path} line 1: the columns differ from those of {paths[0]}")
            names = these
    blocks = plan_blocks(paths, starts, block_bytes)
    return kind, names, blocks, [header_lines(p, s) for p, s in zip(paths, starts)], parse_ngrams(ngrams)


def import_text(comm, paths: list[str], out: str, text_column: str, label_column: str, fmt: str = "auto",
                delimiter=None, ngrams="1,1", hash_bits: int = 20, tfidf: bool = False, norm: str = "l2",
                block_bytes: int = BLOCK_BYTES) -> dict:
    """Import labelled documents to the CSR file ``out``. Collective over ``comm``; returns the root attrs."""
    kind, names, blocks, lines0, (lo, hi) = C.agree(comm, _plan, paths, out, fmt, text_column, label_column,
                                                   ngrams, hash_bits, norm, block_bytes)
    n_features = 1 << int(hash_bits)
    mine = list(Layout(len(blocks), 1, comm.size, comm.rank).chunks())
    hasher = Hasher(n_features, (lo, hi))
    parsed, err = C.agree(comm, _parse_mine, blocks, mine, kind, names, text_column, label_column, hasher)
    gathered = C.allgather(comm, [(b, nl, sorted(set(labels)), csr.n_rows, nt)
                                  for b, nl, labels, csr, nt in parsed])
    counts = {b: nl for part in gathered for b, nl, _, _, _ in part}

    def locate(e: BlockError) -> str:
        block = blocks[e.block]
        local = e.line if e.line is not None else _line_of_row(block.read(), kind, e.row)
        return f"{block.path} line {lines0[block.file] + lines_before(counts, blocks, e.block) + local}: {e.text}"

    first_error(comm, err, locate)
    classes = sorted(set().union(*(set(lab) for part in gathered for _, _, lab, _, _ in part)))
    n_docs = sum(n for part in gathered for _, _, _, n, _ in part)
    if n_docs == 0:  # the same sums on every rank
        C.check(comm, f"{', '.join(paths)} has no data rows (no {'JSON lines' if kind == 'jsonl' else 'rows'})")
    if sum(nt for part in gathered for *_, nt in part) == 0:
        C.check(comm, f"no {'line' if kind == 'jsonl' else 'row'} of {', '.join(paths)} has a text under "
                      f"{text_column!r} (all {n_docs} documents would be empty); check --text-column")
    task = C.agree(comm, _class_task, len(classes), None, f"{paths[0]}: the label {label_column!r}")
    idf = None
    if tfidf:
        df = C.allreduce_sum_ints(comm, document_frequencies([p[3] for p in parsed], n_features))
        idf = idf_weights(df, n_docs)
    index = {c: i for i, c in enumerate(classes)}
    pieces = [finish(csr, idf, None if norm == "none" else norm) for _, _, _, csr, _ in parsed]
    y = np.array([index[v] for _, _, labels, _, _ in parsed for v in labels], dtype=np.float64)
    local = concat(pieces)
    hashing = {"n_features": n_features, "ngrams": [lo, hi], "token_pattern": TOKEN_PATTERN, "lowercase": True,
               "hash": "murmurhash3_32 (mmh3), seed 0, signed: column abs(h) % n_features, sign of h",
               "alternate_sign": True, "tfidf": bool(tfidf), "smooth_idf": True, "norm": norm or "none"}
    root = {"source": f"text:{','.join(paths)}", "task": task, "n_classes": len(classes),
            "text_column": text_column, "label_column": label_column,
            "target_names": np.asarray(classes, dtype=object).astype(str).tolist()}
    write_csr(comm, out, n_features, local.data, local.indices, local.indptr, y,
              {"hashing": json.dumps(hashing, sort_keys=True)}, {"classes": classes_attr(classes)}, root)
    return {**root, "n_rows": n_docs, "hashing": hashing}
