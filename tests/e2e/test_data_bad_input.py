"""Bad data files and bad data-command input under real mpiexec: one `error:` sentence, exit 1, no traceback."""

import re

import h5py
import numpy as np
import pytest

from mpirun import run_mpi

SMALL = ["--set", "data.chunk_rows=500", "--set", "train.steps=3"]


def expect_error(n, args, pattern, module="lepton_hpc.train"):
    proc = run_mpi(n, args, timeout=90, module=module)
    assert proc.returncode == 1, f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error")]
    assert errors and all(e == errors[0] for e in errors), proc.stderr
    assert "Traceback" not in proc.stderr and "synchronously" not in proc.stderr
    assert re.search(pattern, errors[0]), errors[0]
    return errors[0]


def ok_file(path):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["X"], f["y"] = rng.standard_normal((2000, 4)), rng.standard_normal(2000)
    return path


@pytest.mark.parametrize("kind", ["truncated", "directory"])
def test_train_on_a_truncated_file_or_a_directory(tmp_path, kind):
    if kind == "truncated":
        path = tmp_path / "t.h5"
        path.write_bytes(ok_file(tmp_path / "ok.h5").read_bytes()[:2000])
        pattern = r"t\.h5 is truncated or corrupt \(an HDF5 file cut short.*re-create it"
    else:
        path = tmp_path / "d"
        path.mkdir()
        pattern = r"/d is a directory, not a file"
    expect_error(2, ["--out", tmp_path / "run", "--set", f"data.path={path}", *SMALL], pattern)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def test_import_text_with_a_key_no_line_has_is_refused_on_every_rank(tmp_path):
    import json

    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"t": f"word{i} other", "l": "ab"[i % 2]}) + "\n" for i in range(60)))
    expect_error(3, ["import", "text", src, "--text-column", "zz", "--label-column", "l", "--block-bytes", "300",
                     "--out", tmp_path / "o.h5"],
                 r"^error: no line of .*d\.jsonl has a text under 'zz' .*check --text-column$",
                 module="lepton_hpc.data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]


def test_evaluate_and_predict_on_a_truncated_file(tmp_path):
    ok = ok_file(tmp_path / "ok.h5")
    run = tmp_path / "run"
    proc = run_mpi(2, ["--out", run, "--set", f"data.path={ok}", *SMALL], timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cut = tmp_path / "t.h5"
    cut.write_bytes(ok.read_bytes()[:2000])
    pattern = r"t\.h5 is truncated or corrupt \(an HDF5 file cut short: 2000 of its \d+ bytes are there\); re-create"
    expect_error(2, [run, "--data", cut], pattern, module="lepton_hpc.evaluate")
    expect_error(2, [run, "--data", cut, "--out", tmp_path / "p.h5"], pattern, module="lepton_hpc.predict")
    assert not (tmp_path / "p.h5").exists() and cut.stat().st_size == 2000
