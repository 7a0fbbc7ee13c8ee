"""Checkpoints in one process: named parts, the commit marker, checksums, pruning, torn steps."""

import json

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from lepton_hpc import checkpoint
from lepton_hpc.checkpoint import Part
from lepton_hpc.comm import JobError
from lepton_hpc.errors import UserError
from lepton_hpc.optimizers import make_optimizer

COMM = MPI.COMM_SELF


def _save(directory, step, w=(1.0, 2.0), keep=3, U=None):
    parts = {"model/w": Part(np.array(w)), "model/b": Part(np.float64(0.5))}
    if U is not None:
        parts["model/U"] = Part(U, (0, U.shape[0], U.shape[0]))
    return checkpoint.save(COMM, directory, step, parts, {"world_size": 1, "data_fingerprint": "abc"}, keep)


def test_round_trip_of_replicated_and_sharded_parts(tmp_path):
    U = np.arange(12.0).reshape(6, 2)
    path = _save(tmp_path, 7, U=U)
    assert path.name == "step-00000007.h5" and (tmp_path / "step-00000007.commit").is_file()
    snap = checkpoint.open_local(tmp_path, 7)
    assert snap.step == 7 and snap.attrs["data_fingerprint"] == "abc" and snap.attrs["step"] == 7
    arrays = snap.replicated("model/")
    assert arrays["model/w"].tolist() == [1.0, 2.0] and float(arrays["model/b"]) == 0.5
    assert snap.shape("model/U") == (6, 2) and snap.rows("model/U", 2, 5).tolist() == U[2:5].tolist()
    with h5py.File(path, "r") as f:  # the GLM contract: /model/w in step-NNNNNNNN.h5
        assert f["model/w"].shape == (2,) and "model/U" not in f


def test_keep_prunes_the_oldest_marker_first(tmp_path):
    for step in (10, 20, 30, 40):
        _save(tmp_path, step, keep=2, U=np.ones((3, 1)))
    assert checkpoint.list_steps(tmp_path) == [30, 40]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-00000030.commit", "step-00000030.h5", "step-00000030.shards",
        "step-00000040.commit", "step-00000040.h5", "step-00000040.shards"]


def test_a_step_without_its_marker_does_not_exist(tmp_path):
    _save(tmp_path, 1)
    _save(tmp_path, 2, w=(3.0, 4.0))
    (tmp_path / "step-00000002.commit").unlink()  # killed after the data, before the commit
    assert checkpoint.list_steps(tmp_path) == [1]
    assert checkpoint.latest_local(tmp_path).step == 1


def test_a_corrupt_file_is_skipped_and_refused(tmp_path):
    _save(tmp_path, 1, U=np.ones((4, 2)))
    _save(tmp_path, 2, w=(2.0, 2.0), U=np.ones((4, 2)))
    shard = tmp_path / "step-00000002.shards" / "rank-00000.h5"
    with h5py.File(shard, "r+") as f:  # flip bytes behind the checksum's back
        f["model/U"][0, 0] = 7.0
    with pytest.raises(UserError, match="rank-00000.h5 fails its checksum"):
        checkpoint.open_local(tmp_path, 2)
    warnings = []
    assert checkpoint.latest_local(tmp_path, warn=warnings.append).step == 1
    assert "skipping checkpoint step 2" in warnings[0]
    with pytest.raises(JobError, match="fails its checksum"):
        checkpoint.open_path(COMM, tmp_path / "step-00000002.h5")
    assert checkpoint.latest(COMM, tmp_path, warn=lambda m: None).step == 1


def test_none_valid_is_an_error_and_none_at_all_is_none(tmp_path):
    assert checkpoint.latest_local(tmp_path) is None
    _save(tmp_path, 1)
    (tmp_path / "step-00000001.h5").write_bytes(b"garbage")
    with pytest.raises(UserError, match="none of the 1 checkpoints"):
        checkpoint.latest_local(tmp_path, warn=lambda m: None)


def test_the_marker_records_every_file_and_the_row_pieces(tmp_path):
    _save(tmp_path, 3, U=np.ones((5, 2)))
    marker = json.loads((tmp_path / "step-00000003.commit").read_text())
    assert set(marker["files"]) == {"step-00000003.h5", "step-00000003.shards/rank-00000.h5"}
    assert marker["sharded"]["model/U"]["pieces"] == [["step-00000003.shards/rank-00000.h5", 0, 5]]


def test_optimizer_state_round_trips_exactly(tmp_path):
    opt = make_optimizer("adam", learning_rate=0.1)
    w = np.ones(6)
    for _ in range(3):
        opt.update(w, np.arange(6.0), out=w)
    parts, attrs = checkpoint.optimizer_parts("optimizer", opt)
    checkpoint.save(COMM, tmp_path, 3, parts, attrs, keep=1)
    again = make_optimizer("adam", learning_rate=0.5)
    again.load_state_dict(checkpoint.optimizer_state(checkpoint.open_local(tmp_path, 3), "optimizer", again))
    a, b = w.copy(), w.copy()
    opt.update(a, np.ones(6), out=a)
    again.update(b, np.ones(6), out=b)
    assert a.tobytes() == b.tobytes() and again.learning_rate == 0.1
