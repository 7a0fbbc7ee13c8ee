"""Ratings (users x items, COO) for the matrix-factorization recommender.

File contract (HDF5)::

    /rows   int   user index of each rating, sorted ascending (non-decreasing)
    /cols   int   item index of each rating; each (user, item) pair at most once (explicit
                  ratings and interaction counts alike: de-duplicate by averaging or summing)
    /vals   float the rating
    attrs:  shape = (n_users, n_items); optional noise (the synthetic ground
            truth's noise level sigma; absent for interaction counts), seed, true_rank, density,
            chunk_rows, kind="mf", feedback ("explicit" or "implicit")

Sharding is by user rows: users are cut into logical chunks of
``data.chunk_rows`` users, each rank owns a contiguous balanced range of
chunks (:class:`lepton_hpc.layout.Layout`) and reads only its own
slice ``[lo, hi)`` of the COO arrays, found by binary search on the sorted
``/rows`` dataset (a few single-element reads); no rank reads the whole file.

Synthetic ratings are drawn per user chunk from ``(seed, chunk id)``; the
ground-truth item factors come from the seed alone
(:mod:`lepton_hpc.data.synthetic.ratings`). The same function feeds
the in-process generator and ``python -m lepton_hpc.data synth mf``, so a
job with ``data.path = ""`` sees exactly the numbers the CLI writes (for the
same seed and chunk_rows).

The held-out test split is a hash of ``(seed, user, item)``: it depends on
neither the rank count nor the chunking nor the file layout.

Nothing here talks to MPI; errors are ``ValueError`` sentences that the
trainer agrees on across ranks.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import h5py
import numpy as np

from ..config import DataConfig
from ..layout import Layout, chunk_range, n_chunks
from .atomic import atomic_path
from .synthetic.ratings import interactions_chunk, ratings_chunk, true_item_factors
from ..errors import UserError

_TEST_SALT = 0x6D66_7465_7374  # "mftest"


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def heldout_mask(seed: int, rows: np.ndarray, cols: np.ndarray, fraction: float) -> np.ndarray:
    """True for ratings held out for testing: a hash of (seed, user, item) below ``fraction``.

    Independent of rank count, chunking and file order.
    """
    rows = np.asarray(rows)
    if fraction <= 0 or rows.size == 0:
        return np.zeros(rows.shape, dtype=bool)
    key = _mix64(np.full(rows.shape, (seed ^ _TEST_SALT) & (2**64 - 1), dtype=np.uint64))
    key = _mix64(key + rows.astype(np.uint64))
    key = _mix64(key + np.asarray(cols).astype(np.uint64))
    u = (key >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)
    return u < fraction


# -- the CLI's writer ------------------------------------------------------------
def synth_mf(out: str, users: int, items: int, rank: int, density: float, noise: float, seed: int = 0,
             chunk_rows: int = 4096, compression: str | None = None, implicit: bool = False) -> int:
    """Write synthetic ratings to ``out`` (HDF5, atomically), one user chunk at a time.

    ``implicit``: interaction counts from a rank-``rank`` multinomial-logit model
    (:func:`~lepton_hpc.data.synthetic.ratings.interactions_chunk`; ``noise`` unused).
    Returns the number of ratings written. Memory stays one chunk.
    """
    for name, value in (("users", users), ("items", items), ("rank", rank), ("chunk-rows", chunk_rows)):
        if value <= 0:
            raise UserError(f"--{name} must be > 0, got {value}")
    if not 0 < density <= 1:
        raise UserError(f"--density must be in (0, 1], got {density}")
    if not np.isfinite(noise) or noise < 0:
        raise UserError(f"--noise must be finite and >= 0, got {noise}")
    V_true = true_item_factors(seed, items, rank)
    idx_dtype = np.int32 if max(users, items) < 2**31 else np.int64
    opts = {} if compression in (None, "none") else {"compression": compression}
    block = int(min(1 << 16, users * items * density * 1.1 + 16))  # HDF5 chunk: small files stay small
    nnz = 0
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        ds = {name: f.create_dataset(name, (0,), maxshape=(None,), dtype=dt, chunks=(block,), **opts)
              for name, dt in (("rows", idx_dtype), ("cols", idx_dtype), ("vals", np.float64))}
        for c in range(n_chunks(users, chunk_rows)):
            lo, hi = chunk_range(users, chunk_rows, c)
            rows, cols, vals = (interactions_chunk(seed, c, lo, hi, V_true, density) if implicit else
                                ratings_chunk(seed, c, lo, hi, V_true, density, noise))
            end = nnz + rows.shape[0]
            for name, arr in (("rows", rows), ("cols", cols), ("vals", vals)):
                ds[name].resize((end,))
                ds[name][nnz:end] = arr
            nnz = end
        if nnz == 0:  # raised inside the atomic writer: no file is left
            raise UserError(f"--density {density} gives no ratings for {users} users x {items} items (about "
                            f"{users * items * density:.2g} expected); raise --density or --users/--items")
        f.attrs.update({"kind": "mf", "shape": np.array([users, items], dtype=np.int64), "seed": seed,
                        "true_rank": rank, "density": density, "chunk_rows": chunk_rows, "nnz": nnz,
                        "feedback": "implicit" if implicit else "explicit"})
        if not implicit:
            f.attrs["noise"] = noise
    return nnz


# -- one rank's shard ------------------------------------------------------------
@dataclass
class ChunkRatings:
    """The ratings of one user chunk, split into train and test.

    ``users`` are relative to the chunk's first user (``user_lo``) and sorted;
    ``offset`` is the chunk's first row in the rank's U block.
    """

    chunk: int
    user_lo: int
    n_users: int
    offset: int
    train: tuple[np.ndarray, np.ndarray, np.ndarray]  # users (int32), items (int32), vals (float64)
    test: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (*self.train, *self.test))

    def digest(self) -> int:
        """64-bit digest of the chunk's id and ratings; XOR over chunks fingerprints the data."""
        h = hashlib.blake2b(digest_size=8)
        h.update(int(self.chunk).to_bytes(8, "little"))
        for part in (self.train, self.test):
            for a in part:
                h.update(np.ascontiguousarray(a).data)
        return int.from_bytes(h.digest(), "little")


class RatingsShard:
    """The user chunks a rank owns, with their ratings, from a file or generated.

    Attributes: ``n_users``, ``n_items``, ``chunk_rows``, ``n_chunks``,
    ``chunks`` (range of global chunk ids), ``user_lo``/``user_hi`` (this
    rank's users), ``n_local_users``, ``blocks`` (list of :class:`ChunkRatings`),
    ``noise`` (sigma of the synthetic ground truth, or None), ``nnz_total``
    (ratings in the file; None for synthetic data until counted).
    """

    def __init__(self, cfg: DataConfig, size: int, rank: int):
        self.cfg = cfg
        self.chunk_rows = cfg.chunk_rows
        self.nnz_total = None
        self._file = None
        if cfg.path:
            try:
                self._open_file(cfg)
            except ValueError:
                self.close()
                raise
        else:
            self.n_users, self.n_items = cfg.rows, cfg.cols
            self.noise = None if cfg.implicit else float(cfg.noise)
            self.source = (f"synthetic(seed={cfg.seed}, true_rank={cfg.true_rank}, density={cfg.density:g}, "
                           + ("interaction counts)" if cfg.implicit else f"noise={cfg.noise:g})"))
        #: users → ranks, built once: U's rows, the reducers and the checkpoint follow it
        self.layout = Layout(self.n_users, self.chunk_rows, size, rank)
        self.n_chunks = self.layout.n_chunks
        self.chunks = self.layout.chunks()
        self.user_lo, self.user_hi = self.layout.rows()
        self.n_local_users = self.user_hi - self.user_lo
        self.first_entry = 0  # global index of this rank's first rating (file data)
        if cfg.path:
            try:
                rows, cols, vals = self._read_slice()
            finally:
                self.close()
        elif len(self.chunks):
            V_true = true_item_factors(cfg.seed, self.n_items, cfg.true_rank)
        self.blocks: list[ChunkRatings] = []
        for c in self.chunks:
            lo, hi = chunk_range(self.n_users, self.chunk_rows, c)
            if cfg.path:
                a, b = np.searchsorted(rows, [lo, hi])
                r, cc, v = rows[a:b], cols[a:b], vals[a:b]
            elif cfg.implicit:
                r, cc, v = interactions_chunk(cfg.seed, c, lo, hi, V_true, cfg.density)
            else:
                r, cc, v = ratings_chunk(cfg.seed, c, lo, hi, V_true, cfg.density, cfg.noise)
            self.blocks.append(self._split(c, lo, hi, r, cc, v))

    # -- reading a file -----------------------------------------------------------
    def _open_file(self, cfg: DataConfig) -> None:
        path = cfg.path
        from .shard import open_hdf5

        f = open_hdf5(path, "ratings file", missing=(
            f"ratings file {path} does not exist; set data.path to an HDF5 file with /rows, /cols, /vals "
            f"(make one with `python -m lepton_hpc.data synth mf`) or leave it empty for synthetic ratings"))
        self._file = f
        for key in ("rows", "cols", "vals"):
            if key not in f or not isinstance(f[key], h5py.Dataset):
                have = ", ".join(sorted(k for k in f.keys() if isinstance(f[k], h5py.Dataset))) or "none"
                raise UserError(f"dataset /{key} not found in ratings file {path} (datasets there: {have}); "
                                 f"ratings are COO /rows, /cols, /vals sorted by row")
        rows, cols, vals = f["rows"], f["cols"], f["vals"]
        for d in (rows, cols, vals):
            if d.ndim != 1:
                raise UserError(f"/{d.name.lstrip('/')} in {path} must be 1-D, has shape {d.shape}")
        if not (rows.shape == cols.shape == vals.shape):
            raise UserError(f"/rows, /cols and /vals in {path} must have the same length, have "
                             f"{rows.shape[0]}, {cols.shape[0]} and {vals.shape[0]}")
        if rows.shape[0] == 0:
            raise UserError(f"ratings file {path} is empty: /rows, /cols and /vals hold no ratings; "
                             f"point data.path at a file with ratings")
        for d in (rows, cols):
            if d.dtype.kind not in "iu":
                raise UserError(f"/{d.name.lstrip('/')} in {path} must hold integer indices, has dtype {d.dtype}")
        if vals.dtype.kind not in "fiu":
            raise UserError(f"/vals in {path} has non-numeric dtype {vals.dtype}")
        shape = f.attrs.get("shape")
        if shape is None or np.ndim(shape) != 1 or len(shape) != 2:
            raise UserError(f"ratings file {path} needs a `shape` attribute (n_users, n_items), has "
                             f"{'none' if shape is None else repr(shape)}")
        m, n = (int(x) for x in shape)
        if m <= 0 or n <= 0:
            raise UserError(f"ratings file {path} has shape {m} x {n}; both must be > 0")
        self.nnz_total = int(rows.shape[0])
        self.n_users, self.n_items = m, n
        noise = f.attrs.get("noise")
        self.noise = None if noise is None else float(noise)
        self._rows, self._cols, self._vals = rows, cols, vals
        self.source = f"{path}: {m} x {n}, {self.nnz_total} ratings"

    def _bisect(self, value: int) -> int:
        """First index of /rows with value >= ``value`` (assumes sorted; single-element reads)."""
        lo, hi = 0, self.nnz_total
        while lo < hi:
            mid = (lo + hi) // 2
            if int(self._rows[mid]) < value:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _read_slice(self):
        path = self.cfg.path
        if not len(self.chunks):
            z = np.zeros(0, dtype=np.int64)
            return z, z, np.zeros(0)
        # The rank owning user 0 also takes anything below it, the one owning the
        # last user anything above it, so indices outside the shape are seen.
        lo = 0 if self.user_lo == 0 else self._bisect(self.user_lo)
        hi = self.nnz_total if self.user_hi == self.n_users else self._bisect(self.user_hi)
        if hi < lo:
            raise UserError(f"/rows in {path} is not sorted ascending (the binary search for users "
                             f"[{self.user_lo}, {self.user_hi}) found ratings [{lo}, {hi})); sort the ratings by "
                             f"user row")
        rows = self._rows[lo:hi].astype(np.int64)
        cols = self._cols[lo:hi].astype(np.int64)
        vals = self._vals[lo:hi].astype(np.float64)
        self.first_entry = lo
        bad = (rows < 0) | (rows >= self.n_users) | (cols < 0) | (cols >= self.n_items)
        if bad.any():
            i = int(np.argmax(bad))
            raise UserError(f"rating {lo + i} in {path} has (user {rows[i]}, item {cols[i]}) outside the "
                             f"shape {self.n_users} x {self.n_items} given by the file's shape attribute; fix "
                             f"the indices or the shape")
        unsorted = (rows < self.user_lo) | (rows >= self.user_hi)
        if rows.shape[0] > 1:
            unsorted[1:] |= rows[1:] < rows[:-1]
        if unsorted.any():
            i = int(np.argmax(unsorted))
            raise UserError(f"/rows in {path} is not sorted ascending (at rating {lo + i}, user {rows[i]}); "
                             f"sort the ratings by user row")
        finite = np.isfinite(vals)
        if not finite.all():
            i = int(np.argmin(finite))
            raise UserError(f"rating {lo + i} in {path} (user {rows[i]}, item {cols[i]}) is {vals[i]}: the "
                             f"ratings must be finite numbers; drop or fix non-finite ratings")
        self._check_unique(rows, cols, lo)
        return rows, cols, vals

    def _check_unique(self, rows, cols, first: int) -> None:
        """Each (user, item) pair at most once in this rank's slice (``rows`` sorted; rating ``first`` its first).

        Every user's ratings lie on one rank, so the per-rank checks together cover the file;
        the smallest repeated pair of the lowest failing rank is reported (the same on any rank
        count). A repeat would count twice in the loss (explicit) and give its item the
        confidence 1 + alpha r twice plus a second preference (implicit): neither is what the file
        means, so both are refused. One pass over int64 keys per user chunk, and a sort where a
        user's items are not ascending.
        """
        for c in self.chunks:
            lo, hi = chunk_range(self.n_users, self.chunk_rows, c)
            a, b = np.searchsorted(rows, [lo, hi])
            r, cc = rows[a:b], cols[a:b]
            if (hi - lo) * self.n_items < 2**62:
                key = (r - lo) * self.n_items + cc
                if key.size < 2 or (key[1:] > key[:-1]).all():  # sorted by (user, item), as synth mf writes
                    continue
                key.sort()
                same = np.flatnonzero(key[1:] == key[:-1])
                if same.size:
                    user, item = divmod(int(key[same[0]]), self.n_items)
                    self._duplicate(r, cc, first + a, lo + user, item)
            else:  # a chunk too wide for one int64 key: sort the (user, item) pairs
                order = np.lexsort((cc, r))
                r2, c2 = r[order], cc[order]
                same = np.flatnonzero((r2[1:] == r2[:-1]) & (c2[1:] == c2[:-1]))
                if same.size:
                    self._duplicate(r, cc, first + a, int(r2[same[0]]), int(c2[same[0]]))

    def _duplicate(self, rows, cols, first: int, user: int, item: int):
        """Raise the sentence for a repeated (user, item) pair of ``rows``/``cols`` (rating ``first`` their first)."""
        at = first + np.flatnonzero((rows == user) & (cols == item))
        times = "twice" if at.size == 2 else f"{at.size} times"
        raise UserError(f"ratings file {self.cfg.path} holds the pair (user {user}, item {item}) {times} "
                        f"(ratings {', '.join(str(int(j)) for j in at[:3])}{', ...' if at.size > 3 else ''}); "
                        f"each (user, item) pair must appear once: de-duplicate the file, e.g. average the "
                        f"repeated ratings (sum repeated interaction counts)")

    # -- split and pack -------------------------------------------------------------
    def _split(self, chunk: int, lo: int, hi: int, rows, cols, vals) -> ChunkRatings:
        test = heldout_mask(self.cfg.seed, rows, cols, self.cfg.test_fraction)
        users = (rows - lo).astype(np.int32)
        items = cols.astype(np.int32)

        def part(mask):
            return (np.ascontiguousarray(users[mask]), np.ascontiguousarray(items[mask]),
                    np.ascontiguousarray(vals[mask], dtype=np.float64))

        return ChunkRatings(chunk=chunk, user_lo=lo, n_users=hi - lo, offset=lo - self.user_lo,
                            train=part(~test), test=part(test))

    @property
    def nbytes(self) -> int:
        """Bytes of ratings this rank holds."""
        return sum(b.nbytes for b in self.blocks)

    def counts(self) -> tuple[int, int]:
        """Local (train, test) rating counts."""
        return (sum(b.train[0].shape[0] for b in self.blocks), sum(b.test[0].shape[0] for b in self.blocks))

    def describe(self) -> str:
        return f"{self.source}; {self.n_chunks} user chunks of {self.chunk_rows}"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def synth_mf_main(argv, info=None) -> int:
    """``python -m lepton_hpc.data synth mf ...`` (kept for callers; the options live in the data CLI)."""
    from .__main__ import main

    return main(["synth", "mf", *argv])
