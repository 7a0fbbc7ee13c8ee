"""The GLM shard reader's user errors, one sentence each (what tests/e2e/test_bad_input.py launched
under mpiexec before; the launch path for a UserError is kept there by one config and one data error)."""

import re

import h5py
import numpy as np
import pytest

from lepton_hpc.config import build
from lepton_hpc.data.shard import Shard
from lepton_hpc.errors import UserError


def cfg(path, *extra):
    return build({}, "t", [f"data.path={path}", "data.chunk_rows=500", *extra]).data


def make_file(path, X, y, y_name="y"):
    with h5py.File(path, "w") as f:
        f["X"], f[y_name] = X, y
    return path


def data(rows=3000, cols=4):
    rng = np.random.default_rng(0)
    return rng.standard_normal((rows, cols)), rng.standard_normal(rows)


def first_bad_rows(path, size):
    """Each rank's first bad row (None: a clean shard), as the reference pass sees it before agreeing."""
    out = []
    for rank in range(size):
        sh = Shard(cfg(path), size, rank)
        out.append(next((r for i, X, y, _ in sh.chunks_iter() if (r := sh.first_bad_row(i, X, y)) is not None),
                        None))
        sh.close()
    return out


def test_missing_data_file(tmp_path):
    with pytest.raises(UserError, match=r"data file .*nope\.h5 does not exist"):
        Shard(cfg(tmp_path / "nope.h5"), 3, 1)


def test_missing_dataset_lists_the_ones_there(tmp_path):
    f = make_file(tmp_path / "d.h5", *data(), y_name="target")
    with pytest.raises(UserError, match=r"dataset /y not found in .*d\.h5 \(datasets there: X, target\)"):
        Shard(cfg(f), 3, 0)


def test_row_counts_differ(tmp_path):
    X, y = data()
    f = make_file(tmp_path / "d.h5", X, y[:-1])
    with pytest.raises(UserError, match=r"/X has 3000 rows but /y has 2999"):
        Shard(cfg(f), 3, 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_and_targets_are_found_on_the_rank_that_holds_them(tmp_path, bad):
    X, y = data()
    X[2999, 1] = bad  # the last row: rank 2 of 3
    y[10] = bad  # a target on rank 0
    X[1234, 0] = bad  # rank 1
    f = make_file(tmp_path / "d.h5", X, y)
    assert first_bad_rows(f, 3) == [10, 1234, 2999]
    assert first_bad_rows(f, 1) == [10]


def _truncated(tmp_path, name="t.h5"):
    ok = make_file(tmp_path / "ok.h5", *data())
    cut = tmp_path / name
    cut.write_bytes(ok.read_bytes()[:2000])  # `head -c 2000 ok.h5 > t.h5`
    return cut


def test_truncated_file_is_named_as_cut_short_in_every_reader(tmp_path, capsys):
    from lepton_hpc.data.__main__ import main as data_main
    from lepton_hpc.data.ratings import RatingsShard

    cut = _truncated(tmp_path)
    pattern = r"t\.h5 is truncated or corrupt \(an HDF5 file cut short.*re-create it"
    with pytest.raises(UserError, match=pattern):
        Shard(cfg(cut), 2, 0)
    with pytest.raises(UserError, match=pattern):
        RatingsShard(build({}, "t", [f"data.path={cut}"]).data, 2, 1)
    assert data_main(["info", str(cut)]) == 1
    err = capsys.readouterr().err
    assert re.search(pattern, err) and "synchronously" not in err and "Traceback" not in err
    assert cut.stat().st_size == 2000  # nothing damaged


def test_directory_as_data_path_is_named_as_a_directory(tmp_path, capsys):
    from lepton_hpc.data.__main__ import main as data_main

    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match=r"data file .*d is a directory, not a file"):
        Shard(cfg(tmp_path / "d"), 3, 0)
    assert data_main(["info", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "is a directory, not a file" in err and "does not exist" not in err
