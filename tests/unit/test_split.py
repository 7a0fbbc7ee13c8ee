"""The held-out split is drawn per row from (seed, global row): the same at any chunk_rows and rank count."""

import numpy as np

from lepton_hpc.config import build
from lepton_hpc.data.shard import Shard
from lepton_hpc.data.split import held_out, row_uniforms


def _mask(rows, chunk_rows, size, fraction=0.3, seed=7):
    cfg = build({"data": {"rows": rows, "cols": 2, "chunk_rows": chunk_rows, "test_fraction": fraction,
                          "seed": seed}}, "t").data
    parts = []
    for rank in range(size):
        sh = Shard(cfg, size, rank)
        for i, c in enumerate(sh.chunks):
            parts.append(sh.test_all[i * sh.stride:i * sh.stride + sh.layout.chunk_rows_range(c)[1]
                                     - sh.layout.chunk_rows_range(c)[0]] > 0)
    return np.concatenate(parts)


def test_split_does_not_depend_on_chunk_rows_or_rank_count():
    want = held_out(7, 0.3, 0, 1001)
    for chunk_rows, size in ((64, 1), (500, 3), (1001, 2), (7, 4)):
        assert np.array_equal(_mask(1001, chunk_rows, size), want), (chunk_rows, size)
    assert 0.25 < want.mean() < 0.35


def test_row_uniforms_are_per_row_and_seeded():
    u = row_uniforms(0, 0, 100_000)
    assert np.array_equal(u[500:600], row_uniforms(0, 500, 600))  # any slice: the same draws
    assert not np.array_equal(u[:1000], row_uniforms(1, 0, 1000))
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01  # neighbouring rows are unrelated
