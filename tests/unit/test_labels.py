"""Feature names and class labels survive the whole way: import → /X and /y attrs → shard reader →
checkpoint attrs and summary.json → evaluate's labelled confusion matrix (one process, COMM_SELF)."""

import json

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from lepton_hpc import checkpoint
from lepton_hpc.config import DataConfig, build
from lepton_hpc.data.__main__ import main as data_cli
from lepton_hpc.data.importers import import_npy, import_sklearn
from lepton_hpc.data.table_import import import_csv
from lepton_hpc.data.shard import Shard
from lepton_hpc.errors import UserError

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def dataset_attrs(path):
    """(feature_names, classes, the HDF5 string types of both) as stored on /X and /y."""
    with h5py.File(path, "r") as f:
        X, y = f["X"], f["y"]
        names = X.attrs.get("feature_names")
        classes = y.attrs.get("classes")
        kinds = [None if a.get_id(k) is None else h5py.check_string_dtype(a.get_id(k).dtype)
                 for a, k in ((X.attrs, "feature_names"), (y.attrs, "classes")) if k in a]
        return names, classes, kinds


def shard_labels(path):
    shard = Shard(DataConfig(path=str(path), chunk_rows=64), 1, 0)
    try:
        return shard.feature_names, shard.classes
    finally:
        shard.close()


def utf8_vlen(info):
    return info is not None and info.encoding == "utf-8" and info.length is None


# -- importers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["iris", "wine", "digits"])
def test_sklearn_sets_name_features_and_classes(tmp_path, name):
    out = tmp_path / f"{name}.h5"
    assert data_cli(["import", f"sklearn:{name}", "--out", str(out)]) == 0  # the `data import` path
    bunch = getattr(sklearn_datasets, f"load_{name}")()
    names, classes, kinds = dataset_attrs(out)
    assert list(names) == list(bunch.feature_names) and len(names) == bunch.data.shape[1]
    assert utf8_vlen(kinds[0])
    if name == "digits":  # numeric labels stay numbers
        assert classes.dtype == np.int64 and classes.tolist() == list(range(10))
    else:
        assert utf8_vlen(kinds[1]) and list(classes) == list(bunch.target_names)
    with h5py.File(out, "r") as f:  # the class codes in /y index the labels
        np.testing.assert_array_equal(f["y"][...], bunch.target)
        assert "source" in f.attrs and "n_classes" in f.attrs  # the root attrs stay
    assert shard_labels(out) == (list(bunch.feature_names), [c if name == "digits" else str(c)
                                                             for c in bunch.target_names.tolist()])


def test_sklearn_regression_has_no_classes(tmp_path):
    out = tmp_path / "d.h5"
    import_sklearn("diabetes", str(out))
    names, classes, _ = dataset_attrs(out)
    assert len(names) == 10 and classes is None
    assert shard_labels(out)[1] is None


def test_csv_string_labels_in_code_order(tmp_path):
    path = tmp_path / "pets.csv"
    path.write_text("größe,species,weight\n1,dog,2\n3,cat,4\n5,émeu,6\n7,dog,8\n")
    out = tmp_path / "pets.h5"
    import_csv(str(path), "species", str(out), chunk_rows=2)
    names, classes, kinds = dataset_attrs(out)
    assert list(names) == ["größe", "weight"] and list(classes) == ["cat", "dog", "émeu"]
    assert all(utf8_vlen(k) for k in kinds)
    with h5py.File(out, "r") as f:
        assert [classes[int(c)] for c in f["y"][...]] == ["dog", "cat", "émeu", "dog"]
    assert shard_labels(out) == (["größe", "weight"], ["cat", "dog", "émeu"])


def test_csv_numeric_labels_are_numbers(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("a,t\n1,5\n2,-1\n3,5.0\n")
    out = tmp_path / "n.h5"
    import_csv(str(path), "t", str(out))
    _, classes, _ = dataset_attrs(out)
    assert classes.dtype == np.int64 and classes.tolist() == [-1, 5]
    assert shard_labels(out) == (["a"], [-1, 5])


def test_npy_gets_default_feature_names(tmp_path):
    np.save(tmp_path / "X.npy", np.arange(8.0).reshape(4, 2))
    np.save(tmp_path / "y.npy", np.array([0.5, 1.5, 0.5, 1.5]))
    out = tmp_path / "o.h5"
    import_npy(str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), str(out), task="binary")
    assert shard_labels(out) == (["x0", "x1"], [0.5, 1.5])


def test_shard_without_attrs_and_with_bad_ones(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["X"], f["y"] = np.zeros((4, 3)), np.zeros(4)
    assert shard_labels(path) == (None, None)
    assert Shard(DataConfig(), 1, 0).classes is None  # synthetic data
    with h5py.File(path, "a") as f:
        f["X"].attrs["feature_names"] = np.asarray(["a", "b"], dtype=h5py.string_dtype())
    with pytest.raises(UserError, match="2 feature_names for 3 columns"):
        shard_labels(path)


# -- a run, its checkpoint, summary.json and evaluate --------------------------------------------
def _config(path, *extra):
    raw = {"data": {"path": str(path), "chunk_rows": 64, "test_fraction": 0.25, "seed": 0},
           "model": {"kind": "softmax", "standardize": True, "penalty": "l2", "reg": 1e-3},
           "optimizer": {"name": "constant", "learning_rate": 1.0},
           "train": {"steps": 20, "tol": 0.0, "log_every": 100},
           "checkpoint": {"every": 0, "keep": 1}}
    return build(raw, "labels", list(extra))


def test_a_run_keeps_the_names_and_evaluate_labels_the_confusion(tmp_path, capsys):
    from lepton_hpc import evaluate
    from lepton_hpc.engine.job import run_job

    data, out = tmp_path / "iris.h5", tmp_path / "run"
    import_sklearn("iris", str(data))
    code, s = run_job(_config(data), MPI.COMM_SELF, out)
    assert code == 0
    iris = ["setosa", "versicolor", "virginica"]
    names = list(sklearn_datasets.load_iris().feature_names)
    snap = checkpoint.latest_local(out / "checkpoints")
    assert json.loads(snap.attrs["feature_names"]) == names and json.loads(snap.attrs["classes"]) == iris
    on_disk = json.loads(json.dumps(s))  # what train.py writes to summary.json
    for summ in (s, on_disk):
        assert summ["data"]["feature_names"] == names and summ["data"]["classes"] == iris
        assert summ["data"]["n_classes"] == 3
        conf = summ["metrics"]["test"]["confusion"]
        assert conf["labels"] == iris and "weighted" not in conf
        assert all(isinstance(c, int) for row in conf["counts"] for c in row)
        assert sum(map(sum, conf["counts"])) == summ["metrics"]["test"]["weight"]
    assert evaluate.main([str(out)]) == 0
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["classes"] == iris
    for split in ("train", "test"):
        conf = ev[split]["confusion"]
        assert conf["labels"] == iris and all(type(c) is int for row in conf["counts"] for c in row)
        assert sum(map(sum, conf["counts"])) == ev[split]["weight"]
    assert ev["test"]["confusion"] == s["metrics"]["test"]["confusion"]
    other = tmp_path / "wine.h5"  # another file's classes mean other things: refused
    with h5py.File(other, "w") as f:
        f["X"], f["y"] = np.zeros((3, 4)), np.zeros(3)
        f["y"].attrs["classes"] = np.asarray(["a", "b", "c"], dtype=h5py.string_dtype())
    capsys.readouterr()
    assert evaluate.main([str(out), "--data", str(other)]) == 1
    assert "trained on ['setosa', 'versicolor', 'virginica']" in capsys.readouterr().err


def test_weighted_confusion_and_a_class_count_mismatch(tmp_path):
    from lepton_hpc.engine.job import run_job

    data = tmp_path / "w.h5"
    import_sklearn("iris", str(data))
    with h5py.File(data, "a") as f:
        f["w"] = np.where(np.arange(150) % 2 == 0, 2.0, 0.5)
    code, s = run_job(_config(data, "data.w_dataset=w", "data.test_fraction=0"), MPI.COMM_SELF,
                      tmp_path / "r")
    conf = s["metrics"]["train"]["confusion"]
    assert code == 0 and sum(map(sum, conf["counts"])) == 150
    assert sum(map(sum, conf["weighted"])) == pytest.approx(75 * 2.0 + 75 * 0.5)
    with pytest.raises(UserError, match=r"names 3 classes \('setosa', 'versicolor', 'virginica'\).*"
                                        r"model.kind=softmax has 4; set model.classes=3"):
        run_job(_config(data, "model.classes=4"), MPI.COMM_SELF, tmp_path / "r4")
