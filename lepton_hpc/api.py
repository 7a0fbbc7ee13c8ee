"""``lepton_hpc.load(path)``: the fitted model of a run, from its checkpoint alone, in one process.

``path`` is a run directory (its newest committed checkpoint), a
``checkpoints/step-NNNNNNNN.h5`` of a committed step, or a ``.npz`` written by
``model.save``. No MPI is imported on this path. Linear, logistic and softmax
runs give :class:`~lepton_hpc.fitted.LinearModel`, :class:`~lepton_hpc.fitted.LogisticModel`
and :class:`~lepton_hpc.fitted.SoftmaxModel`; recommender runs (``model.kind = "mf"``)
give :class:`~lepton_hpc.fitted_mf.RecommenderModel`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from . import checkpoint
from .errors import UserError
from .fitted import GLM_CLASSES, glm_from_npz, read_npz

WHAT = "pass a run directory, a checkpoints/step-NNNNNNNN.h5 file or a model .npz"


def load(path):
    """The fitted model in ``path`` (see the module doc); UserError with one sentence otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise UserError(f"load needs a path (str or os.PathLike), got {type(path).__name__}; {WHAT}")
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p} does not exist; {WHAT}")
    if p.is_dir():
        return from_snapshot(_latest(p))
    if p.suffix == ".npz":
        return _from_npz(p)
    if not checkpoint.STEP_FILE.match(p.name):
        raise UserError(f"{p} is neither a run directory, a checkpoint step file nor a .npz; {WHAT}")
    return from_snapshot(checkpoint.open_local_path(p))


def _latest(directory: Path):
    ckpts = directory / "checkpoints"
    if not ckpts.is_dir():
        if not checkpoint.list_steps(directory):
            raise UserError(f"{directory} is not a run directory (no checkpoints/ in it); {WHAT}")
        ckpts = directory  # the checkpoints/ folder itself
    snap = checkpoint.latest_local(ckpts, warn=lambda m: warnings.warn(m, stacklevel=3))
    if snap is None:
        raise UserError(f"run {directory} has no committed checkpoint yet; wait for the first checkpoint "
                        f"(checkpoint.every) or the end of the run")
    return snap


def _from_npz(path: Path):
    meta, arrays = read_npz(path)
    kind = meta.get("kind")
    if kind in GLM_CLASSES:
        return glm_from_npz(meta, arrays, path)
    if kind == "mf":
        from .fitted_mf import mf_from_npz

        return mf_from_npz(meta, arrays, path)
    raise UserError(f"{path} holds a model of kind {kind!r}, which this version cannot load")


def run_config(snap):
    """The run's resolved :class:`~lepton_hpc.config.JobConfig`, from the checkpoint's ``config`` attribute."""
    from .config import build, tomllib

    text = snap.attrs.get("config")
    if not isinstance(text, str):
        raise UserError(f"checkpoint {snap.path} carries no run config; it was not written by a training run")
    try:
        return build(tomllib.loads(text), "run")
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"the run config in checkpoint {snap.path} is not valid TOML ({exc})") from None


def _json_attr(snap, name: str):
    value = snap.attrs.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return json.loads(value)
        return [v.decode() if isinstance(v, bytes) else v for v in value]  # an HDF5 array attribute
    except json.JSONDecodeError:
        raise UserError(f"checkpoint attribute {name!r} of {snap.path} is not a JSON list") from None


def from_snapshot(snap):
    """The fitted model of one opened checkpoint step (:class:`lepton_hpc.checkpoint.Snapshot`)."""
    cfg = run_config(snap)
    kind = snap.attrs.get("model_kind", cfg.model.kind)
    source = str(snap.path)
    if kind == "mf":
        return _recommender(snap, cfg, source)
    if kind not in GLM_CLASSES:
        raise UserError(f"model.kind={kind} runs have no fitted model to load (linear, logistic, softmax or mf)")
    arrays = snap.replicated("model/")
    if "model/w" not in arrays:
        raise UserError(f"checkpoint {snap.path} holds no /model/w")
    b = arrays.get("model/b") if cfg.model.fit_intercept else None
    return GLM_CLASSES[kind](arrays["model/w"], b, classes=_json_attr(snap, "classes"),
                             feature_names=_json_attr(snap, "feature_names"), n_iter=snap.step, source=source)


def _recommender(snap, cfg, source: str):
    from .fitted_mf import RecommenderModel, RunRatings

    shape_u, shape_v = snap.shape("model/U"), snap.shape("model/V")
    if shape_u is None or shape_v is None:
        raise UserError(f"checkpoint {snap.path} holds no model/U and model/V")
    U = snap.rows("model/U", 0, shape_u[0])
    V = snap.rows("model/V", 0, shape_v[0])
    return RecommenderModel(U, V, RunRatings(cfg.data, U.shape[0], V.shape[0]), n_iter=snap.step, source=source)
