"""The pyarrow table import in one process: categories, missing values, blocks, Parquet, errors."""

import os

import h5py
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pytest.importorskip("mmh3")
import pyarrow.parquet as pq  # noqa: E402

from lepton_hpc.data.sniff import describe_non_hdf5  # noqa: E402
from lepton_hpc.data.table_import import import_csv  # noqa: E402
from lepton_hpc.data.table_stats import _keys, _value  # noqa: E402


def names(value):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(value).ravel()]


def read(path):
    with h5py.File(path, "r") as f:
        return f["X"][...], f["y"][...], names(f["X"].attrs["feature_names"]), f["y"].attrs.get("classes")


CSV = ("a,color,b,label\n1.5,red,2,cat\n2.5,blue,,dog\n,red,4,cat\n4.0,green,5,bird\n"
       "-5,blue,6,dog\n7,,8,cat\n")


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


@pytest.mark.parametrize("block_bytes", [10, 37, 1 << 20])
def test_onehot_median_indicator_any_blocks(tmp_path, block_bytes):
    path = write(tmp_path, CSV)
    out = str(tmp_path / "o.h5")
    import_csv(path, "label", out, categorical="color", missing="median", indicator=True, block_bytes=block_bytes)
    X, y, feat, classes = read(out)
    assert feat == ["a", "color=blue", "color=green", "color=red", "b", "isnull(a)", "isnull(b)"]
    a = np.array([1.5, 2.5, np.nan, 4.0, -5, 7])
    b = np.array([2, np.nan, 4, 5, 6, 8])
    np.testing.assert_array_equal(X[:, 0], np.where(np.isnan(a), np.nanmedian(a), a))
    np.testing.assert_array_equal(X[:, 4], np.where(np.isnan(b), np.nanmedian(b), b))
    np.testing.assert_array_equal(X[:, 1:4], [[0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(X[:, 5], np.isnan(a))
    np.testing.assert_array_equal(X[:, 6], np.isnan(b))
    assert names(classes) == ["bird", "cat", "dog"]
    np.testing.assert_array_equal(y, [1, 2, 1, 0, 2, 1])
    one = open(out, "rb").read()
    out2 = str(tmp_path / "o2.h5")
    import_csv(path, "label", out2, categorical="color", missing="median", indicator=True, block_bytes=1 << 20)
    assert open(out2, "rb").read() == one  # the bytes do not depend on the blocks


def test_mean_zero_columns_drop_hash(tmp_path):
    path = write(tmp_path, CSV)
    out = str(tmp_path / "o.h5")
    import_csv(path, "label", out, missing="mean", drop="color")
    X, _, feat, _ = read(out)
    assert feat == ["a", "b"]
    assert X[2, 0] == np.nanmean([1.5, 2.5, 4.0, -5, 7]) and X[1, 1] == np.nanmean([2, 4, 5, 6, 8])
    import_csv(path, "label", out, missing="zero", columns="b,color", hashed="color", hash_width=4)
    X, _, feat, _ = read(out)
    assert feat == ["color#0", "color#1", "color#2", "color#3", "b"]
    assert X[1, 4] == 0.0
    assert X[:, :4].sum(axis=1).tolist() == [1, 1, 1, 1, 1, 0]  # one bucket each, none when missing
    assert (X[0, :4] == X[2, :4]).all()  # red and red


def test_exact_median_keys_order():
    v = np.array([-np.inf, -3.5, -0.0, 0.0, 1e-300, 2.0, 1e300])
    k = _keys(v)
    assert (np.diff(k.astype(object)) >= 0).all()
    assert [_value(int(x)) for x in k] == v.tolist()


def test_header_no_and_several_files(tmp_path):
    p1 = write(tmp_path, "1,2,0\n3,4,1\n", "a.csv")
    p2 = write(tmp_path, "5,6,0\n", "b.csv")
    out = str(tmp_path / "o.h5")
    import_csv([p1, p2], "2", out, header="no")
    X, y, feat, _ = read(out)
    assert feat == ["x0", "x1"] and X.tolist() == [[1, 2], [3, 4], [5, 6]] and y.tolist() == [0, 1, 0]


def test_parquet_row_groups(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    a = rng.standard_normal(n)
    a[[3, 17]] = np.nan
    table = pa.table({"a": a, "k": pa.array(rng.integers(0, 3, n)), "c": [["x", "y"][i % 2] for i in range(n)],
                      "t": pa.array(rng.integers(0, 2, n))})
    path = str(tmp_path / "d.parquet")
    pq.write_table(table, path, row_group_size=7)
    out = str(tmp_path / "o.h5")
    import_csv(path, "t", out, fmt="parquet", categorical="c", missing="median")
    X, y, feat, classes = read(out)
    assert feat == ["a", "k", "c=x", "c=y"]
    np.testing.assert_array_equal(X[:, 0], np.where(np.isnan(a), np.nanmedian(a), a))
    np.testing.assert_array_equal(y, table.column("t").to_numpy())
    with pytest.raises(ValueError, match=r"d.parquet row group 0, row 3: column 'a' has a missing value"):
        import_csv(path, "t", str(tmp_path / "e.h5"), fmt="parquet", categorical="c")
    with pytest.raises(ValueError, match=r"row group 0: column 'c' has type string, not numbers"):
        import_csv(path, "t", str(tmp_path / "e.h5"), fmt="parquet", missing="zero")
    assert not os.path.exists(tmp_path / "e.h5")


def test_errors_name_the_line_across_blocks(tmp_path):
    rows = "".join(f"{i},{i % 3},{i % 2}\n" for i in range(200))
    path = write(tmp_path, "a,b,t\n" + rows + "7,oops,1\n" + rows)
    out = str(tmp_path / "o.h5")
    for block_bytes in (16, 100, 1 << 20):
        with pytest.raises(ValueError, match=r"data.csv line 202: column 'b' has non-numeric value 'oops'"):
            import_csv(path, "t", out, block_bytes=block_bytes)
    with pytest.raises(ValueError, match=r"--columns names no column 'zz'"):
        import_csv(path, "t", out, columns="a,zz")
    assert not os.path.exists(out)


def test_sniff_names_the_import_command(tmp_path):
    csv_path = write(tmp_path, "a,b\n1,2\n")
    assert f"import csv {csv_path} --target COLUMN" in describe_non_hdf5(csv_path)
    js = write(tmp_path, '{"text": "x", "label": "y"}\n', "d.jsonl")
    assert f"import text {js} --text-column" in describe_non_hdf5(js)
    pq.write_table(pa.table({"a": [1.0]}), str(tmp_path / "d.parquet"))
    assert f"import parquet {tmp_path / 'd.parquet'}" in describe_non_hdf5(str(tmp_path / "d.parquet"))
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["X"] = np.zeros((2, 2))
    assert describe_non_hdf5(str(tmp_path / "d.h5")) is None
