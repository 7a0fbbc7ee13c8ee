"""The README's scaling section quotes the committed study (docs/scaling), not an older one."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Scaling studies and the cost model")
    return " ".join(text[start:text.index("\n## ", start + 1)].split())  # one line: figures may wrap


def test_readme_figures_are_those_of_the_committed_projection():
    rep = json.loads((ROOT / "docs" / "scaling" / "projection.json").read_text())
    net = json.loads((ROOT / "docs" / "scaling" / "network.json").read_text())
    text = _section()
    model, top = rep["model"], max(rep["projection"], key=lambda p: p["ranks"])["ranks"]
    by = {(p["algorithm"], p["ranks"]): p for p in rep["projection"]}
    best = max(p["speedup"] for p in rep["projection"])
    wall = {p["ranks"]: p["measured_wall_s_median"] for p in rep["measured_points"]}
    expected = [
        f"fixed {model['fixed_s']:.3f} s per run", f"{model['per_row_s'] * 1e6:.2f} µs per row",
        f"caps the speedup near {best:.1f}", f"past {rep['n_chunks']} ranks",
        f"ring latency costs {by['ring', top]['t_comm_s']:.2f} s per run at {top} ranks",
        f"down to {by['ring', top]['speedup']:.1f}", f"Rabenseifner: {by['rabenseifner', top]['speedup']:.1f}",
        f"α = {net['alpha_s'] * 1e6:.2f} µs", f"β = {net['beta_s_per_byte'] * 1e9:.2f} ns/B",
        f"{net['bandwidth_gb_s']:.1f} GB/s", f"within {rep['check']['max_abs_error']:.1%}",
        f"{wall[1]:.2f} s at 1 rank", f"{wall[2]:.2f} s at 2", f"{wall[4]:.2f} s at 4 oversubscribed",
        f"speedup {wall[1] / wall[2]:.2f}", f"efficiency {wall[1] / wall[2] / 2:.2f}",
    ]
    missing = [e for e in expected if e not in text]
    assert not missing, missing
