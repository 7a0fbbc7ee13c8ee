"""Benchmarks whose targets are ratios measured within one run.

    python -m lepton_hpc.bench gradpass  [--rows 2000000 --cols 32 --repeats 7]
    python -m lepton_hpc.bench reduce    [--rows 2000000 --cols 32 --ranks 2 --steps 20]
    python -m lepton_hpc.bench ranks     [--rows 2000000 --cols 32 --steps 20]
    python -m lepton_hpc.bench matmul    [--n 4000 --k 200]
    python -m lepton_hpc.bench allreduce [--ranks 2]
    python -m lepton_hpc.bench models    --what steps2v1|epoch
    python -m lepton_hpc.bench predict   [--rows 2000000 --cols 32 --reps 3 --rounds 2]
    python -m lepton_hpc.bench als       [--users 200000 --items 2000 --density 0.01 --ranks 2]
    python -m lepton_hpc.bench implicit  [--users 50000 --items 2000 --factors 16 --iterations 10]
    python -m lepton_hpc.bench mfshard   [--users 200000 --items 2000 --ranks 2 --steps 6 --solver als]
    python -m lepton_hpc.bench solve     [--rows 1000000 --cols 64 --reg 1e-4 --ranks 2]
    python -m lepton_hpc.bench svd       [--sizes 200000x32,2000000x64 --ranks 1,2 --repeats 5]
    python -m lepton_hpc.bench sparse    [--rows 1000000 --cols 1048576 --nnz-per-row 50]
    python -m lepton_hpc.bench import    [--rows 2000000 --cols 20 --repeats 2 --ranks 2]
    python -m lepton_hpc.bench text      [--hash-bits 18 --ngrams 1,2 --repeats 3]

One module per benchmark (:mod:`.gradpass`, :mod:`.reduce`, :mod:`.ranks`, :mod:`.matmul`,
:mod:`.allreduce`, :mod:`.models`, :mod:`.predict`, :mod:`.mfshard`, :mod:`.solve`, :mod:`.svd`, ...); :mod:`.common` holds what
they share (the verdict, launching ranks, the default job's data).

Each prints ONE JSON object on stdout (notes go to stderr): the timings as
min/median/max, ``ratio`` (the ratio of the two medians), ``paired_ratio``
(min/median/max of the ratios of the A and B measurements taken side by
side), ``target``, ``target_is`` (">=" or "<=") and ``pass``. The machine may
be shared and noisy, so the two sides of every ratio are measured in the same
run, interleaved (A B B A …), and repeated. ``--strict`` exits 3 when a target
is missed. The data of gradpass/reduce/ranks is the packaged default job's
(synthetic, chunk_rows 4096) with ``--rows``/``--cols``; ``--set
section.key=value`` overrides keys.

Ranks run single-threaded (OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1). An
OPENBLAS_CORETYPE found in the environment is reported, never changed.
To add a benchmark: write a module with ``cli(argv) -> int`` (print the JSON,
return the exit code) and register it in BENCHES. Give every option a ``type=``
from :mod:`.common` (``positive_int``, ``non_negative_float``, ``fraction``,
``ranks_type(n)``, ``existing_file``, ``existing_dir``, ``executable``, ...) and
check options that must agree with ``parser.error``: a bad value is then
argparse's ``error: argument --X: ...`` line, exit 2, before anything runs
(tests/unit/test_bench_args.py lists every bench's options).
"""


#: name: (module, one line of help). Modules are imported only when run.
BENCHES = {
    "gradpass": ("lepton_hpc.bench.gradpass", "gradient pass vs numpy's one-pass read of X (target >= 0.65)"),
    "reduce": ("lepton_hpc.bench.reduce", "step time exact / fast reduction (target <= 1.10)"),
    "ranks": ("lepton_hpc.bench.ranks", "step time -n 1 / -n 2 (target >= 1.6)"),
    "matmul": ("lepton_hpc.bench.matmul", "factored vs dense product: speedup / flop ratio (target >= 0.5)"),
    "allreduce": ("lepton_hpc.bench.allreduce", "Allreduce latency/bandwidth sweep and Hockney fit"),
    "models": ("lepton_hpc.bench.models", "training steps of the app: -n 1 / -n 2, epoch / full batch"),
    "predict": ("lepton_hpc.bench.predict", "predict -n 1 vs numpy+h5py (>= 1.0); -n 2 speedup share of "
                "read bandwidth (>= 0.85)"),
    "als": ("lepton_hpc.bench.als", "ALS-WR sweep time / single-lambda sweep (<= 1.2) and test RMSE (<= 0.667)"),
    "implicit": ("lepton_hpc.bench.implicit", "implicit ALS vs the implicit library: its time / ours at -n 2 "
                 "(>= 1.0), precision@10 within 0.01"),
    "mfshard": ("lepton_hpc.bench.mfshard", "mf sweep with item-sharded V / replicated V (target <= 1.3)"),
    "solve": ("lepton_hpc.bench.solve", "time to the answer, solver auto -n 2 vs scikit-learn lbfgs with 2 "
              "BLAS threads (target >= 2.0)"),
    "svd": ("lepton_hpc.bench.svd", "tall-skinny SVD -n 1/-n 2: numpy QR+SVD time / svd_tsqr time (target >= 2.5)"),
    "sparse": ("lepton_hpc.bench.sparse", "CSR gradient pass vs scipy.sparse X.T @ (X @ w - y) (target >= 1.0)"),
    "import": ("lepton_hpc.bench.tabular_import", "CSV import -n 1 vs pyarrow read_csv + h5py (>= 1.0); peak RSS "
               "per rank < 2 x share + 200 MiB"),
    "text": ("lepton_hpc.bench.text", "text import -n 1 vs sklearn HashingVectorizer.transform (>= 1.0)"),
}

__all__ = ["BENCHES"]
