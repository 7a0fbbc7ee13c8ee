"""``python -m lepton_hpc.bench text``: the text import against scikit-learn's HashingVectorizer.

The corpus is apt's package descriptions (:mod:`lepton_hpc.data.apt_export`; exported to a
temporary file unless ``--corpus`` names one). Interleaved (A B B A ...), it times

* A, the baseline, in this process: ``HashingVectorizer(n_features=2**k, ngram_range=(a, b))
  .transform(docs)`` on the documents already in memory;
* B, ``import text CORPUS --text-column description --label-column section`` at one rank with
  the same hashing (:mod:`lepton_hpc.bench.import_rank`: reading the JSON Lines, hashing,
  writing the CSR file).

``ratio`` = median(A) / median(B), target >= 1.0. The features are checked to be the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from .common import RANK_ENV, blas_summary, find_mpiexec, last_json, launch_ranks, note, provenance, spread, verdict
from .common import executable, existing_dir, existing_file, int_in, positive_int


def _same_features(out: str, hv, docs) -> bool:
    import h5py
    import scipy.sparse as sp

    with h5py.File(out, "r") as f:
        g = f["X"]
        X = sp.csr_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=tuple(g.attrs["shape"]))
    Xs = hv.transform(docs)
    Xs.sum_duplicates()
    return bool(X.shape == Xs.shape and np.array_equal(X.indptr, Xs.indptr) and np.array_equal(X.indices, Xs.indices)
                and np.array_equal(X.data, Xs.data))


def ngram_range(text: str) -> str:
    """``--ngrams``: MIN,MAX as the importer takes it (checked here, before anything runs)."""
    from ..data.text_features import parse_ngrams
    from ..errors import UserError

    try:
        parse_ngrams(text)
    except UserError:
        raise argparse.ArgumentTypeError(f"must be MIN,MAX with 1 <= MIN <= MAX (e.g. 1,2), got {text!r}") from None
    return text


def run(args) -> dict:
    from sklearn.feature_extraction.text import HashingVectorizer

    from ..data.text_features import parse_ngrams

    mpiexec = args.mpiexec or find_mpiexec()
    lo, hi = parse_ngrams(args.ngrams)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        corpus = args.corpus
        if not corpus:
            from ..data.apt_export import export_apt

            corpus = os.path.join(tmp, "apt.jsonl")
            note("bench text: exporting apt's package descriptions ...")
            export_apt(corpus)
        try:
            with open(corpus, encoding="utf-8") as fh:
                docs = [json.loads(line)["description"] for line in fh if line.strip()]
        except (ValueError, KeyError, TypeError) as exc:  # not JSON Lines, or a line without "description"
            raise SystemExit(f"bench text: {corpus} is not a JSON Lines corpus of objects with a "
                             f"\"description\" (and \"section\"): {type(exc).__name__}: {exc}") from None
        if not docs:
            raise SystemExit(f"bench text: {corpus} holds no documents")
        note(f"  {len(docs)} documents, {os.path.getsize(corpus) / 2**20:.1f} MiB")
        hv = HashingVectorizer(n_features=2 ** args.hash_bits, ngram_range=(lo, hi))
        out = os.path.join(tmp, "apt.h5")
        kwargs = {"paths": [corpus], "out": out, "text_column": "description", "label_column": "section",
                  "ngrams": f"{lo},{hi}", "hash_bits": args.hash_bits}
        cmd = [mpiexec, "-n", "1", sys.executable, "-m", "lepton_hpc.bench.import_rank", "text", json.dumps(kwargs)]
        a, b = [], []
        for r in range(args.repeats):
            for side in (("A", "B") if r % 2 == 0 else ("B", "A")):
                if side == "A":
                    t = time.perf_counter()
                    hv.transform(docs)
                    a.append(time.perf_counter() - t)
                else:
                    b.append(last_json(launch_ranks(cmd, args.timeout, "bench text"), "bench text")["wall_s"])
                note(f"  {side}: {(a if side == 'A' else b)[-1]:.2f} s")
        same = _same_features(out, hv, docs)
    return {**verdict(a, b, 1.0, ">="), "baseline": "sklearn HashingVectorizer.transform on the documents in memory",
            "baseline_s": spread(a), "ours_n1_s": spread(b), "documents": len(docs), "hash_bits": args.hash_bits,
            "ngrams": [lo, hi], "same_features_as_sklearn": same}


def cli(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m lepton_hpc.bench text", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=existing_file,
                   help="a JSON Lines corpus with description/section (default: export apt's lists)")
    p.add_argument("--hash-bits", type=int_in(1, 31), default=18, help="2^k hashed feature columns")
    p.add_argument("--ngrams", type=ngram_range, default="1,2", help="word n-gram range MIN,MAX")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed runs per side (medians are reported)")
    p.add_argument("--workdir", type=existing_dir, default=None,
                   help="folder for the temporary files (default: the system's)")
    p.add_argument("--timeout", type=positive_int, default=600, help="seconds before a launch is killed")
    p.add_argument("--mpiexec", type=executable, help="mpiexec to launch with (default: found on PATH)")
    p.add_argument("--strict", action="store_true", help="exit 3 when the target is missed")
    args = p.parse_args(argv)
    os.environ.update(RANK_ENV)
    t, load0 = time.perf_counter(), os.getloadavg()[0]
    result = {"bench": "text", **run(args), "wall_s": time.perf_counter() - t,
              "loadavg_1m": {"start": load0, "end": os.getloadavg()[0]}, "provenance": provenance(blas=blas_summary())}
    print(json.dumps(result), flush=True)
    return 3 if args.strict and not result["pass"] else 0
