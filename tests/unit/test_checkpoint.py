import h5py
import numpy as np
import pytest

from lepton_hpc import checkpoint
from lepton_hpc.checkpoint import State


def _state(step, w=(1.0, 2.0)):
    rng = np.random.default_rng(3)
    rng.random(5)
    return State(step=step, arrays={"model/w": np.array(w), "model/b": np.float64(0.5)},
                 optimizer={"t": step, "eta": 0.01, "velocity": np.arange(2.0)},
                 rng=checkpoint.rng_state_json(rng), attrs={"world_size": 3, "data_fingerprint": "abc"})


def test_round_trip_and_rng(tmp_path):
    path = checkpoint.save(tmp_path, _state(7), keep=3)
    assert path.name == "step-00000007.h5"
    got = checkpoint.load(path)
    assert got.step == 7 and np.array_equal(got.arrays["model/w"], [1.0, 2.0]) and got.arrays["model/b"] == 0.5
    assert got.optimizer["t"] == 7 and np.array_equal(got.optimizer["velocity"], [0.0, 1.0])
    assert got.attrs["world_size"] == 3 and got.attrs["data_fingerprint"] == "abc"
    rng = np.random.default_rng(3)
    rng.random(5)
    assert checkpoint.restore_rng(got.rng).random() == rng.random()
    assert not list(tmp_path.glob(".*tmp"))


def test_keep_prunes_oldest(tmp_path):
    for step in (10, 20, 30, 40):
        checkpoint.save(tmp_path, _state(step), keep=2)
    assert checkpoint.list_steps(tmp_path) == [30, 40]


def test_corruption_is_detected_and_auto_falls_back(tmp_path):
    checkpoint.save(tmp_path, _state(1, (1.0, 1.0)), keep=5)
    bad = checkpoint.save(tmp_path, _state(2, (2.0, 2.0)), keep=5)
    with h5py.File(bad, "r+") as f:  # flip parameter bytes behind the checksum's back
        f["model/w"][0] = 99.0
    with pytest.raises(ValueError, match="fails its checksum"):
        checkpoint.load(bad)
    warnings = []
    got = checkpoint.latest_valid(tmp_path, warn=warnings.append)
    assert got.step == 1 and "skipping" in warnings[0]


def test_truncated_file_is_rejected(tmp_path):
    path = checkpoint.save(tmp_path, _state(5), keep=5)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="checkpoint .* (unreadable|fails)"):
        checkpoint.load(path)
    with pytest.raises(ValueError, match="none of the 1 checkpoints .* is valid"):
        checkpoint.latest_valid(tmp_path, warn=lambda m: None)


def test_unfinished_temporary_is_not_a_checkpoint(tmp_path):
    (tmp_path / ".step-00000009.h5.tmp").write_bytes(b"partial")
    assert checkpoint.list_steps(tmp_path) == []
