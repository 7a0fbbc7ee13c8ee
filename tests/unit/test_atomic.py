"""The one atomic writer: the final name holds the old file or the whole new one, never a part."""

import json
import os

import h5py
import numpy as np
import pytest

from lepton_hpc.data.atomic import atomic_path, write_json, write_text


class Boom(Exception):
    pass


def test_write_text_and_json(tmp_path):
    write_text(tmp_path / "a.txt", "hello\n")
    assert (tmp_path / "a.txt").read_text() == "hello\n"
    write_json(tmp_path / "a.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    assert (tmp_path / "a.json").read_text().endswith("\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.txt"]  # no tmp left


def test_failure_inside_leaves_no_final_file_and_no_tmp(tmp_path):
    with pytest.raises(Boom):
        with atomic_path(tmp_path / "out.h5") as tmp:
            with h5py.File(tmp, "w") as f:
                f["x"] = np.arange(5)
            raise Boom()
    assert list(tmp_path.iterdir()) == []


def test_old_file_survives_a_failed_rewrite(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"v": 1})
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as fh:
                fh.write('{"v": 2, "trunc')
            raise Boom()
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_unserialisable_json_writes_nothing(tmp_path):
    write_json(tmp_path / "r.json", {"v": 1})
    with pytest.raises(TypeError):
        write_json(tmp_path / "r.json", {"v": object()})
    assert json.loads((tmp_path / "r.json").read_text()) == {"v": 1}
    assert len(list(tmp_path.iterdir())) == 1


def test_h5py_writer_replaces_whole_file_with_umask_permissions(tmp_path):
    target = tmp_path / "f.h5"
    for n in (3, 7):
        with atomic_path(target) as tmp:
            assert not os.path.exists(tmp) and os.path.dirname(tmp) == str(tmp_path)
            with h5py.File(tmp, "w") as f:
                f["x"] = np.arange(n)
    with h5py.File(target, "r") as f:
        assert f["x"].shape == (7,)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["f.h5"]


def test_a_name_that_cannot_be_a_file_is_one_sentence_that_is_also_an_oserror(tmp_path):
    from lepton_hpc.data.atomic import TargetError, reserve_tmp
    from lepton_hpc.errors import UserError

    cases = {"": "--out is empty; give the name of the file to write",
             str(tmp_path): f"cannot write {tmp_path}: it is a folder; give a file name",
             str(tmp_path / "no" / "x.h5"): f"cannot write {tmp_path / 'no' / 'x.h5'}: the folder "
                                            f"{tmp_path / 'no'} does not exist (create it first)"}
    for path, want in cases.items():
        with pytest.raises(TargetError) as info:
            with atomic_path(path) as tmp:
                open(tmp, "w").close()
        assert str(info.value) == want
        assert isinstance(info.value, UserError) and isinstance(info.value, OSError)  # checkpoint saves catch it
        with pytest.raises(TargetError):
            reserve_tmp(path)
    assert list(tmp_path.iterdir()) == []


def test_imports_use_the_writers_out_rule(tmp_path):
    """An import's --out follows data.atomic.check_output: not an input by another path, not in checkpoints/."""
    import os

    from lepton_hpc.data.blocks import check_inputs
    from lepton_hpc.errors import UserError

    src = tmp_path / "t.csv"
    src.write_text("a,y\n1,2\n")
    os.symlink(src, tmp_path / "link.csv")
    with pytest.raises(UserError, match=r"is also an input file"):
        check_inputs([str(src)], str(tmp_path / "link.csv"), "csv")  # the same file through a link
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (tmp_path / "run" / "config.toml").write_text("")
    with pytest.raises(UserError, match=r"a run's checkpoints folder"):
        check_inputs([str(src)], str(ck / "x.h5"), "csv")
