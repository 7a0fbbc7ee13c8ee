"""data/sniff.py names what a non-HDF5 file is; data/memory.py refuses a shard that cannot fit."""

import gzip

import h5py
import numpy as np
import pytest

from lepton_hpc.data.memory import check_fits
from lepton_hpc.data.sniff import describe_non_hdf5
from lepton_hpc.errors import UserError


def test_each_kind_is_named_with_its_import_command(tmp_path):
    files = {
        "t.csv": (b"a,b,y\n1,2,3\n", "is a CSV text file", "import csv"),
        "t.tsv": (b"a\tb\ty\n1\t2\t3\n", "is a TSV text file", "--delimiter"),
        "t.jsonl": (b'{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n', "JSON Lines", "import text"),
        "t.parquet": (b"PAR1" + bytes(32) + b"PAR1", "is a Parquet file", "import parquet"),
        "t.csv.gz": (gzip.compress(b"a,b\n1,2\n"), "gzip-compressed", "gunzip"),
        "t.bin": (bytes(range(256)) * 4, "is not an HDF5 file", "import npy"),
    }
    for name, (data, what, command) in files.items():
        (tmp_path / name).write_bytes(data)
        text = describe_non_hdf5(str(tmp_path / name))
        assert what in text and command in text, (name, text)
    np.save(tmp_path / "x.npy", np.zeros(3))
    assert "is a NumPy .npy array" in describe_non_hdf5(str(tmp_path / "x.npy"))


def test_hdf5_files_are_left_to_h5py(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["X"] = np.zeros(2)
    with h5py.File(tmp_path / "ub.h5", "w", userblock_size=1024) as f:  # the signature at byte 1024
        f["X"] = np.zeros(2)
    assert describe_non_hdf5(str(tmp_path / "a.h5")) is None
    assert describe_non_hdf5(str(tmp_path / "ub.h5")) is None
    assert describe_non_hdf5(str(tmp_path / "missing.h5")) is None  # the caller says it is missing


def test_a_shard_too_big_for_the_node_names_ranks_and_streaming():
    gib = 1 << 30
    # 1e9 rows x 32 float64 at 2 ranks on a node with 16 GiB: refused, with a rank count that fits
    with pytest.raises(UserError) as err:
        check_fits(10**9, 32, 8, False, 5 * 10**8, 4096, size=2, node_ranks=2, in_memory=True,
                   available=16 * gib)
    text = str(err.value)
    ranks = int(text.split("run on at least ")[1].split()[0])
    fits_per_rank = 0.9 * 16 * gib / 2
    assert 10**9 * 264 / ranks <= fits_per_rank * 1.01 and "data.in_memory=false" in text
    # the same job at that many ranks, or streamed, passes
    check_fits(10**9, 32, 8, False, -(-10**9 // ranks), 4096, size=ranks, node_ranks=2, in_memory=True,
               available=16 * gib)
    check_fits(10**9, 32, 8, False, 5 * 10**8, 4096, size=2, node_ranks=2, in_memory=False, available=16 * gib)


def test_a_csv_named_h5_gets_an_out_that_is_not_itself(tmp_path):
    (tmp_path / "plain.h5").write_bytes(b"a,b,y\n1,2,3\n")
    text = describe_non_hdf5(str(tmp_path / "plain.h5"))
    assert f"--out {tmp_path / 'plain.imported.h5'}`" in text, text
    assert f"--out {tmp_path / 'plain.h5'}`" not in text
    (tmp_path / "t.csv").write_bytes(b"a,b,y\n1,2,3\n")
    assert f"--out {tmp_path / 't.h5'}`" in describe_non_hdf5(str(tmp_path / "t.csv"))


def _import(capsys, argv):
    from lepton_hpc.data.__main__ import main as data_main

    assert data_main(["import", *map(str, argv)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_imports_name_an_input_of_another_kind(tmp_path, capsys):
    csv = b"a,b,y\n1,2,3\n4,5,6\n"
    (tmp_path / "d.csv.gz").write_bytes(gzip.compress(csv))
    (tmp_path / "d.csv").write_bytes(csv)
    with h5py.File(tmp_path / "ok.h5", "w") as f:
        f["X"] = np.zeros((2, 2))
    out = tmp_path / "o.h5"
    err = _import(capsys, ["csv", tmp_path / "d.csv.gz", "--target", "y", "--out", out])
    assert "d.csv.gz is a gzip-compressed file" in err and "decompress it first (gunzip -k" in err
    assert "UTF-8" not in err
    err = _import(capsys, ["csv", tmp_path / "ok.h5", "--target", "y", "--out", out])
    assert "ok.h5 is an HDF5 file" in err and "it needs no import; give it as data.path" in err
    err = _import(capsys, ["text", tmp_path / "d.csv.gz", "--text-column", "a", "--label-column", "y", "--format",
                           "csv", "--out", out])
    assert "gzip-compressed" in err
    err = _import(capsys, ["npy", tmp_path / "d.csv", tmp_path / "d.csv", "--out", out])
    assert "d.csv is a CSV text file, not the npy input" in err and "import csv" in err
    assert "Python objects" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "d.csv.gz", "ok.h5"]  # nothing written


@pytest.mark.parametrize("libver, userblock", [("earliest", 0), ("latest", 0), ("earliest", 1024)])
def test_an_hdf5_file_cut_short_is_named_before_h5py_opens_it(tmp_path, libver, userblock):
    with h5py.File(tmp_path / "ok.h5", "w", libver=libver, userblock_size=userblock) as f:
        f["X"] = np.arange(3000.0)
    assert describe_non_hdf5(str(tmp_path / "ok.h5")) is None
    data = (tmp_path / "ok.h5").read_bytes()
    for keep in (2000, len(data) - 1):
        (tmp_path / "t.h5").write_bytes(data[:keep])
        with pytest.raises(OSError, match="truncated file"):  # what h5py would say
            h5py.File(tmp_path / "t.h5", "r")
        text = describe_non_hdf5(str(tmp_path / "t.h5"))
        assert text == (f"{tmp_path / 't.h5'} is truncated or corrupt (an HDF5 file cut short: {keep} of its "
                        f"{len(data)} bytes are there); re-create it, e.g. copy it again or re-run the import or "
                        f"synth command that made it")
