"""``data export apt-descriptions`` on small hand-made lists: every given option reaches the
exporter, and a damaged or foreign list file is one sentence naming it, exit 1, nothing written."""

import bz2
import gzip
import json
import lzma
import os
import subprocess
import sys

import pytest

pytest.importorskip("debian.deb822")
lz4_frame = pytest.importorskip("lz4.frame")

from lepton_hpc.data.__main__ import main as data_main  # noqa: E402
from lepton_hpc.data.apt_export import list_files  # noqa: E402

COMPRESS = {"": bytes, ".lz4": lz4_frame.compress, ".gz": gzip.compress, ".xz": lzma.compress,
            ".bz2": bz2.compress}


def _stanzas(n, section="utils", prefix="pkg"):
    return "".join(f"Package: {prefix}{i}\nSection: {section}\nDescription: tool number {i}\n more text\n\n"
                   for i in range(n))


def _lists(tmp_path, text, suffix=".lz4", name="x"):
    d = tmp_path / "lists"
    d.mkdir(exist_ok=True)
    (d / f"{name}_Packages{suffix}").write_bytes(COMPRESS[suffix](text.encode()))
    return d


def _export(capsys, *args):
    rc = data_main(["export", "apt-descriptions", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("suffix", sorted(COMPRESS))
def test_every_format_is_read(tmp_path, capsys, suffix):
    lists = _lists(tmp_path, _stanzas(3) + _stanzas(2, "net", "n"), suffix)
    rc, out, err = _export(capsys, "--lists", lists, "--min-section", 1, "--out", tmp_path / "a.jsonl")
    assert rc == 0, err
    rows = [json.loads(ln) for ln in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["package"] for r in rows] == ["n0", "n1", "pkg0", "pkg1", "pkg2"]
    assert rows[2] == {"package": "pkg0", "section": "utils", "description": "tool number 0\nmore text"}


def test_min_section_is_passed_through_and_checked(tmp_path, capsys):
    lists = _lists(tmp_path, _stanzas(3) + _stanzas(2, "net", "n"))
    out = tmp_path / "a.jsonl"
    rc, _, err = _export(capsys, "--lists", lists, "--min-section", 3, "--out", out)
    assert rc == 0, err
    assert {json.loads(ln)["section"] for ln in out.read_text().splitlines()} == {"utils"}
    for bad in (0, -5):  # 0 was dropped and the default 500 used (exit 0 on a big corpus)
        rc, _, err = _export(capsys, "--lists", lists, "--min-section", bad, "--out", tmp_path / "b.jsonl")
        assert rc == 1 and err == f"error: --min-section must be >= 1, got {bad}\n"
    rc, _, err = _export(capsys, "--lists", lists, "--out", tmp_path / "b.jsonl")  # default 500
    assert rc == 1 and "has 500 packages" in err
    assert not (tmp_path / "b.jsonl").exists()


def test_lists_must_be_a_folder(tmp_path, capsys):
    for bad in ("", str(tmp_path / "missing")):
        rc, _, err = _export(capsys, "--lists", bad, "--out", tmp_path / "b.jsonl")
        assert rc == 1 and err.startswith(f"error: --lists {bad!r} is not a folder"), err
    assert not (tmp_path / "b.jsonl").exists()


@pytest.mark.parametrize("suffix,name", [(".lz4", "lz4"), (".gz", "gzip"), (".xz", "xz"), (".bz2", "bz2")])
def test_a_damaged_list_is_one_sentence_naming_it(tmp_path, capsys, suffix, name):
    lists = _lists(tmp_path, _stanzas(3), ".lz4", "good")
    bad = lists / f"x_Packages{suffix}"
    bad.write_bytes(b"garbage\n")
    out = tmp_path / "t.jsonl"
    out.write_text("the previous export\n")
    rc, _, err = _export(capsys, "--lists", lists, "--min-section", 1, "--out", out)
    assert rc == 1
    assert err.startswith(f"error: {bad}: cannot decompress it as {name} ("), err
    assert err.count("\n") == 1 and "Traceback" not in err and "run apt-get update" in err
    assert out.read_text() == "the previous export\n"  # untouched, and no temporary left beside it
    assert sorted(os.listdir(tmp_path)) == ["lists", "t.jsonl"]


def test_a_truncated_list_is_refused(tmp_path, capsys):
    full = lzma.compress(_stanzas(50).encode())
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "x_Packages.xz").write_bytes(full[: len(full) // 2])
    rc, _, err = _export(capsys, "--lists", lists, "--min-section", 1, "--out", tmp_path / "t.jsonl")
    assert rc == 1 and "x_Packages.xz: cannot decompress it as xz (" in err, err
    assert not (tmp_path / "t.jsonl").exists()


def test_a_plain_file_that_is_no_packages_list(tmp_path, capsys):
    lists = _lists(tmp_path, _stanzas(3), ".gz", "good")
    (lists / "x_Packages").write_bytes(b"garbage\n\x00\x01\xff")
    rc, _, err = _export(capsys, "--lists", lists, "--min-section", 1, "--out", tmp_path / "t.jsonl")
    assert rc == 1 and err.startswith(f"error: {lists / 'x_Packages'}: not an apt Packages list"), err
    assert not (tmp_path / "t.jsonl").exists()
    (lists / "x_Packages").write_bytes(b"\n")  # an empty list is a list (a suite with no packages)
    (lists / "x_Packages.diff_Index").write_bytes(b"SHA256-Current: abc 1\n")  # apt's pdiff index: no list
    assert [os.path.basename(p) for p in list_files(str(lists))] == ["good_Packages.gz", "x_Packages"]
    rc, _, err = _export(capsys, "--lists", lists, "--min-section", 1, "--out", tmp_path / "t.jsonl")
    assert rc == 0, err


def test_an_unknown_compression_is_named(tmp_path, capsys):
    lists = _lists(tmp_path, _stanzas(3), ".lz4", "good")
    (lists / "x_Packages.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    rc, _, err = _export(capsys, "--lists", lists, "--min-section", 1, "--out", tmp_path / "t.jsonl")
    assert rc == 1 and err.startswith(f"error: {lists / 'x_Packages.zst'}: cannot read a .zst list"), err


def test_the_console_command_exits_1_without_traceback(tmp_path):
    lists = tmp_path / "bl"
    lists.mkdir()
    (lists / "x_Packages.lz4").write_bytes(b"garbage\n")
    proc = subprocess.run([sys.executable, "-m", "lepton_hpc.data", "export", "apt-descriptions", "--lists",
                           str(lists), "--out", str(tmp_path / "t.jsonl")], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {lists / 'x_Packages.lz4'}: cannot decompress it as lz4 (")
    assert "Traceback" not in proc.stderr and not (tmp_path / "t.jsonl").exists()
