"""``mpirun -n N python -m lepton_hpc.evaluate RUN_DIR [--data FILE.h5]``.

Scores the newest valid checkpoint of a run, distributedly: each rank reads
only its shard. Regression: MSE and R²; binary: log-loss, accuracy, ROC AUC
and the confusion matrix; multinomial: log-loss, accuracy and the confusion
matrix. Without --data it scores the run's own data, train and held-out test
split separately; with --data it scores every row of that file. Prints JSON
and writes ``RUN_DIR/evaluation.json`` (``evaluation-<file>.json`` with --data), which names
the ``checkpoint`` it scored and its ``step`` (a torn newest step is skipped with a warning).
Data with NaN or Inf, or targets that are not the model's classes, are refused at the first
bad row, as training refuses them; so are feature names not in the model's order.

The data are checked against the checkpoint's fingerprint: without --data, data that
changed since training are refused; with --data any file is scored and the output's
``data_check`` records whether it is the training data (``same_as_training``).

Classifiers name their classes: ``classes`` (the checkpoint attr, else the data's, else
null) and the confusion matrix ``{"labels", "counts"[, "weighted"]}`` with integer counts.
A --data file whose ``classes`` differ from the model's is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from .data.atomic import write_text
from .errors import UserError


def _setup(run_dir: Path, data_path: str | None, comm):
    from . import checkpoint
    from . import comm as C
    from .config import GLM_KINDS, load
    from .data.synthetic import chunk_generator
    from .data.shard import Shard
    from .models.glm import make_kernel
    from .score_inputs import check_run_dir

    def read():
        if not (run_dir / "config.toml").is_file():
            raise UserError(f"{run_dir} is not a run directory (no config.toml)")
        check_run_dir(run_dir, "evaluate", GLM_KINDS)
        cfg = load(str(run_dir / "config.toml"), relative_to=Path.cwd())
        warn = (lambda m: print(m, file=sys.stderr, flush=True))  # a torn newest step: said, not silent
        state = checkpoint.latest_local(run_dir / "checkpoints", warn=warn)
        if state is None:
            raise UserError(f"no checkpoint in {run_dir / 'checkpoints'} to evaluate")
        classes, names = state.attrs.get("classes"), state.attrs.get("feature_names")
        trained = {"fingerprint": state.attrs.get("data_fingerprint"), "checkpoint": str(state.path),
                   "step": state.step, "feature_names": None if names is None else json.loads(names)}
        return cfg, state.replicated("model/"), None if classes is None else json.loads(classes), trained

    cfg, arrays, classes, trained = C.on_root(comm, read)
    data = cfg.data
    if data_path:
        data = dataclasses.replace(data, path=data_path, test_fraction=0.0, w_dataset="")
    W = np.asarray(arrays["model/w"])
    n_classes = W.shape[1] if W.ndim == 2 else 1
    gen = None if data.path or cfg.model.kind == "linear" else chunk_generator(cfg.model.kind, data, n_classes)
    shard = C.agree(comm, Shard, data, comm.size, comm.rank, gen, node_ranks=C.node_size(comm))
    if shard.n_cols != W.shape[0]:
        raise C.JobError(f"the data has {shard.n_cols} columns but the model was trained on {W.shape[0]}", 0)
    if data.path:
        C.on_root(comm, _check_names, data.path, data.x_dataset, trained)
    kernel = make_kernel(cfg.model.kind, shard.n_cols, cfg.model.fit_intercept, shard.chunk_rows, shard.dtype,
                         n_classes)
    parts = [W.ravel()] + ([np.asarray(arrays["model/b"]).ravel()] if cfg.model.fit_intercept else [])
    labels = C.agree(comm, _labels, cfg.model.kind, classes, shard, n_classes)
    digest = C.agree(comm, _scan, shard, cfg.model.kind, n_classes, trained["checkpoint"])
    check = _check_data(comm, shard, digest, trained, data_path)
    return cfg, shard, kernel, np.concatenate(parts), n_classes, labels, check, trained


def _check_names(path: str, x_dataset: str, trained: dict) -> None:
    """The data's feature names against the model's: predict's check (:mod:`lepton_hpc.score_inputs`)."""
    import h5py

    from .score_inputs import check_feature_names, feature_names_of

    with h5py.File(path, "r") as f:
        check_feature_names(feature_names_of(f.get(x_dataset), f), trained["feature_names"], path)


def _scan(shard, kind: str, n_classes: int, model_path: str) -> int:
    """This rank's data digest, after the checks training makes: no NaN or Inf, and (classifiers)
    every target a class of the model; UserError at the first bad row otherwise (the caller agrees)."""
    from .score_inputs import bad_row_error, first_bad_label, label_expectation

    where, digest = shard.cfg.path or "synthetic data", 0
    for i, X, y, _ in shard.chunks_iter():
        bad = shard.first_bad_row(i, X, y)
        if bad is not None:
            raise bad_row_error(where, bad)
        j = None if kind == "linear" else first_bad_label(kind, y, n_classes)
        if j is not None:
            k = "2 classes" if kind == "logistic" else f"{n_classes} classes"
            raise UserError(f"the target at row {shard.chunk_start(i) + j} of {where} is {y[j]:g}, but the model "
                            f"in {model_path} ({kind}, {k}) expects {label_expectation(kind, n_classes)}; pass "
                            f"data labelled as the training data was")
        digest ^= shard.chunk_digest(i, X, y)
    return digest


def _check_data(comm, shard, digest: int, trained: dict, data_path: str | None) -> dict:
    """The data's fingerprint (from this rank's ``digest``) against the checkpoint's. The run's own data
    (no --data) must be what the model was trained on; other data is scored only when --data names it,
    and recorded. Collective."""
    from . import comm as C
    from .problems.glm_reference import fingerprint_text

    got, want = fingerprint_text(C.allreduce_bxor(comm, digest), shard), trained["fingerprint"]
    same = None if not want else got == want
    if data_path is None and same is False:
        raise C.JobError(f"the data at {shard.cfg.path or 'the synthetic source'} is not what {trained['checkpoint']} "
                         f"was trained on (fingerprint {got}, the checkpoint's {want}): it changed since "
                         f"training; pass --data {shard.cfg.path or 'FILE.h5'} to score it anyway", 0)
    return {"path": shard.cfg.path or None, "explicit": data_path is not None, "fingerprint": got,
            "training_fingerprint": want, "same_as_training": same}


def _labels(kind: str, classes: list | None, shard, n_classes: int) -> list | None:
    """The model's class labels (checkpoint attr, else the data's when the count fits); the data's
    ``classes`` must be the model's."""
    if kind == "linear":
        return None
    k = max(n_classes, 2)
    if classes is not None and shard.classes is not None and list(shard.classes) != list(classes):
        raise UserError(f"the data names the classes {shard.classes}, but the model was trained on "
                        f"{classes}; the class codes in /y would not mean the same")
    if classes is None and shard.classes is not None and len(shard.classes) == k:
        classes = list(shard.classes)
    return classes


def main(argv=None) -> int:
    from .cli import prog

    p = argparse.ArgumentParser(prog=prog("evaluate"), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="the --out directory of a training run (its newest committed checkpoint)")
    p.add_argument("--data", help="score this HDF5 file (all rows) instead of the run's own data; without it "
                                  "the run's data must be what the model was trained on (fingerprint)")
    args = p.parse_args(argv)
    from . import comm as C
    from .problems.glm_metrics import evaluate

    def score(comm) -> int:
        run_dir = Path(args.run_dir)
        cfg, shard, kernel, theta, k, labels, check, trained = _setup(run_dir, args.data, comm)
        splits = ["all"] if args.data else ["train"] + (["test"] if cfg.data.test_fraction > 0 else [])
        result = {"run_dir": str(run_dir), "model": cfg.model.kind, "checkpoint": trained["checkpoint"],
                  "step": trained["step"], "data": shard.describe(), "data_check": check, "world_size": comm.size}
        if cfg.model.kind != "linear":
            result["classes"] = labels
        for split in splits:
            result[split] = evaluate(comm, kernel, shard, theta, k, split, labels)
        shard.close()
        if comm.rank == 0:
            name = f"evaluation-{Path(args.data).stem}.json" if args.data else "evaluation.json"
            text = json.dumps(result, indent=2)
            write_text(run_dir / name, text + "\n")
            print(text)
        return 0

    return C.run_app(score)


if __name__ == "__main__":
    sys.exit(main())
