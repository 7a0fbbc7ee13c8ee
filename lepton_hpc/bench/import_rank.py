"""One timed import under mpiexec, for ``bench import`` and ``bench text``:
``mpiexec -n N python -m lepton_hpc.bench.import_rank table|text JSON_KWARGS``.

Rank 0 prints one JSON line: the import's wall seconds (from a barrier after start-up and
loading the libraries, h5py, pyarrow, mmh3 and the importer's own modules, to the file committed) and every rank's peak RSS (MiB) and share of the output (MiB).
"""

from __future__ import annotations

import json
import resource
import sys
import time

from .. import comm as C


def _load_libraries() -> None:
    import importlib

    for name in ("h5py", "pyarrow", "pyarrow.compute", "pyarrow.csv", "pyarrow.json", "pyarrow.parquet", "mmh3",
                 "lepton_hpc.data.table_import", "lepton_hpc.data.text_import"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # the import itself then says what to install


def main(argv) -> int:
    what, kwargs = argv[0], json.loads(argv[1])

    def run(comm) -> int:
        _load_libraries()  # as the baselines, which run with their libraries loaded
        C.barrier(comm)
        t = time.perf_counter()
        if what == "table":
            from ..data.table_import import import_table

            attrs = import_table(comm, **kwargs)
            n_rows, n_cols = attrs["n_rows"], len(attrs["feature_names"])
            share = attrs["n_local"] * (n_cols + 1) * 8 / 2**20  # this rank's rows of X and y
        else:
            from ..data.text_import import import_text

            attrs = import_text(comm, **kwargs)
            n_rows, n_cols, share = attrs["n_rows"], attrs["hashing"]["n_features"], None
        wall = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        figures = C.gather(comm, {"rss_mib": rss, "share_mib": share})
        if comm.rank == 0:
            print(json.dumps({"wall_s": wall, "ranks": figures, "n_rows": n_rows, "n_cols": n_cols}), flush=True)
        return 0

    return C.run_app(run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
