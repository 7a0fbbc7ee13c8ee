"""metrics.trace = true: every rank writes valid Chrome-trace JSON with the phase spans."""

import json

from mpirun import run_mpi

SMALL = ["--set", "data.rows=30011", "--set", "data.cols=6", "--set", "data.chunk_rows=1000",
         "--set", "train.tol=0", "--set", "train.steps=12", "--set", "checkpoint.every=5",
         "--set", "metrics.trace=true"]


def test_trace_per_rank_is_chrome_trace_json_with_phase_spans(tmp_path):
    out = tmp_path / "run"
    proc = run_mpi(2, ["--out", out, *SMALL])
    assert proc.returncode == 0, proc.stderr
    files = sorted(out.glob("trace-rank*.json"))
    assert [f.name for f in files] == ["trace-rank00000.json", "trace-rank00001.json"]
    for rank, f in enumerate(files):
        doc = json.loads(f.read_text())  # the JSON Object Format of the Trace Event Format
        assert isinstance(doc, dict) and isinstance(doc["traceEvents"], list)
        assert doc.get("displayTimeUnit", "ms") in ("ms", "ns")
        meta = [e for e in doc["traceEvents"] if e["ph"] == "M"]
        assert any(e["name"] == "process_name" and e["pid"] == rank for e in meta)
        spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
        for e in spans:  # complete events: name, pid, tid, ts and dur in microseconds
            assert isinstance(e["name"], str) and e["pid"] == rank and isinstance(e["tid"], int)
            assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
            assert isinstance(e.get("args", {}), dict)
        names = {e["name"] for e in spans}
        assert {"compute", "reduce", "update", "checkpoint"} <= names, names
        per_step = [e for e in spans if e["name"] == "update"]
        assert sorted(e["args"]["step"] for e in per_step) == list(range(12))
        assert sum(e["name"] == "checkpoint" for e in spans) >= 2  # steps 5 and 10 (and the last)
        # the phases of one rank are sequential on one thread: no two spans overlap
        spans.sort(key=lambda e: e["ts"])
        for a, b in zip(spans, spans[1:]):
            assert a["ts"] + a["dur"] <= b["ts"] + 1.0, (a, b)
