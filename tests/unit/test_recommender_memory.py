"""The recommender memory model at Spark's scale: item-sharded V, what dominates, the CLI."""

import math

from lepton_hpc.recommender.memory import main, project, sharded_per_rank_bytes

SCALE = dict(users=10**8, items=10**7, rank=64, size=1024, nnz=1e10)


def test_at_scale_v_is_not_replicated_and_the_fetch_buffers_dominate():
    b = sharded_per_rank_bytes(**SCALE, solver="als")
    rep = project(**SCALE, solver="als", shard_items=False)
    assert b["V_bytes"] == math.ceil(10**7 / 1024) * 64 * 8 and rep["V_bytes"] == 10**7 * 64 * 8
    assert b["dominant"] == "fetch_buffer_bytes" and rep["dominant"] == "V_bytes"
    assert b["total_bytes"] < rep["total_bytes"] / 3
    parts = [v for k, v in b.items() if k.endswith("_bytes") and k not in ("total_bytes", "U_total_bytes",
                                                                           "V_total_bytes", "checkpoint_root_bytes")]
    assert sum(parts) == b["total_bytes"]
    # one round's fetch is bounded by the exchange budget, whatever the scale
    assert b["exchange_rounds"][0] > 1 and b["exchange_rounds"][1] > 1


def test_cli_prints_both_modes_and_what_dominates(capsys):
    assert main(["--users", "1e8", "--items", "1e7", "--rank", "64", "--nnz", "1e10", "--ranks", "1024",
                 "--shard-items", "--compare"]) == 0
    out = capsys.readouterr().out
    assert "V item-sharded" in out and "V replicated" in out
    assert "dominant: fetch_buffer_bytes" in out and "dominant: V_bytes" in out
    assert main(["--users", "10", "--items", "10", "--rank", "2", "--ranks", "2"]) == 1
