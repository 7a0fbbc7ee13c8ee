"""What ``predict`` and ``evaluate`` check about their inputs, once for both.

* the run directory: a run whose kind has a model to score (a matmul run writes factors, not one);
* ``--checkpoint``: a step of a model of the run's kind and shapes, not another run's;
* ``--out``: a file name (:func:`lepton_hpc.data.atomic.check_target`) that is none of the inputs
  (the ``--data`` file, the run's data, a checkpoint) and not inside a run's ``checkpoints/``;
* the data: the model's feature names in the model's order, finite values, labels the model knows.

Nothing here talks to MPI: the callers run these through :func:`lepton_hpc.comm.agree` / ``on_root``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .data.atomic import check_output as check_out  # noqa: F401  (predict's --out rule: the writers' one)
from .data.shard import first_bad_row  # noqa: F401  (the one row scan, used here by predict)
from .errors import UserError

SCORED_KINDS = ("linear", "logistic", "softmax", "mf")


# -- the run and its checkpoint ------------------------------------------------------------

def run_kind(run_dir: Path) -> str | None:
    """``model.kind`` of the run's ``config.toml``, or None when it has none (not collective)."""
    from .config import load

    path = Path(run_dir) / "config.toml"
    return load(str(path), relative_to=Path.cwd()).model.kind if path.is_file() else None


def check_run_dir(run_dir: Path, what: str, kinds: tuple[str, ...] = SCORED_KINDS) -> None:
    """``run_dir`` is a run directory with checkpoints, of a kind in ``kinds``; UserError otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    kind = run_kind(run_dir)
    if kind is not None and kind not in kinds:
        served = ", ".join(kinds[:-1]) + " and " + kinds[-1]
        why = f", which {what} does not serve" if kind in SCORED_KINDS else f": it has no model, so nothing to {what}"
        raise UserError(f"{run_dir} is a model.kind={kind} run{why} ({what} serves {served} runs)")
    if not (run_dir / "checkpoints").is_dir():
        raise UserError(f"{run_dir} is not a run directory (no checkpoints/); pass the --out of a training run")


def model_shapes(snap) -> dict:
    """Every ``model/`` part of a checkpoint step and its global shape (sharded or replicated)."""
    import h5py

    shapes = {name: (spec["n_rows"], *spec["row_shape"]) for name, spec in snap.marker.get("sharded", {}).items()
              if name.startswith("model/")}
    def visit(name, obj) -> None:  # (a value returned would stop the visit)
        if isinstance(obj, h5py.Dataset) and name.startswith("model/"):
            shapes.setdefault(name, obj.shape)

    with h5py.File(snap.path, "r") as f:
        f.visititems(visit)
    return shapes


def _newest_step(run_dir: Path):
    """The newest committed step of the run (not verified: only its attrs and shapes are read), or None."""
    from . import checkpoint

    directory = run_dir / "checkpoints"
    for step in reversed(checkpoint.list_steps(directory)):
        try:
            marker = json.loads(checkpoint.marker_file(directory, step).read_text())
            attrs = checkpoint.step_attrs(checkpoint.main_file(directory, step))
            return checkpoint.Snapshot(directory, step, marker, attrs)
        except (OSError, ValueError):  # a torn step: the one before it
            continue
    return None


def _describe(kind: str, shapes: dict) -> str:
    return f"a {kind} model (" + ", ".join(f"{n} {tuple(s)}" for n, s in sorted(shapes.items())) + ")"


def check_checkpoint_of_run(snap, kind: str, run_dir: Path) -> None:
    """``--checkpoint`` must hold a model of the run's kind and shapes (the checkpoint's own config then
    governs, as it is the config it was trained with); UserError naming both otherwise. Not collective."""
    from .api import run_config

    run_dir = Path(run_dir)
    if snap.directory.resolve() == (run_dir / "checkpoints").resolve():
        return
    own = _newest_step(run_dir)
    if own is None:
        want_kind, want_shapes = run_kind(run_dir), None
    else:
        want_kind, want_shapes = own.attrs.get("model_kind") or run_config(own).model.kind, model_shapes(own)
    got_shapes = model_shapes(snap)
    if want_kind not in (None, kind) or (want_shapes is not None and want_shapes != got_shapes):
        shown = want_kind if want_shapes is None else _describe(want_kind, want_shapes)
        raise UserError(f"--checkpoint {snap.path} is {_describe(kind, got_shapes)}, but {run_dir} holds {shown}; "
                        f"pass the run directory that checkpoint belongs to ({snap.directory.parent})")


# -- --out ------------------------------------------------------------------------------------

# -- the data ---------------------------------------------------------------------------------

def feature_names_of(X, f) -> list[str] | None:
    """The ``feature_names`` attr of ``X`` (an h5py dataset or group, or None), else of the open file ``f``."""
    names = None if X is None else X.attrs.get("feature_names")
    names = f.attrs.get("feature_names") if names is None else names
    if names is None:
        return None
    return [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(names).tolist()]


def check_feature_names(got: list | None, want: list | None, path: str) -> None:
    """The data's feature names must be the model's, in the model's order (when both are known)."""
    if got is None or want is None:
        return
    want = [str(n) for n in want]
    if got != want:
        i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise UserError(f"the features of {path} do not match the model's: feature {i} is "
                        f"{got[i] if i < len(got) else 'missing'!r}, the model expects "
                        f"{want[i] if i < len(want) else 'none'!r} (expected features: {', '.join(want)})")


def label_expectation(kind: str, n_classes: int) -> str:
    """What a classifier's targets must be: ``0 or 1`` or ``an integer class 0, 1, ..., K-1``."""
    k = 2 if kind == "logistic" else n_classes
    shown = ", ".join(map(str, range(k - 1))) if k <= 5 else f"0, 1, ..., {k - 2}"
    return f"{shown} or {k - 1}" if k <= 5 else f"an integer class {shown}, {k - 1}"


def first_bad_label(kind: str, y: np.ndarray, n_classes: int | None) -> int | None:
    """Index of the first target that is not a class of the model (0/1 logistic, 0..K-1 softmax; K None:
    any integer >= 0, as training takes K from the data), else None."""
    top = 1 if kind == "logistic" else np.inf if n_classes is None else n_classes - 1
    ok = (y >= 0) & (y <= top) & (y == np.round(y))
    return None if ok.all() else int(np.argmin(ok))


def bad_row_error(path: str, row: int) -> UserError:
    """The error of a NaN or Inf at global ``row`` (the first bad one), worded as training's."""
    return UserError(f"the data has NaN or Inf at row {row} (the first bad row) in {path}; clean or drop such rows")
