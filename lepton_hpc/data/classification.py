"""``python -m lepton_hpc.data synth logistic|softmax``: synthetic classification data to HDF5.

The rows come from :mod:`lepton_hpc.data.synthetic.classification` (the same
numbers a synthetic job generates in-process); this module only writes them,
chunk by chunk and atomically.
"""

from __future__ import annotations

import h5py
import numpy as np

from ..errors import UserError
from ..layout import chunk_range, n_chunks
from .atomic import atomic_path
from .synthetic.classification import (DEFAULT_SCALE, logistic_chunk, logistic_truth, softmax_chunk,
                                       softmax_truth)

# HDF5 1.8 file format: attributes over 64 KiB (true weights of a wide model) need it.
LIBVER = ("v108", "v108")


def synth_classification(out: str, kind: str, rows: int, cols: int, classes: int | None = None,
                         noise: float = 0.0, seed: int = 0, chunk_rows: int = 4096,
                         compression: str | None = None, dtype: str = "float64",
                         features: str = "normal", scale: float = DEFAULT_SCALE) -> None:
    """Write /X (rows×cols) and /y (rows, class ids as float64) chunk by chunk, atomically.

    ``kind`` is ``logistic`` (``classes`` None or 2) or ``softmax`` (``classes`` >= 2).
    ``/X`` gets the attr ``feature_names`` (``x0``, ``x1``, ...) and ``/y`` ``classes`` (0..K-1).
    The ground truth is stored as attrs ``true_weights`` (logistic: (cols,), softmax:
    (cols, classes)) and ``true_bias`` (logistic, a float) or ``true_biases`` (softmax, (classes,)).
    """
    for name, value in (("rows", rows), ("cols", cols), ("chunk-rows", chunk_rows)):
        if value <= 0:
            raise UserError(f"--{name} must be > 0, got {value}")
    if not np.isfinite(noise) or noise < 0:
        raise UserError(f"--noise must be finite and >= 0, got {noise}")
    if not np.isfinite(scale) or scale <= 0:
        raise UserError(f"the weight scale must be finite and > 0, got {scale}")
    if kind == "logistic":
        if classes not in (None, 2):
            raise UserError(f"synth logistic makes 2 classes; got --classes {classes} "
                             f"(use synth softmax for more)")
        n_classes = 2
        w, b = logistic_truth(seed, cols, scale)
        attrs = {"task": "binary", "true_weights": w, "true_bias": b}

        def gen(c, m):
            return logistic_chunk(seed, c, m, w, b, noise, features)
    elif kind == "softmax":
        if classes is None or classes < 2:
            raise UserError(f"synth softmax needs --classes K with K >= 2, got {classes}")
        n_classes = classes
        W, bs = softmax_truth(seed, cols, classes, scale)
        attrs = {"task": "multiclass", "true_weights": W, "true_biases": bs}

        def gen(c, m):
            return softmax_chunk(seed, c, m, W, bs, noise, features)
    else:
        raise UserError(f"unknown synthetic classification kind {kind!r} (logistic or softmax)")
    if features not in ("normal", "uniform"):
        raise UserError(f"--features must be normal or uniform, got {features!r}")
    opts = {} if compression in (None, "none") else {"compression": compression}
    with atomic_path(out) as tmp, h5py.File(tmp, "w", libver=LIBVER) as f:
        X = f.create_dataset("X", (rows, cols), dtype=dtype, chunks=(min(chunk_rows, rows), cols), **opts)
        y = f.create_dataset("y", (rows,), dtype="float64", chunks=(min(chunk_rows, rows),), **opts)
        for c in range(n_chunks(rows, chunk_rows)):
            lo, hi = chunk_range(rows, chunk_rows, c)
            X[lo:hi], y[lo:hi] = gen(c, hi - lo)
        # the importers' contract (lepton_hpc.data.importers): names per column, the label of each code
        X.attrs["feature_names"] = np.asarray([f"x{j}" for j in range(cols)], dtype=h5py.string_dtype("utf-8"))
        y.attrs["classes"] = np.arange(n_classes, dtype=np.int64)
        f.attrs.update({"kind": kind, "source": f"synth:{kind}", "n_classes": n_classes,
                        "target_names": [str(k) for k in range(n_classes)], "noise": noise,
                        "seed": seed, "chunk_rows": chunk_rows, "features": features,
                        "weight_scale": scale, **attrs})
