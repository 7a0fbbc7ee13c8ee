"""The scaling study committed in docs/scaling re-analyzes from what the repository holds."""

import csv
import json
import shutil
from pathlib import Path

import pytest

from lepton_hpc.scaling.analysis import analyze

STUDY = Path(__file__).resolve().parents[2] / "docs" / "scaling"


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_committed_study_analyzes_in_place_of_a_fresh_clone(tmp_path):
    pytest.importorskip("matplotlib")
    copy = tmp_path / "study"       # somewhere else than where it was made: study.json's "out" is stale
    shutil.copytree(STUDY, copy)
    (copy / "results.csv").unlink()
    (copy / "scaling.png").unlink()
    report = analyze(copy, plot=True, log=lambda *_: None)   # network.json is committed: no bench runs
    assert report["network"]["alpha_s"] > 0 and (copy / "scaling.png").stat().st_size > 10_000
    again, committed = _rows(copy / "results.csv"), _rows(STUDY / "results.csv")
    assert len(again) == len(committed) > 0
    for a, b in zip(again, committed):
        assert (a["ranks"], a["repeat"], a["status"], a["speedup"]) == (b["ranks"], b["repeat"], b["status"],
                                                                        b["speedup"])
    study = json.loads((STUDY / "study.json").read_text())
    data = [o for o in study["overrides"] if o.startswith("data.path=")]
    assert data, "the study must time training on data read from a file, not data generation"
    summary = json.loads(next((STUDY / "runs").glob("n*/summary.json")).read_text())
    assert ".h5:" in summary["data"]["source"] and "synthetic" not in summary["data"]["source"]
