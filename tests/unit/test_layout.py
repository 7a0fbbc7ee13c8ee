import pytest

from lepton_hpc.layout import (block_range, chunk_range, chunks_of_rank, dyadic_cover, n_chunks,
                                  rows_of_rank)


@pytest.mark.parametrize("n_rows,chunk_rows,expect", [(0, 4, 0), (1, 4, 1), (8, 4, 2), (9, 4, 3)])
def test_n_chunks(n_rows, chunk_rows, expect):
    assert n_chunks(n_rows, chunk_rows) == expect


def test_zero_chunk_rows_is_an_error():
    with pytest.raises(ValueError, match="chunk_rows"):
        n_chunks(10, 0)


def test_chunk_ranges_tile_the_rows():
    rows = [chunk_range(103, 10, c) for c in range(n_chunks(103, 10))]
    assert rows[0] == (0, 10) and rows[-1] == (100, 103)
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:]))


@pytest.mark.parametrize("n_items", [0, 1, 5, 7, 10, 64])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 12])
def test_blocks_are_balanced_contiguous_and_cover(n_items, size):
    blocks = [block_range(n_items, size, r) for r in range(size)]
    assert blocks[0][0] == 0 and blocks[-1][1] == n_items
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    sizes = [hi - lo for lo, hi in blocks]
    assert max(sizes) - min(sizes) <= 1


def test_more_ranks_than_chunks_leaves_empty_ranks():
    owned = [chunks_of_rank(3, 5, r) for r in range(5)]
    assert [len(o) for o in owned] == [1, 1, 1, 0, 0]
    assert rows_of_rank(25, 10, 5, 4) == (25, 25)
    assert rows_of_rank(25, 10, 5, 2) == (20, 25)


def test_rows_of_rank_is_whole_chunks():
    assert [rows_of_rank(103, 10, 3, r) for r in range(3)] == [(0, 40), (40, 80), (80, 103)]


@pytest.mark.parametrize("lo,hi", [(0, 1), (0, 13), (3, 13), (5, 6), (7, 64), (1, 1000)])
def test_dyadic_cover_is_exact_aligned_and_maximal(lo, hi):
    cover = dyadic_cover(lo, hi)
    pos = lo
    for level, index in cover:
        start = index << level
        assert start == pos  # contiguous, left to right, aligned by construction
        # maximal: the parent would not fit inside [lo, hi) or is not aligned
        parent_start = (index >> 1) << (level + 1)
        assert parent_start < lo or parent_start + (2 << level) > hi
        pos = start + (1 << level)
    assert pos == hi
    assert len(cover) <= 2 * max(1, (hi - lo).bit_length())


def test_dyadic_cover_of_empty_range():
    assert dyadic_cover(4, 4) == []
