"""``mpirun -n N python -m lepton_hpc.predict RUN_DIR --data FILE.h5 --out PRED.h5``.

Predicts with the newest committed checkpoint of a run (or ``--checkpoint PATH``),
distributedly: each rank reads only its own rows of FILE.h5 (whole logical chunks of
the run's ``data.chunk_rows``, :class:`lepton_hpc.layout.Layout`), predicts them chunk
by chunk and writes its own rows of ONE output file, in rank order, atomically
(:func:`lepton_hpc.data.ordered_write.write_in_rank_order`); no rank gathers the
predictions. The output is the same to the bit at any rank count.

* regression (``linear``): ``/pred`` (n,)
* classification (``logistic``, ``softmax``): ``/label`` (n,) and ``/proba`` (n×K; K=2
  for logistic as [1−p, p]); labels are the checkpoint's ``classes`` (JSON list) when
  it has them, else 0..K−1.
* recommender (``mf``) with ``--top-k K``: ``/items`` (n_users×K, int64) and ``/scores``
  (float64), each user's K best items not rated in the run's training data (ties: the
  lower item index first; −1 and −inf pad a user with fewer unrated items). Each rank
  handles its own users, from its rows of the sharded ``model/U``.

Refused in one sentence, before anything is written (:mod:`lepton_hpc.score_inputs`): an
``--out`` that is an input (``--data``, the run's data, the checkpoint) or lies inside a run's
``checkpoints/``; a ``--checkpoint`` whose model is of another kind or shape than the run's
(the checkpoint's own config governs otherwise); options of another model (``--top-k`` on a
GLM run); a row with NaN or Inf; a run with no model (``model.kind = "matmul"``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .errors import UserError

IMPORT_HINT = ("convert it first with `python -m lepton_hpc.data import csv FILE.csv --target COLUMN --out "
               "FILE.h5` or `python -m lepton_hpc.data import npy X.npy y.npy --out FILE.h5`")


# -- the model ------------------------------------------------------------------------------

def _config(snap, run_dir: Path):
    """The run's configuration: the checkpoint's ``config`` attr, else RUN_DIR/config.toml."""
    from .api import run_config
    from .config import load

    if not snap.attrs.get("config"):
        if not (run_dir / "config.toml").is_file():
            raise UserError(f"checkpoint {snap.path} records no config and {run_dir} has no config.toml")
        return load(str(run_dir / "config.toml"), relative_to=Path.cwd())
    return run_config(snap)


def open_model(comm, run_dir: Path, checkpoint_path: str | None):
    """(snapshot, config) of the checkpoint to predict with. Collective over ``comm``.

    ``--checkpoint`` must hold a model of the run's kind and shapes; its own config (the one it
    was trained with) then governs."""
    from . import checkpoint
    from . import comm as C
    from .score_inputs import check_checkpoint_of_run, check_run_dir

    C.on_root(comm, check_run_dir, run_dir, "predict")
    if checkpoint_path:
        snap = checkpoint.open_path(comm, Path(checkpoint_path))
    else:
        warn = (lambda m: print(m, file=sys.stderr, flush=True)) if comm.rank == 0 else (lambda m: None)
        snap = checkpoint.latest(comm, run_dir / "checkpoints", warn=warn)
        if snap is None:
            raise C.JobError(f"no committed checkpoint in {run_dir / 'checkpoints'}; train the run first "
                             f"or pass --checkpoint PATH")
    cfg = C.agree(comm, _config, snap, run_dir)
    if checkpoint_path:
        C.on_root(comm, check_checkpoint_of_run, snap, cfg.model.kind, run_dir)
    return snap, cfg


class GLMModel:
    """The fitted model of a linear, logistic or softmax checkpoint (:func:`lepton_hpc.api.from_snapshot`)
    with what the output file needs: its datasets, their dtypes and one chunk's predictions."""

    def __init__(self, snap, cfg):
        from .api import from_snapshot

        self.fitted = from_snapshot(snap)
        self.kind, self.path = cfg.model.kind, snap.path
        self.n_features = self.fitted.n_features_in_
        names = getattr(self.fitted, "feature_names_in_", None)
        self.feature_names = None if names is None else list(names)
        self.chunk_rows, self.dtype = cfg.data.chunk_rows, np.dtype(cfg.data.dtype)
        self.labels = None if self.kind == "linear" else _label_array(self.fitted.classes_)

    def outputs(self, n: int) -> dict:
        """Output dataset name → (shape, dtype) for ``n`` rows."""
        if self.kind == "linear":
            return {"pred": ((n,), np.float64)}
        import h5py

        label = h5py.string_dtype() if self.labels.dtype == object else self.labels.dtype
        return {"label": ((n,), label), "proba": ((n, len(self.labels)), np.float64)}

    def predict(self, X: np.ndarray) -> dict:
        """One chunk's predictions, by output dataset."""
        out = self.fitted.outputs_of_checked(X)  # shapes checked at open, NaN/Inf in predict_rows
        if self.kind == "linear":
            return {"pred": out}
        return {"label": self.labels[np.argmax(out, axis=1)], "proba": out}


def _label_array(classes) -> np.ndarray:
    """Class labels as HDF5 stores them: int64, float64 or (strings) an object array."""
    values = list(np.asarray(classes).tolist())
    if all(isinstance(c, (int, float)) and float(c).is_integer() for c in values):
        return np.asarray(values, dtype=np.int64)
    if all(isinstance(c, (int, float)) for c in values):
        return np.asarray(values, dtype=np.float64)
    return np.asarray([str(c) for c in values], dtype=object)


# -- the data ------------------------------------------------------------------------------

def open_features(path: str, x_dataset: str, model: GLMModel):
    """The h5py file and its ``/x_dataset`` checked against the model; UserError otherwise. Not collective."""
    import h5py

    from .data.shard import open_hdf5

    from .data.sniff import describe_non_hdf5

    d = model.n_features
    what = describe_non_hdf5(path) if Path(path).is_file() else None
    if what is not None:
        raise UserError(f"{what} (the model expects /{x_dataset} of shape (n, {d}))")
    f = open_hdf5(path, "data file", f"data file {path} does not exist; pass an HDF5 file with /{x_dataset} of "
                                     f"shape (n, {d})")  # a folder, a missing or a cut-short file: one sentence
    try:
        from .data.sparse_shard import CSRRows, is_csr

        if is_csr(f, x_dataset):  # sparse X: read per logical chunk as CSR, never densified
            X = CSRRows(f[x_dataset], path)
            if X.shape[1] != d:
                raise UserError(f"/{x_dataset} in {path} has {X.shape[1]} features but the model in {model.path} "
                                f"expects {d}")
            _check_names(X, f, path, model)
            return f, X
        X = f.get(x_dataset)
        if not isinstance(X, h5py.Dataset) or X.ndim != 2 or X.dtype.kind not in "fiu":
            what = "not found" if X is None else f"of shape {getattr(X, 'shape', None)}"
            raise UserError(f"/{x_dataset} in {path} is {what}; the model expects a numeric /{x_dataset} of shape "
                            f"(n, {d}) (set data.x_dataset in the run's config, or {IMPORT_HINT})")
        if X.shape[1] != d:
            raise UserError(f"/{x_dataset} in {path} has {X.shape[1]} features but the model in {model.path} "
                            f"expects shape (n, {d}); give data with the training features in the same order "
                            f"({IMPORT_HINT})")
        _check_names(X, f, path, model)
        return f, X
    except BaseException:
        f.close()
        raise


def _check_names(X, f, path: str, model: GLMModel) -> None:
    from .score_inputs import check_feature_names, feature_names_of

    check_feature_names(feature_names_of(X, f), model.feature_names, path)


def predict_rows(model: GLMModel, X, layout, y=None, digests: list | None = None, where: str = "the data") -> dict:
    """This rank's predictions (one array per output), computed one logical chunk at a time.

    With ``y`` (the file's targets) and a ``digests`` list, each chunk's data digest is appended
    (the training run's fingerprint is their XOR, :func:`data_check`). A row with NaN or Inf in X
    is refused (``where`` names the data), as training refuses it."""
    from .data.shard import aligned_empty, chunk_digest
    from .score_inputs import bad_row_error, first_bad_row

    lo, hi = layout.rows()
    out = {name: np.empty((hi - lo, *shape[1:]), dtype=dt if dt is not None and np.dtype(dt) != object else object)
           for name, (shape, dt) in model.outputs(hi - lo).items()}
    sparse = not hasattr(X, "read_direct")
    buf = None if sparse else aligned_empty((model.chunk_rows, model.n_features), model.dtype)
    ybuf = np.empty(model.chunk_rows)
    for c in layout.chunks():
        a, b = layout.chunk_rows_range(c)
        if sparse:
            rows = X.read_rows(a, b)
        else:
            X.read_direct(buf, np.s_[a:b], np.s_[0:b - a])
            rows = buf[:b - a]
        with np.errstate(invalid="ignore", over="ignore"):
            pred = model.predict(rows)
        # a NaN/Inf in a row makes its X·w (so every float output) non-finite: only then scan the rows
        flagged = sparse or not all(np.isfinite(v).all() for v in pred.values() if v.dtype.kind == "f")
        bad = first_bad_row(rows) if flagged else None  # (a flagged chunk of finite rows: an overflow)
        if bad is not None:
            raise bad_row_error(where, a + bad)
        if y is not None and digests is not None:
            y.read_direct(ybuf, np.s_[a:b], np.s_[0:b - a])
            digests.append(chunk_digest(c, rows, ybuf[:b - a]))
        for name, arr in pred.items():
            out[name][a - lo:b - lo] = arr
    return out


def data_check(comm, snap, y, digests: list, n_rows: int, n_cols: int, dtype, path: str) -> dict:
    """What predict records about its --data: the file's fingerprint (when it has the targets the
    fingerprint covers) against the training run's. Collective over ``comm``."""
    from . import comm as C

    want = snap.attrs.get("data_fingerprint")
    got = None
    if y is not None:
        digest = 0
        for d in digests:
            digest ^= d
        got = f"{C.allreduce_bxor(comm, digest):016x}-{n_rows}x{n_cols}-{np.dtype(dtype).name}"
    same = None if got is None or not want else got == want
    return {"path": str(path), "explicit": True, "fingerprint": got, "training_fingerprint": want,
            "same_as_training": same}


# -- writing -------------------------------------------------------------------------------

def write_output(comm, out_path: str, row_lo: int, local: dict, specs: dict, attrs: dict) -> None:
    """Write ONE file ``out_path``: every rank its rows ``[row_lo, …)`` of each dataset. Collective."""
    import h5py

    from .data.ordered_write import write_in_rank_order

    def create(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            for name, (shape, dtype) in specs.items():
                f.create_dataset(name, shape, dtype=dtype)
            f.attrs.update(attrs)

    def write_own(tmp: str) -> None:
        with h5py.File(tmp, "r+") as f:
            for name, arr in local.items():
                f[name][row_lo:row_lo + len(arr)] = arr

    has_rows = any(len(a) for a in local.values())
    write_in_rank_order(comm, out_path, create, write_own if has_rows else None, f"writing {out_path!r}")


def predict_glm(comm, snap, cfg, data_path: str, out_path: str) -> dict:
    """Predict every row of ``data_path`` into ``out_path``. Collective over ``comm``."""
    from . import comm as C
    from .layout import Layout

    model = C.agree(comm, GLMModel, snap, cfg)
    f, X = C.agree(comm, open_features, data_path, cfg.data.x_dataset, model)
    try:
        n = X.shape[0]
        y = f.get(cfg.data.y_dataset)
        y = y if getattr(y, "shape", None) == (n,) and y.dtype.kind in "fiu" else None
        y = None if C.allreduce_min_ints(comm, [y is not None])[0] == 0 else y
        layout = Layout(n, model.chunk_rows, comm.size, comm.rank)
        digests: list = []
        local = C.agree(comm, predict_rows, model, X, layout, y, digests, data_path)
        check = data_check(comm, snap, y, digests, n, model.n_features, model.dtype, data_path)
    finally:
        f.close()
    attrs = {"model_kind": model.kind, "checkpoint": str(snap.path), "step": snap.step, "data": str(data_path),
             "rows": n, "data_check": json.dumps(check)}
    write_output(comm, out_path, layout.rows()[0], local, model.outputs(n), attrs)
    return {"rows": n, "outputs": sorted(local), "data_check": check}


# -- the CLI -------------------------------------------------------------------------------

def check_args(args, snap, cfg) -> None:
    """What the options may be for this run's model, and an ``--out`` that is none of the inputs."""
    from .score_inputs import check_out

    kind = cfg.model.kind
    if kind == "mf":
        if args.top_k is None:
            raise UserError("--top-k K is required for a recommender (model.kind=mf) run")
        if args.top_k < 1:
            raise UserError(f"--top-k must be at least 1 (how many items to recommend per user), got {args.top_k}")
    elif args.top_k is not None:
        raise UserError(f"--top-k applies to recommender (model.kind=mf) runs; {args.run_dir} is a {kind} run, "
                        f"which predicts every row of --data (drop --top-k)")
    check_out(args.out, [args.data, cfg.data.path or None, snap.path, Path(args.run_dir) / "config.toml"])


def main(argv=None) -> int:
    from .cli import prog

    p = argparse.ArgumentParser(prog=prog("predict"), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="the --out directory of a training run")
    p.add_argument("--data", help="HDF5 file whose rows to predict (linear/logistic/softmax); mf: the ratings "
                                  "whose items are excluded (default: the run's data)")
    p.add_argument("--out", required=True, help="the output HDF5 file (written atomically)")
    p.add_argument("--checkpoint", help="a checkpoints/step-NNNNNNNN.h5 (default: the newest committed one)")
    p.add_argument("--top-k", type=int, help="mf: how many items to recommend per user")
    args = p.parse_args(argv)
    from . import comm as C

    def body(comm) -> int:
        t = time.perf_counter()
        snap, cfg = open_model(comm, Path(args.run_dir), args.checkpoint)
        C.on_root(comm, check_args, args, snap, cfg)
        if cfg.model.kind == "mf":
            from .recommend import predict_top_k

            result = predict_top_k(comm, snap, cfg, args.top_k, args.data, args.out)
        elif cfg.model.kind in ("linear", "logistic", "softmax"):
            if not args.data:
                raise C.JobError(f"--data FILE.h5 is required to predict with a {cfg.model.kind} model")
            result = predict_glm(comm, snap, cfg, args.data, args.out)
        else:
            raise C.JobError(f"predict serves linear, logistic, softmax and mf runs, not model.kind="
                             f"{cfg.model.kind}")
        if comm.rank == 0:
            print(json.dumps({"out": args.out, "model": cfg.model.kind, "checkpoint": str(snap.path),
                              "world_size": comm.size, **result, "seconds": time.perf_counter() - t}), flush=True)
        return 0

    return C.run_app(body)


if __name__ == "__main__":
    sys.exit(main())
