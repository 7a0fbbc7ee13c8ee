"""The GLM's d x d memory check (lepton_hpc.problems.glm_memory) on a real synthetic shard."""

import pytest

from lepton_hpc.config import build
from lepton_hpc.data.shard import Shard
from lepton_hpc.errors import UserError
from lepton_hpc.problems import glm_memory
from lepton_hpc.problems.glm_memory import GRAM_MAX_BYTES, gram_bytes, gram_fits


def test_gram_is_formed_up_to_its_byte_limit_only():
    p_max = int((GRAM_MAX_BYTES / 8) ** 0.5)
    assert gram_fits(p_max - 1) and not gram_fits(p_max)
    assert gram_bytes(1, 10, 3) == 8 * (3 * 10 + 4 * 9)


def test_the_check_adds_the_shard_and_names_both_and_the_fix():
    cfg = build({}, "t", ["data.rows=100", "data.cols=4"])
    shard = Shard(cfg.data, 1, 0, None, node_ranks=1)
    glm_memory.check(shard, 1 << 20, "XᵀX", "use lbfgs", 1, available=1 << 30)  # fits: no error
    with pytest.raises(UserError, match=r"holding the shard \(.*\) and XᵀX \(1\.0 GiB\) needs .* per rank.*; "
                                        r"use lbfgs$"):
        glm_memory.check(shard, 1 << 30, "XᵀX", "use lbfgs", 1, available=1 << 30)


def test_least_squares_solvers_that_need_the_normal_equations_form_them_at_any_width(monkeypatch):
    """Past the byte limit lbfgs/gd skip XᵀX; gram solves from it and svd_gd's loss needs its yᵀy
    (without it the loss was off by yᵀy/2n, and the run stopped at another step)."""
    from lepton_hpc.problems import glm_reference

    monkeypatch.setattr(glm_memory, "GRAM_MAX_BYTES", 64)  # every width is "wide"
    for solver, wanted in (("gram", True), ("svd_gd", True), ("lbfgs", False), ("gd", False)):
        cfg = build({}, "t", ["data.rows=100", "data.cols=4", f"train.solver={solver}"])
        shard = Shard(cfg.data, 1, 0, None, node_ranks=1)
        assert glm_reference.wants_gram(cfg, shard) is wanted, solver
