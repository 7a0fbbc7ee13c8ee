"""The GLM's not-converged / diverged sentences (lepton_hpc.problems.glm_hints) on real optimizers."""

from lepton_hpc.optimizers import make_optimizer
from lepton_hpc.problems.glm_hints import rate_tip, stable_bound, steps_tip


def test_a_rate_above_the_bound_says_lower_and_below_says_raise():
    high, low = make_optimizer("constant", learning_rate=5.0), make_optimizer("constant", learning_rate=0.1)
    assert stable_bound(high, 2.0) == 1.0
    assert rate_tip(high, 2.0, diverged=False).startswith("lower optimizer.learning_rate (now 5, above the stable")
    assert rate_tip(low, 2.0, diverged=False).startswith("raise optimizer.learning_rate (now 0.1; stable up to 1)")
    assert rate_tip(low, 2.0, diverged=True).startswith("lower")


def test_the_heavy_ball_bound_counts_its_momentum_and_adam_has_none():
    mom = make_optimizer("momentum", learning_rate=1.0, momentum=0.5)
    assert stable_bound(mom, 2.0) == 1.5
    adam = make_optimizer("adam", learning_rate=0.01)
    assert stable_bound(adam, 2.0) is None
    assert "stable" not in rate_tip(adam, 2.0, diverged=False)
    assert steps_tip(adam, (0.5, 2.0), 1e-9, 100, 3) == "add train.steps"


def test_a_singular_gram_gives_no_negative_or_absurd_step_count():
    opt = make_optimizer("adaptive", learning_rate=0.0654, alpha=0.0)
    for mu in (-1.17e-15, 0.0, 1e-13):
        tip = steps_tip(opt, (mu, 15.3), 1e-12, 2, 32)
        assert "about 0" in tip and "model.reg > 0" in tip and "more rows" in tip and "about -" not in tip
    assert steps_tip(opt, (0.5, 15.3), 1e-12, 2000, 32) == "add train.steps (about 845 at eta_0 = 0.0654)"


def test_a_tiny_rate_on_a_healthy_problem_says_raise_it_not_singular():
    tiny = make_optimizer("constant", learning_rate=1e-9)
    tip = steps_tip(tiny, (1.0, 2.0), 1e-6, 1000, 10)
    assert tip.startswith("more than 1,000,000,000 train.steps at eta_0 = 1e-09") and "raise optimizer.learning_rate" in tip
    assert "about 0" not in tip
