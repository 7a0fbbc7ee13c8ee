"""Ratings for the recommender: generation, the file contract, sharded reading, bad files."""

import math

import h5py
import numpy as np
import pytest

from lepton_hpc.config import DataConfig
from lepton_hpc.data.__main__ import main as data_main
from lepton_hpc.data.ratings import RatingsShard, heldout_mask
from lepton_hpc.data.synthetic.ratings import bernoulli_positions, ratings_chunk, true_item_factors
from lepton_hpc.layout import chunk_range

USERS, ITEMS, RANK, CHUNK = 90, 40, 4, 16


def test_bernoulli_positions_are_sorted_unique_and_deterministic():
    a = bernoulli_positions(np.random.default_rng(1), 10_000, 0.1)
    b = bernoulli_positions(np.random.default_rng(1), 10_000, 0.1)
    assert np.array_equal(a, b)
    assert np.all(np.diff(a) > 0) and a[0] >= 0 and a[-1] < 10_000
    assert abs(a.size - 1000) < 5 * math.sqrt(900)
    assert np.array_equal(bernoulli_positions(np.random.default_rng(0), 7, 1.0), np.arange(7))
    assert bernoulli_positions(np.random.default_rng(0), 0, 0.5).size == 0
    tiny = bernoulli_positions(np.random.default_rng(0), 50, 1e-6)  # usually nothing, never out of range
    assert tiny.size == 0 or tiny.max() < 50


def test_heldout_split_is_a_hash_of_seed_user_item():
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 10**6, 50_000), rng.integers(0, 10**5, 50_000)
    m = heldout_mask(3, rows, cols, 0.1)
    assert abs(m.mean() - 0.1) < 0.01
    perm = rng.permutation(rows.size)  # order, chunking and rank count do not matter
    assert np.array_equal(heldout_mask(3, rows[perm], cols[perm], 0.1), m[perm])
    assert not np.array_equal(heldout_mask(4, rows, cols, 0.1), m)
    assert not heldout_mask(3, rows, cols, 0.0).any()
    assert np.all(heldout_mask(3, rows, cols, 0.05) <= m)  # nested in the fraction


def test_ratings_chunk_is_sorted_and_reproducible():
    V = true_item_factors(0, ITEMS, RANK)
    r, c, v = ratings_chunk(0, 2, 32, 48, V, 0.3, 0.1)
    assert r.min() >= 32 and r.max() < 48 and c.min() >= 0 and c.max() < ITEMS
    key = r * ITEMS + c
    assert np.all(np.diff(key) > 0)
    r2, c2, v2 = ratings_chunk(0, 2, 32, 48, V, 0.3, 0.1)
    assert np.array_equal(v, v2) and np.array_equal(c, c2)
    # unit-variance signal: the ratings' spread is about sqrt(1 + noise^2)
    _, _, big = ratings_chunk(0, 0, 0, 2000, true_item_factors(0, 200, 8), 0.2, 0.0)
    assert 0.8 < big.std() < 1.2


def _write(path, rows, cols, vals, shape=(USERS, ITEMS), **attrs):
    with h5py.File(path, "w") as f:
        f["rows"], f["cols"], f["vals"] = np.asarray(rows), np.asarray(cols), np.asarray(vals, dtype=float)
        if shape is not None:
            f.attrs["shape"] = np.array(shape)
        f.attrs.update(attrs)
    return str(path)


def _cfg(**kw):
    base = dict(rows=USERS, cols=ITEMS, density=0.3, true_rank=RANK, noise=0.1, seed=0, chunk_rows=CHUNK,
                test_fraction=0.2)
    base.update(kw)
    return DataConfig(**base)


def _all_ratings(shards):
    out = []
    for sh in shards:
        for b in sh.blocks:
            for part in (b.train, b.test):
                out.extend(zip((part[0] + b.user_lo).tolist(), part[1].tolist(), part[2].tolist()))
    return sorted(out)


def test_cli_writes_the_numbers_a_synthetic_job_generates(tmp_path, capsys):
    out = tmp_path / "r.h5"
    rc = data_main(["synth", "mf", "--users", str(USERS), "--items", str(ITEMS), "--rank", str(RANK),
                    "--density", "0.3", "--noise", "0.1", "--chunk-rows", str(CHUNK), "--out", str(out)])
    assert rc == 0
    assert "/vals" in capsys.readouterr().out
    with h5py.File(out, "r") as f:
        assert list(f.attrs["shape"]) == [USERS, ITEMS] and f.attrs["noise"] == 0.1
        assert f.attrs["true_rank"] == RANK and f.attrs["nnz"] == f["vals"].shape[0]
        rows = f["rows"][()]
        assert np.all(np.diff(rows) >= 0)
    for size in (1, 3, 8):
        synthetic = [RatingsShard(_cfg(), size, q) for q in range(size)]
        from_file = [RatingsShard(_cfg(path=str(out)), size, q) for q in range(size)]
        for a, b in zip(synthetic, from_file):
            assert (a.user_lo, a.user_hi) == (b.user_lo, b.user_hi)
            for x, y in zip(a.blocks, b.blocks):
                for p, q in zip((*x.train, *x.test), (*y.train, *y.test)):
                    assert np.array_equal(p, q)
                assert x.digest() == y.digest()
        assert from_file[0].noise == 0.1 and from_file[0].nnz_total == rows.size
    # the split does not depend on the rank count
    assert _all_ratings([RatingsShard(_cfg(), 1, 0)]) == _all_ratings([RatingsShard(_cfg(), 5, q) for q in range(5)])


@pytest.mark.parametrize("args,message", [
    (["--users", "0"], "--users must be > 0"),
    (["--density", "1.5"], "--density must be in"),
    (["--noise", "-1"], "--noise must be finite"),
    (["--density", "0.0001"], "--density 0.0001 gives no ratings for 10 users x 5 items"),
    (["--seed", "-1"], "error: --seed must be a non-negative integer, got -1"),
])
def test_cli_rejects_bad_arguments(tmp_path, capsys, args, message):
    base = {"--users": "10", "--items": "5", "--rank": "2", "--density": "0.5", "--noise": "0.1"}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = ["synth", "mf", "--out", str(tmp_path / "x.h5")] + [t for kv in base.items() for t in kv]
    assert data_main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no file, no .tmp left


def test_each_rank_reads_only_its_slice(tmp_path, monkeypatch):
    V = true_item_factors(0, ITEMS, RANK)
    parts = [ratings_chunk(0, c, *chunk_range(USERS, CHUNK, c), V, 0.3, 0.1) for c in range(6)]
    path = _write(tmp_path / "r.h5", *(np.concatenate(x) for x in zip(*parts)))
    nnz = sum(p[0].size for p in parts)
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        reads.append((self.name, key))
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    size = 4
    for q in range(size):
        reads.clear()
        sh = RatingsShard(_cfg(path=path), size, q)
        n_local = sum(b.train[0].size + b.test[0].size for b in sh.blocks)
        slices = [k for _, k in reads if isinstance(k, slice)]
        points = [k for _, k in reads if not isinstance(k, slice)]
        assert all(s.stop - s.start == n_local and s.start == sh.first_entry for s in slices)
        assert len(slices) == 3  # /rows, /cols, /vals: one slice each
        assert len(points) <= 2 * math.ceil(math.log2(nnz)) + 2  # the binary searches
    monkeypatch.undo()
    assert _all_ratings([RatingsShard(_cfg(path=path), size, q) for q in range(size)]) == \
        _all_ratings([RatingsShard(_cfg(path=path), 1, 0)])


def _good():
    rows = np.repeat(np.arange(USERS), 3)
    cols = np.tile([0, 5, 9], USERS)
    return rows, cols, np.linspace(-1, 1, rows.size)


@pytest.mark.parametrize("size", [1, 3])
@pytest.mark.parametrize("break_it,pattern", [
    (lambda r, c, v: v.__setitem__(100, np.nan),
     r"rating 100 in .* \(user 33, item 5\) is nan: the ratings must be finite"),
    (lambda r, c, v: v.__setitem__(7, np.inf), r"rating 7 .* is inf"),
    (lambda r, c, v: r.__setitem__(-1, USERS),
     rf"rating {3 * USERS - 1} .*\(user {USERS}, item 9\) outside the shape {USERS} x {ITEMS}"),
    (lambda r, c, v: r.__setitem__(0, -1), r"rating 0 .*\(user -1, item 0\) outside the shape"),
    (lambda r, c, v: c.__setitem__(50, ITEMS + 3), rf"rating 50 .*item {ITEMS + 3}\) outside the shape"),
    (lambda r, c, v: r.__setitem__(slice(30, 33), 2), r"is not sorted ascending"),
])
def test_bad_files_name_the_problem(tmp_path, size, break_it, pattern):
    r, c, v = _good()
    break_it(r, c, v)
    path = _write(tmp_path / "bad.h5", r, c, v)
    messages = []
    for q in range(size):
        try:
            RatingsShard(_cfg(path=path), size, q)
        except ValueError as exc:
            messages.append(str(exc))
    assert messages, "no rank noticed"
    import re
    assert re.search(pattern, messages[0]), messages[0]


@pytest.mark.parametrize("make,pattern", [
    (lambda p: _write(p, [], [], []), r"is empty: /rows, /cols and /vals hold no ratings"),
    (lambda p: _write(p, [0], [0], [1.0], shape=None), r"needs a `shape` attribute"),
    (lambda p: _write(p, [0, 1], [0], [1.0, 2.0]), r"must have the same length"),
    (lambda p: _write(p, [0.5], [0], [1.0]), r"/rows .* must hold integer indices"),
])
def test_malformed_files(tmp_path, make, pattern):
    path = make(tmp_path / "bad.h5")
    with pytest.raises(ValueError, match=pattern):
        RatingsShard(_cfg(path=str(path)), 2, 1)


def test_missing_file_and_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"ratings file .*nope\.h5 does not exist"):
        RatingsShard(_cfg(path=str(tmp_path / "nope.h5")), 1, 0)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["X"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"dataset /rows not found .* \(datasets there: X\)"):
        RatingsShard(_cfg(path=str(tmp_path / "x.h5")), 1, 0)


def test_users_and_items_without_ratings_are_fine(tmp_path):
    rows, cols = np.array([0, 0, 4, 4, 9]), np.array([1, 3, 1, 2, 3])
    path = _write(tmp_path / "sparse.h5", rows, cols, [1.0, 2.0, 3.0, 4.0, 5.0], shape=(12, 6))
    shards = [RatingsShard(_cfg(path=path, chunk_rows=4, test_fraction=0.0), 3, q) for q in range(3)]
    assert [(s.user_lo, s.user_hi) for s in shards] == [(0, 4), (4, 8), (8, 12)]
    assert _all_ratings(shards) == sorted(zip(rows.tolist(), cols.tolist(), [1.0, 2.0, 3.0, 4.0, 5.0]))


def _shard_errors(path, size, **kw):
    """Every rank's reader error (None where it read its slice)."""
    out = []
    for q in range(size):
        try:
            RatingsShard(_cfg(path=str(path), **kw), size, q)
            out.append(None)
        except ValueError as exc:
            out.append(str(exc))
    return out


def _first(errors):
    return next(e for e in errors if e is not None)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_a_repeated_user_item_pair_is_refused(tmp_path, size):
    r, c, v = _good()  # 3 ratings per user, items 0, 5, 9
    c[37] = 0  # user 12's third rating (item 9) becomes item 0 again: not next to its twin
    c[3 * 70 + 1] = 9  # user 70's item 5 becomes item 9 (a second, later repeat)
    path = _write(tmp_path / "dup.h5", r, c, v)
    errors = _shard_errors(path, size)
    assert _first(errors) == (
        f"ratings file {path} holds the pair (user 12, item 0) twice (ratings 36, 37); each (user, item) pair "
        f"must appear once: de-duplicate the file, e.g. average the repeated ratings (sum repeated interaction "
        f"counts)")
    owner = [q for q, e in enumerate(errors) if e is not None]
    assert len(owner) == (1 if size == 1 else 2)  # only the ranks holding users 12 and 70
    if size > 1:
        assert "(user 70, item 9) twice (ratings 211, 212)" in errors[owner[-1]]


def test_a_pair_three_times_and_a_wide_shape(tmp_path):
    r, c, v = _good()
    c[30:33] = 7  # user 10 rates item 7 three times
    path = _write(tmp_path / "dup.h5", r, c, v)
    assert "holds the pair (user 10, item 7) 3 times (ratings 30, 31, 32);" in _first(_shard_errors(path, 2))
    # a shape too wide for one int64 key per (user, item) of a chunk: the pairs are sorted instead
    path = _write(tmp_path / "wide.h5", r, c, v, shape=(USERS, 2**60))
    assert "holds the pair (user 10, item 7) 3 times" in _first(_shard_errors(path, 2))
    c[30:33] = [2**59, 3, 2**59]
    path = _write(tmp_path / "wide2.h5", r, c, v, shape=(USERS, 2**60))
    assert f"holds the pair (user 10, item {2**59}) twice (ratings 30, 32);" in _first(_shard_errors(path, 1))


def test_interaction_counts_follow_the_same_rule(tmp_path):
    r, c, _ = _good()
    c[5] = c[4]
    path = _write(tmp_path / "counts.h5", r, c, np.ones(r.size), feedback="implicit")
    assert "holds the pair (user 1, item 5) twice (ratings 4, 5)" in _first(_shard_errors(path, 2, implicit=True))


@pytest.mark.parametrize("implicit", [False, True])
def test_synth_mf_never_writes_a_pair_twice(tmp_path, capsys, implicit):
    out = tmp_path / "r.h5"
    kind = ["--implicit"] if implicit else ["--noise", "0.1"]
    assert data_main(["synth", "mf", "--users", "300", "--items", "25", "--rank", "3", "--density", "0.6",
                      "--chunk-rows", "32", *kind, "--out", str(out)]) == 0
    capsys.readouterr()
    with h5py.File(out, "r") as f:
        key = f["rows"][()].astype(np.int64) * 25 + f["cols"][()]
    assert key.size > 1000 and np.all(np.diff(key) > 0)  # sorted by (user, item), so each pair once
    assert all(e is None for e in _shard_errors(out, 3, rows=300, cols=25, chunk_rows=32, implicit=implicit))
