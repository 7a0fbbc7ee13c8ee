"""Importers: scikit-learn's bundled sets, CSV (streamed, line-numbered errors) and npy pairs."""

import os

import h5py
import numpy as np
import pytest

from lepton_hpc.config import DataConfig
from lepton_hpc.data.__main__ import info, main
from lepton_hpc.data.importers import import_npy, import_sklearn, run_import
from lepton_hpc.data.table_import import import_csv
from lepton_hpc.data.shard import Shard

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def read(path):
    with h5py.File(path, "r") as f:
        return f["X"][...], f["y"][...], dict(f.attrs)


def loadable(path):
    """The file passes `info` and opens through the trainer's shard reader."""
    assert info(path).startswith(path)
    shard = Shard(DataConfig(path=path, chunk_rows=64), 1, 0)
    try:
        n = shard.n_rows
        assert sum(item[1].shape[0] for item in shard.chunks_iter()) == n  # item: (i, X, y, ...)
    finally:
        shard.close()


def names(value):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(value).ravel()]


# -- scikit-learn -------------------------------------------------------------
@pytest.mark.parametrize("name,shape,task,n_classes", [
    ("diabetes", (442, 10), "regression", 0),
    ("breast_cancer", (569, 30), "binary", 2),
    ("digits", (1797, 64), "multiclass", 10),
    ("iris", (150, 4), "multiclass", 3),
    ("wine", (178, 13), "multiclass", 3),
])
def test_sklearn_sets(tmp_path, name, shape, task, n_classes):
    out = str(tmp_path / f"{name}.h5")
    import_sklearn(f"sklearn:{name}", out, chunk_rows=100)
    X, y, attrs = read(out)
    bunch = getattr(sklearn_datasets, f"load_{name}")()
    assert X.shape == shape and X.dtype == np.float64 and y.shape == (shape[0],) and y.dtype == np.float64
    np.testing.assert_array_equal(X, bunch.data)
    assert attrs["source"] == f"sklearn:{name}"
    assert attrs["task"] == task and attrs["n_classes"] == n_classes
    assert names(attrs["feature_names"]) == [str(n) for n in bunch.feature_names]
    assert len(names(attrs["target_names"])) == max(n_classes, 1)
    if n_classes:
        assert set(np.unique(y)) == set(range(n_classes))
        np.testing.assert_array_equal(y, np.unique(bunch.target, return_inverse=True)[1])
        assert names(attrs["target_names"]) == [str(t) for t in bunch.target_names]
    else:
        np.testing.assert_array_equal(y, bunch.target)
    loadable(out)


def test_sklearn_cli_and_unknown_name(tmp_path, capsys):
    out = str(tmp_path / "wine.h5")
    assert main(["import", "sklearn:wine", "--out", out]) == 0
    assert "multiclass" in capsys.readouterr().out
    assert main(["import", "sklearn:iris_xl", "--out", out]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sklearn:breast_cancer" in err


# -- CSV: good files ----------------------------------------------------------
def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def test_csv_round_trip_string_labels(tmp_path):
    text = ("age,species,\"weight, kg\",height\n"
            "1,dog,2.5,3\n"
            "4,cat,5,6e0\n"
            "\n"  # blank lines are skipped
            "7,\"ant\",8,-9\n"
            "10,dog,11,12\n"
            "13,cat,14,15\n")
    path = write(tmp_path, text)
    out = str(tmp_path / "data.h5")
    attrs = import_csv(path, "species", out, chunk_rows=2)  # several chunks: the remap crosses chunks
    X, y, stored = read(out)
    np.testing.assert_array_equal(X, [[1, 2.5, 3], [4, 5, 6], [7, 8, -9], [10, 11, 12], [13, 14, 15]])
    assert names(stored["classes"]) == ["ant", "cat", "dog"]  # sorted
    np.testing.assert_array_equal(y, [2, 1, 0, 2, 1])
    assert stored["task"] == "multiclass" and stored["n_classes"] == 3
    assert names(stored["feature_names"]) == ["age", "weight, kg", "height"]
    assert stored["target"] == "species" and names(stored["target_names"]) == ["ant", "cat", "dog"]
    assert stored["source"] == f"csv:{path}" and attrs["task"] == "multiclass"
    assert not os.path.exists(out + ".tmp")
    loadable(out)


def test_csv_bom_and_crlf(tmp_path):
    path = write(tmp_path, "\ufeffa,b,t\r\n1,2,3.5\r\n4,5,6.5\r\n".encode())
    out = str(tmp_path / "o.h5")
    import_csv(path, "t", out)
    X, y, attrs = read(out)
    np.testing.assert_array_equal(X, [[1, 2], [4, 5]])
    np.testing.assert_array_equal(y, [3.5, 6.5])
    assert names(attrs["feature_names"]) == ["a", "b"]


@pytest.mark.parametrize("target", ["species", "1", 1, -3])
def test_csv_target_by_name_or_index(tmp_path, target):
    path = write(tmp_path, "a,species,b,c\n1,x,2,3\n4,y,5,6\n")
    out = str(tmp_path / "o.h5")
    import_csv(path, target, out)
    X, y, attrs = read(out)
    np.testing.assert_array_equal(X, [[1, 2, 3], [4, 5, 6]])
    assert attrs["target"] == "species" and attrs["task"] == "binary"
    np.testing.assert_array_equal(y, [0, 1])


def test_csv_numeric_labels_map_by_value(tmp_path):
    path = write(tmp_path, "x,label\n0.5,1\n1.5,-1\n2.5,1.0\n3.5,-1\n")
    out = str(tmp_path / "o.h5")
    import_csv(path, "label", out)
    _, y, attrs = read(out)
    assert attrs["task"] == "binary"
    np.testing.assert_array_equal(attrs["classes"], [-1.0, 1.0])  # "1" and "1.0" are one class
    np.testing.assert_array_equal(y, [1, 0, 1, 0])


def test_csv_inferred_regression(tmp_path):
    rows = "".join(f"{i},{i * 0.5 + 0.25}\n" for i in range(10))
    path = write(tmp_path, "x,price\n" + rows)
    out = str(tmp_path / "o.h5")
    import_csv(path, "price", out, chunk_rows=3)
    _, y, attrs = read(out)
    assert attrs["task"] == "regression" and attrs["n_classes"] == 0 and "classes" not in attrs
    np.testing.assert_allclose(y, np.arange(10) * 0.5 + 0.25)
    loadable(out)


def test_csv_many_integers_is_regression_unless_told(tmp_path):
    rows = "".join(f"{i},{i * 7}\n" for i in range(50))
    path = write(tmp_path, "x,count\n" + rows)
    out = str(tmp_path / "o.h5")
    import_csv(path, "count", out, chunk_rows=8)
    _, y, attrs = read(out)
    assert attrs["task"] == "regression"
    np.testing.assert_array_equal(y, np.arange(50) * 7)
    import_csv(path, "count", out, task="multiclass", chunk_rows=8)
    _, y, attrs = read(out)
    assert attrs["task"] == "multiclass" and attrs["n_classes"] == 50
    np.testing.assert_array_equal(y, np.arange(50))


def test_csv_forced_regression_on_integer_labels(tmp_path):
    path = write(tmp_path, "x,y\n1,0\n2,1\n3,0\n")
    out = str(tmp_path / "o.h5")
    import_csv(path, "y", out, task="regression")
    _, y, attrs = read(out)
    assert attrs["task"] == "regression"
    np.testing.assert_array_equal(y, [0, 1, 0])


def test_csv_tab_delimiter(tmp_path):
    path = write(tmp_path, "a\tb\tt\n1\t2\tyes\n3\t4\tno\n", "data.tsv")
    out = str(tmp_path / "o.h5")
    import_csv(path, "t", out, delimiter="tab")
    X, y, _ = read(out)
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(y, [1, 0])


def test_csv_streams_many_rows(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 4))
    labels = rng.integers(0, 3, 5000)
    path = tmp_path / "big.csv"
    with open(path, "w") as fh:
        fh.write("a,b,c,d,cls\n")
        for row, lab in zip(X, labels):
            fh.write(",".join(repr(float(v)) for v in row) + f",k{lab}\n")
    out = str(tmp_path / "big.h5")
    import_csv(str(path), "cls", out, chunk_rows=512)
    Xs, y, attrs = read(out)
    np.testing.assert_array_equal(Xs, X)
    np.testing.assert_array_equal(y, labels)
    assert names(attrs["classes"]) == ["k0", "k1", "k2"]


# -- CSV: bad files -----------------------------------------------------------
BAD_CSV = [
    ("age,height,price\n1,2,3\n4,abc,6\n", {}, "line 3: column 'height' has non-numeric value 'abc'"),
    ("age,height,price\n1,2,3\n4,5,6\n7,8\n", {}, "line 4: expected 3 fields, found 2"),
    ("age,height,price\n1,2,3,4\n", {}, "line 2: expected 3 fields, found 4"),
    ("age,height,price\n1,2,3\n4,5,\n", {}, "line 3: the target 'price' is missing"),
    ("age,height,price\n1,2,3\n4,5,NA\n", {}, "line 3: the target 'price' is missing"),
    ("age,height,price\n1,,3\n", {}, "line 2: column 'height' has a missing value"),
    ("age,height,price\n1,2,3\n1,inf,3\n", {}, "line 3: column 'height' has non-finite value 'inf'"),
    ("age,height,price\n1,2,inf\n", {}, "line 2: the target 'price' has non-finite value 'inf'"),
    ("age,height,price\n1,2,3\n1,2,cheap\n", {"task": "regression"},
     "line 3: the target 'price' has non-numeric value 'cheap', but --task is regression"),
    ("age,height,price\n1,2,a\n1,2,b\n1,2,a\n1,2,c\n", {"task": "binary"},
     "has 3 classes, but --task binary needs exactly 2"),
    ("age,height,price\n1,2,\"3\n\n4,5,6\n", {}, "line 2: not readable as CSV"),  # unterminated quote
    ("1,2,3\n4,5,6\n", {"target": "2"}, "line 1: the first row holds only numbers; a header row"),
    ("", {}, "is empty; a header row"),
    ("age,height,price\n1,2,3\n\"4\n4\",\"5\",x,y\n", {}, "line 3: a quoted field holds a newline"),  # multi-line record
    (b"age,height,price\n1,2,3\n1,2,\xff\n", {}, "line 3: not valid UTF-8 text"),
    ("age,height,price\n", {}, "has no data rows"),
    ("age,height,cost\n1,2,3\n", {}, "line 1: --target names no column 'price'"),
    ("age,height,price\n1,2,3\n", {"target": "7"}, "line 1: --target 7 is out of range"),
    ("price\n1\n", {}, "line 1: no feature column is left"),
    ("age,price,price\n1,2,3\n", {}, "line 1: the column name 'price' appears twice"),
    ("age,height,price\n1,2,3\n4,5,3\n", {"task": "multiclass"}, "has a single class"),
]


@pytest.mark.parametrize("text,kw,message", BAD_CSV)
def test_csv_errors_name_the_line(tmp_path, text, kw, message):
    path = write(tmp_path, text)
    out = str(tmp_path / "o.h5")
    kw = dict(kw)
    target = kw.pop("target", "price")
    with pytest.raises(ValueError) as exc:
        import_csv(path, target, out, chunk_rows=2, **kw)
    text = str(exc.value)
    assert text.startswith(path) and message in text, text
    assert "\n" not in text
    assert not os.path.exists(out) and not os.path.exists(out + ".tmp")


def test_csv_cli_error_exit_code(tmp_path, capsys):
    path = write(tmp_path, "age,height,price\n1,2,3\n1,2,3\n1,x,3\n")
    out = str(tmp_path / "o.h5")
    assert main(["import", "csv", path, "--target", "price", "--out", out]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} line 4: column 'height' has non-numeric value 'x'")
    assert err.count("\n") == 1
    assert not os.path.exists(out)
    good = write(tmp_path, "age,height,price\n1,2,3.5\n1,2,3.25\n", "good.csv")
    assert main(["import", "csv", good, "--target", "price", "--task", "regression", "--out", out]) == 0
    assert "regression" in capsys.readouterr().out


def test_csv_keeps_an_existing_output_on_error(tmp_path):
    out = tmp_path / "o.h5"
    out.write_bytes(b"previous")
    path = write(tmp_path, "a,price\n1,2\n1,\n")
    with pytest.raises(ValueError, match="line 3"):
        import_csv(path, "price", str(out))
    assert out.read_bytes() == b"previous"


# -- npy ----------------------------------------------------------------------
def save(tmp_path, X, y):
    xp, yp = str(tmp_path / "X.npy"), str(tmp_path / "y.npy")
    np.save(xp, X)
    np.save(yp, y)
    return xp, yp


def test_npy_regression(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 5)).astype(np.float32)
    y = rng.standard_normal(300)
    xp, yp = save(tmp_path, X, y)
    out = str(tmp_path / "o.h5")
    import_npy(xp, yp, out, chunk_rows=64)
    Xs, ys, attrs = read(out)
    assert Xs.dtype == np.float64
    np.testing.assert_array_equal(Xs, X.astype(np.float64))
    np.testing.assert_array_equal(ys, y)
    assert attrs["task"] == "regression" and attrs["n_classes"] == 0
    loadable(out)


def test_npy_integer_and_string_labels(tmp_path):
    X = np.arange(12.0).reshape(6, 2)
    xp, yp = save(tmp_path, X, np.array([[3], [7], [3], [5], [7], [3]]))  # a rows x 1 column is fine
    out = str(tmp_path / "o.h5")
    import_npy(xp, yp, out)
    _, y, attrs = read(out)
    assert attrs["task"] == "multiclass"
    np.testing.assert_array_equal(attrs["classes"], [3, 5, 7])
    np.testing.assert_array_equal(y, [0, 2, 0, 1, 2, 0])
    xp, yp = save(tmp_path, X, np.array(["no", "yes", "no", "no", "yes", "yes"]))
    import_npy(xp, yp, out)
    _, y, attrs = read(out)
    assert attrs["task"] == "binary" and names(attrs["classes"]) == ["no", "yes"]
    np.testing.assert_array_equal(y, [0, 1, 0, 0, 1, 1])
    assert main(["import", "npy", xp, yp, "--out", out]) == 0


def bad_x_nan():
    X = np.ones((10, 3))
    X[7, 2] = np.nan
    return X, np.arange(10) * 0.5, "X.npy row 7 has a non-finite value (nan in column 2)"


def bad_y_inf():
    y = np.zeros(10)
    y[4] = np.inf
    return np.ones((10, 3)), y, "y.npy row 4 is not finite (inf)"


@pytest.mark.parametrize("case", [
    lambda: (np.ones((10, 3)), np.zeros(9), "X.npy has 10 rows but"),
    lambda: (np.ones(10), np.zeros(10), "must hold a 2-D array"),
    lambda: (np.ones((10, 3)), np.zeros((10, 2)), "must hold a 1-D array"),
    lambda: (np.ones((0, 3)), np.zeros(0), "is empty"),
    lambda: (np.array([["a", "b"]] * 10), np.zeros(10), "non-numeric dtype"),
    lambda: (np.ones((10, 3)), np.ones(10), "has a single class"),
    bad_x_nan,
    bad_y_inf,
])
def test_npy_errors(tmp_path, case):
    X, y, message = case()
    xp, yp = save(tmp_path, X, y)
    out = str(tmp_path / "o.h5")
    with pytest.raises(ValueError) as exc:
        import_npy(xp, yp, out, chunk_rows=4)
    assert message in str(exc.value), str(exc.value)
    assert not os.path.exists(out) and not os.path.exists(out + ".tmp")


def test_npy_object_array_and_missing_file(tmp_path):
    xp = str(tmp_path / "X.npy")
    np.save(xp, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    yp = str(tmp_path / "y.npy")
    np.save(yp, np.zeros(2))
    with pytest.raises(ValueError, match="holds Python objects"):
        import_npy(xp, yp, str(tmp_path / "o.h5"))
    with pytest.raises(ValueError, match="does not exist"):
        import_npy(str(tmp_path / "nope.npy"), yp, str(tmp_path / "o.h5"))


# -- argument checks ----------------------------------------------------------
@pytest.mark.parametrize("source,paths,kw,message", [
    ("csv", [], {"target": "y"}, "needs at least one input file"),
    ("csv", ["a.csv"], {}, "needs --target"),
    ("npy", ["X.npy"], {}, "takes two files"),
    ("excel", [], {}, "unknown import source"),
    ("sklearn:wine", ["extra"], {}, "takes no file arguments"),
])
def test_run_import_argument_errors(tmp_path, source, paths, kw, message):
    with pytest.raises(ValueError, match=message):
        run_import(source, paths, str(tmp_path / "o.h5"), **kw)


def test_output_folder_must_exist(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        import_sklearn("wine", str(tmp_path / "no" / "o.h5"))


def test_many_columns_fit_in_the_attrs(tmp_path):
    cols = 6000  # 6000 feature names: over HDF5's default 64 KiB attr limit
    header = ",".join(f"feature_{i}" for i in range(cols)) + ",t\n"
    row = ",".join("1" for _ in range(cols))
    path = write(tmp_path, header + row + ",a\n" + row + ",b\n")
    out = str(tmp_path / "o.h5")
    import_csv(path, "t", out)
    X, _, attrs = read(out)
    assert X.shape == (2, cols) and len(attrs["feature_names"]) == cols
    with h5py.File(out, "r") as f:
        assert len(f["X"].attrs["feature_names"]) == cols  # the dataset attr too
    loadable(out)
