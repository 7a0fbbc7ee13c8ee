"""The one-call-per-step C path gives the same bits as the per-chunk kernel."""

import numpy as np
import pytest

from lepton_hpc.config import build
from lepton_hpc.data.shard import Shard
from lepton_hpc.models import fused
from lepton_hpc.models.glm import make_kernel

pytestmark = pytest.mark.skipif(not fused.available, reason="the C kernel was not built (no compiler)")


@pytest.mark.parametrize("kind", ["linear", "logistic"])
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("test_fraction", [0.0, 0.3])
def test_plan_equals_per_chunk_bits(kind, intercept, test_fraction):
    cfg = build({}, "t", ["data.rows=5003", "data.cols=7", "data.chunk_rows=512",
                          f"data.test_fraction={test_fraction}"])
    shard = Shard(cfg.data, 3, 1)
    if kind == "logistic":  # any 0/1 targets do for the arithmetic
        for _, X, y, _ in shard.chunks_iter():
            y[:] = (X[:, 0] > 0)
    k = make_kernel(kind, 7, intercept, 512, "float64")
    theta = np.random.default_rng(1).standard_normal(k.n_params)
    plan = k.plan(shard)
    assert plan is not None
    a = np.full((len(shard.chunks), k.width), np.nan)
    k.partials_all(plan, theta, a)
    b = np.empty_like(a)
    for i, X, y, sw in shard.chunks_iter():
        k.partial(X, y, sw, theta, b[i])
    assert np.array_equal(a, b)


def test_no_plan_when_standardizing_or_streaming():
    cfg = build({}, "t", ["data.rows=1000", "data.cols=3", "data.chunk_rows=100"])
    k = make_kernel("linear", 3, True, 100, "float64")
    k.set_standardization(np.zeros(3), np.ones(3))
    assert k.plan(Shard(cfg.data, 1, 0)) is None
    k2 = make_kernel("linear", 3, True, 100, "float32")
    assert k2.plan(Shard(build({}, "t", ["data.rows=1000", "data.cols=3", "data.chunk_rows=100",
                                         "data.dtype=float32"]).data, 1, 0)) is None
