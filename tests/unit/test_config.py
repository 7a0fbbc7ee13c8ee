import pytest

from lepton_hpc.config import SECTIONS, build, help_text, load
from lepton_hpc.errors import UserError


def test_default_job_loads_and_round_trips(tmp_path):
    cfg = load(None)
    assert cfg.name == "default" and cfg.model.kind == "linear" and cfg.optimizer.name == "adaptive"
    path = tmp_path / "resolved.toml"
    path.write_text(cfg.to_toml())
    again = load(str(path))
    assert again.to_dict() == cfg.to_dict()


def test_packaged_default_matches_jobs_dir():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    assert (root / "jobs/default.toml").read_text() == (root / "lepton_hpc/jobs/default.toml").read_text()


def test_overrides_are_typed():
    cfg = build({}, "t", ["train.steps=7", "optimizer.name=adam", "data.in_memory=false",
                          "optimizer.learning_rate=1", "data.true_weights=[1.0, 2]", "data.cols=2"])
    assert cfg.train.steps == 7 and cfg.optimizer.name == "adam" and cfg.data.in_memory is False
    assert isinstance(cfg.optimizer.learning_rate, float) and cfg.data.true_weights == [1.0, 2]


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown config key data\.bogus; valid keys in \[data\]: path, "):
        build({"data": {"bogus": 1}}, "t")


def test_unknown_section_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown config section \[nope\]; valid sections: data, model"):
        build({"nope": {}}, "t")


@pytest.mark.parametrize("override,match", [
    ("optimizer.alpha=-0.1", r"optimizer\.alpha must be .auto. or finite and >= 0, got -0\.1"),
    ("optimizer.learning_rate=-1", r"optimizer\.learning_rate must be .auto. or finite and > 0"),
    ("optimizer.learning_rate=nan", r"optimizer\.learning_rate must be .auto. or finite and > 0"),
    ("data.chunk_rows=0", r"data\.chunk_rows must be > 0, got 0"),
    ("data.dtype=float16", r"data\.dtype must be one of float64, float32"),
    ("train.steps=1.5", r"train\.steps must be an integer"),
    ("comm.reduction=approx", r"comm\.reduction must be one of exact, fast"),
    ("data.true_weights=[1.0]", r"data\.true_weights must be empty or of length data\.cols=32"),
    ("train", r"--set expects section\.key=value"),
    ("train.eta_floor=inf", r"train\.eta_floor must be finite and >= 0, got inf"),
    ("train.eta_floor=-1", r"train\.eta_floor must be finite and >= 0"),
])
def test_invalid_values_name_the_key(override, match):
    with pytest.raises(ValueError, match=match):
        build({}, "t", [override])


def test_missing_and_malformed_job_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nrows = 3")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load(str(bad))


def test_help_lists_every_key_with_default_and_doc():
    import dataclasses
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    # the default job (linear) and the matmul job between them read every section
    text = help_text() + "\n" + help_text(load(str(root / "jobs/matmul_seed.toml")))
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in text
        for f in dataclasses.fields(cls):
            line = next(l for l in text.splitlines() if l.strip().startswith(f"{f.name} = "))
            assert "--" in line and len(line.split("--", 1)[1].strip()) > 10


@pytest.mark.parametrize("overrides,want", [
    ([], "auto"),  # a full-batch GLM: the problem picks newton/lbfgs/owlqn from d, K and the penalty
    (["model.kind=softmax"], "auto"),
    (["model.kind=logistic", "train.batch_size=100"], "gd"),  # mini-batches step with gd
    (["model.kind=mf"], "gd"),
    (["model.kind=matmul"], "gd"),
    (["model.kind=mf", "train.solver=als"], "als"),
    (["train.solver=lbfgs"], "lbfgs"),
])
def test_solver_auto_is_gd_outside_full_batch_glms(overrides, want):
    assert build({}, "t", overrides).train.solver == want


@pytest.mark.parametrize("override,match", [
    ("train.lbfgs_memory=0", r"train\.lbfgs_memory must be >= 1, got 0"),
    ("train.newton_max_params=0", r"train\.newton_max_params must be >= 1, got 0"),
    ("train.solver=bfgs", r"train\.solver must be one of auto, gd, lbfgs, owlqn, newton"),
])
def test_solver_keys_are_checked(override, match):
    with pytest.raises(ValueError, match=match):
        build({}, "t", [override])


def test_job_files_that_are_not_utf8_toml_are_one_sentence(tmp_path):
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf[train]\nsteps = 3\n")  # a byte-order mark, as some editors write
    assert load(str(bom)).train.steps == 3
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"# caf\xe9\n[train]\n")
    with pytest.raises(UserError, match=r"latin.toml is not UTF-8 text \(byte 5\); save it as UTF-8 TOML"):
        load(str(latin))
    h5 = tmp_path / "d.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(UserError, match=r"d.h5 is an HDF5 data file, not a TOML job; give it as --set data.path="):
        load(str(h5))
    with pytest.raises(UserError, match=r"is a directory; give a .toml job file"):
        load(str(tmp_path))
