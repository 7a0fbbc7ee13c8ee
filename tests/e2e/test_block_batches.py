"""Mini-batches of contiguous row blocks: every row once per epoch.

Same bits on any rank count, exact resume across rank counts, the accuracy reached and the
refusal of a block size that does not divide the chunk: tests/mpi/test_glm_loop.py (in-process).
"""

import numpy as np


def test_blocks_cover_every_row_once_per_epoch():
    from lepton_hpc.config import build
    from lepton_hpc.data.shard import Shard
    from lepton_hpc.sampling import BlockBatches

    cfg = build({}, "t", ["data.rows=5000", "data.cols=2", "data.chunk_rows=512"])
    seen = []
    for rank in range(3):
        sh = Shard(cfg.data, 3, rank)
        bb = BlockBatches(sh, 1000, seed=4, block_rows=128)
        for step in range(bb.steps_per_epoch):
            seen.extend(bb.blocks(step).tolist())
    assert sorted(seen) == list(range(-(-5000 // 128)))
    # the next epoch visits them in another order
    sh = Shard(cfg.data, 1, 0)
    bb = BlockBatches(sh, 1000, seed=4, block_rows=128)
    first = np.concatenate([bb.blocks(s) for s in range(bb.steps_per_epoch)])
    second = np.concatenate([bb.blocks(bb.steps_per_epoch + s) for s in range(bb.steps_per_epoch)])
    assert sorted(first) == sorted(second) and not np.array_equal(
        [bb.blocks(0)], [bb.blocks(bb.steps_per_epoch)])


def test_a_rank_without_rows_owns_no_block():
    """2003 rows in 3 chunks at 4 ranks: the last rank's empty range starts inside the last block."""
    from lepton_hpc.config import build
    from lepton_hpc.data.shard import Shard
    from lepton_hpc.sampling import BlockBatches

    cfg = build({}, "t", ["data.rows=2003", "data.cols=2", "data.chunk_rows=700"])
    owned = []
    for rank in range(4):
        bb = BlockBatches(Shard(cfg.data, 4, rank), 300, seed=1, block_rows=100)
        owned.append(np.concatenate([bb.blocks(s) for s in range(bb.steps_per_epoch)]).tolist())
    assert owned[3] == [] and sorted(sum(owned, [])) == list(range(21))
