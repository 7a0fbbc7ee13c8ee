"""Unit tests for lepton_hpc.optimizers and lepton_hpc.schedules (numpy only, no MPI)."""

import math
import textwrap

import numpy as np
import pytest

from lepton_hpc.optimizers import (
    OPTIMIZERS, AdaGradOptimizer, AdamOptimizer, AdaptiveOptimizer, ConstantOptimizer,
    InverseTimeOptimizer, MomentumOptimizer, Optimizer, make_optimizer,
)
from lepton_hpc.schedules import lepton_total_step, lepton_total_step_approx

# A quadratic f(w) = 0.5 * sum(h * (w - c)**2) with gradient h * (w - c).
H = np.array([1.0, 3.0, 0.5, 10.0, 2.0])
C = np.array([1.0, -2.0, 0.5, 3.0, -1.0])
W0 = np.zeros(5)


def grad(w):
    return H * (w - C)


def run(opt, w, n):
    for _ in range(n):
        w = opt.update(w, grad(w))
    return w


USER_MODULE = '''
import numpy as np
from lepton_hpc.optimizers import Optimizer

class RMSProp(Optimizer):
    name = "rmsprop"
    hyperparameter_names = ("learning_rate", "alpha", "beta2", "eps")
    accumulator_names = ("mean_sq",)

    def _direction(self, w, gradient, eta):
        self.mean_sq *= self.beta2
        self.mean_sq += (1.0 - self.beta2) * gradient * gradient
        return gradient / (np.sqrt(self.mean_sq) + self.eps)

class Clipped(Optimizer):
    name = "clipped"
    hyperparameter_names = ("learning_rate", "clip")

    def __init__(self, learning_rate=0.1, clip=1.0):
        self.clip = float(clip)
        super().__init__(learning_rate=learning_rate)

    def _step_size(self, t, eta_prev):
        return self.learning_rate

    def _direction(self, w, gradient, eta):
        return np.clip(gradient, -self.clip, self.clip)

class NotAnOptimizer:
    pass
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_user_opts.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_user_opts"


# --- the Lepton rule ----------------------------------------------------------------

def test_lepton_rule_matches_closed_form():
    eta0, alpha = 0.1, 0.1
    opt = AdaptiveOptimizer(learning_rate=eta0, alpha=alpha)
    w = W0.copy()
    for t in range(1, 201):
        w = opt.update(w, grad(w))
        closed = eta0 * math.prod(1.0 / (1.0 + alpha * s) for s in range(1, t + 1))
        assert opt.t == t
        np.testing.assert_allclose(opt.eta, closed, rtol=1e-13, atol=0)


def test_lepton_errata_eta10():
    opt = AdaptiveOptimizer(learning_rate=0.1, alpha=0.1)
    etas = opt.schedule(10)
    assert abs(etas[-1] - 0.0015) < 1e-4          # eta_10 = 0.1 / prod(1 + 0.1 s), s = 1..10
    assert abs(etas[-1] - 0.055) > 0.05             # not the erratum's 0.055
    assert opt.next_eta() == 0.1 / 1.1              # first update uses eta_1 = eta_0 / (1 + alpha)


def test_lepton_first_update_exact():
    opt = AdaptiveOptimizer(learning_rate=0.1, alpha=0.1)
    assert opt.eta == 0.1 and opt.t == 0
    w = np.array([1.0, -2.0, 3.5])
    g = np.array([0.3, 0.7, -1.1])
    new = opt.update(w, g)
    eta1 = 0.1 / (1.0 + 0.1)
    assert opt.eta == eta1
    assert np.array_equal(new, w - eta1 * g)
    assert np.array_equal(w, [1.0, -2.0, 3.5])      # input untouched


def test_inverse_time_and_constant():
    opt = InverseTimeOptimizer(learning_rate=0.1, alpha=0.1)
    run(opt, W0.copy(), 10)
    assert opt.eta == pytest.approx(0.05, abs=1e-15)
    const = ConstantOptimizer(learning_rate=0.25, alpha=5.0)   # alpha ignored
    w = W0.copy()
    for _ in range(5):
        g = grad(w)
        expected = w - 0.25 * g
        w = const.update(w, g)
        assert np.array_equal(w, expected)
    assert const.eta == 0.25 and const.t == 5
    assert np.array_equal(const.schedule(4), np.full(4, 0.25))


# --- momentum / adagrad / adam against reference loops --------------------------------

def test_momentum_reference():
    lr, mu = 0.02, 0.9
    opt = MomentumOptimizer(learning_rate=lr, momentum=mu)
    w, w_ref, v = W0.copy(), W0.copy(), np.zeros(5)
    for _ in range(20):
        w = opt.update(w, grad(w))
        v = mu * v + grad(w_ref)
        w_ref = w_ref - lr * v
    np.testing.assert_allclose(w, w_ref, rtol=1e-13, atol=1e-15)


def test_momentum_with_alpha_decays():
    lr, mu, alpha = 0.02, 0.5, 0.3
    opt = MomentumOptimizer(learning_rate=lr, momentum=mu, alpha=alpha)
    w, w_ref, v = W0.copy(), W0.copy(), np.zeros(5)
    for t in range(1, 21):
        w = opt.update(w, grad(w))
        v = mu * v + grad(w_ref)
        w_ref = w_ref - lr / (1 + alpha * t) * v
    np.testing.assert_allclose(w, w_ref, rtol=1e-13, atol=1e-15)


def test_adagrad_reference():
    lr, eps = 0.5, 1e-8
    opt = AdaGradOptimizer(learning_rate=lr, eps=eps)
    w, w_ref, G = W0.copy(), W0.copy(), np.zeros(5)
    for _ in range(20):
        w = opt.update(w, grad(w))
        g = grad(w_ref)
        G = G + g ** 2
        w_ref = w_ref - lr * g / (np.sqrt(G) + eps)
    np.testing.assert_allclose(w, w_ref, rtol=1e-13, atol=1e-15)


def test_adam_reference():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    opt = AdamOptimizer(learning_rate=lr)
    w, w_ref, m, v = W0.copy(), W0.copy(), np.zeros(5), np.zeros(5)
    for t in range(1, 21):
        w = opt.update(w, grad(w))
        g = grad(w_ref)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        w_ref = w_ref - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(w, w_ref, rtol=1e-13, atol=1e-15)


# --- state, schedule, in-place -----------------------------------------------------------

ALL = sorted(OPTIMIZERS)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_bitwise(name):
    hyper = dict(learning_rate=0.05, alpha=0.01, momentum=0.8, beta1=0.85, beta2=0.99, eps=1e-7)
    a = make_optimizer(name, **hyper)
    w = run(a, W0.copy(), 10)
    saved = a.state_dict()
    assert all(isinstance(v, (int, float, np.ndarray)) for v in saved.values())
    w_cont = run(a, w.copy(), 10)
    b = make_optimizer(name)                       # default hyperparameters, overwritten by the state
    b.load_state_dict(saved)
    assert b.t == 10 and b.eta == saved["eta"]
    w_resumed = run(b, w.copy(), 10)
    assert np.array_equal(w_cont, w_resumed)
    assert b.t == a.t and b.eta == a.eta
    assert b.hyperparameters() == a.hyperparameters()


def test_state_dict_is_a_copy():
    opt = MomentumOptimizer()
    w = run(opt, W0.copy(), 3)
    saved = opt.state_dict()
    before = saved["velocity"].copy()
    run(opt, w, 3)
    assert np.array_equal(saved["velocity"], before)


def test_state_dict_before_first_update_round_trips():
    a = AdamOptimizer(learning_rate=0.01)
    b = AdamOptimizer()
    b.load_state_dict(a.state_dict())
    assert np.array_equal(run(a, W0.copy(), 5), run(b, W0.copy(), 5))


@pytest.mark.parametrize("src, dst", [("adaptive", "inverse_time"), ("momentum", "adam"),
                                      ("constant", "adaptive")])
def test_load_state_dict_wrong_class(src, dst):
    a = make_optimizer(src)
    run(a, W0.copy(), 2)
    with pytest.raises(ValueError, match=f"saved by optimizer '{src}'"):
        make_optimizer(dst).load_state_dict(a.state_dict())


def test_load_state_dict_wrong_shapes():
    a = AdamOptimizer()
    run(a, W0.copy(), 2)
    bad = a.state_dict()
    bad["moment1"] = np.zeros(7)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        AdamOptimizer().load_state_dict(bad)
    bad["moment1"] = np.zeros((5, 1))
    with pytest.raises(ValueError, match="moment1"):
        AdamOptimizer().load_state_dict(bad)
    b = AdamOptimizer()
    b.update(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict(a.state_dict())          # b already holds 3-element accumulators
    c = AdamOptimizer()
    c.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="another size"):
        c.update(np.zeros(3), np.ones(3))
    missing = a.state_dict()
    del missing["moment2"]
    with pytest.raises(ValueError, match="moment2"):
        AdamOptimizer().load_state_dict(missing)


def test_out_in_place():
    opt = AdaptiveOptimizer()
    ref = AdaptiveOptimizer()
    w = np.array([1.0, 2.0, 3.0])
    g = np.array([0.5, -0.5, 1.0])
    expected = ref.update(w.copy(), g)
    w_id = id(w)
    res = opt.update(w, g, out=w)
    assert res is w and id(res) == w_id
    assert np.array_equal(w, expected)
    other = np.empty(3)
    assert opt.update(w, g, out=other) is other
    with pytest.raises(ValueError, match="shape"):
        opt.update(w, g, out=np.empty(4))
    with pytest.raises(ValueError, match="gradient shape"):
        opt.update(w, np.ones(4))


@pytest.mark.parametrize("name", ALL)
def test_schedule_matches_updates(name):
    opt = make_optimizer(name, learning_rate=0.05, alpha=0.2)
    w = run(opt, W0.copy(), 3)
    state = opt.state_dict()
    nxt = opt.next_eta()
    sched = opt.schedule(15)
    assert sched.shape == (15,) and sched.dtype == np.float64
    assert opt.t == 3 and opt.state_dict()["eta"] == state["eta"] and opt.next_eta() == nxt
    assert sched[0] == nxt
    etas = []
    for _ in range(15):
        w = opt.update(w, grad(w))
        etas.append(opt.eta)
    assert np.array_equal(sched, etas)
    assert opt.schedule(0).shape == (0,)


# --- validation and the registry ----------------------------------------------------------

@pytest.mark.parametrize("cls, key, value", [
    (AdaptiveOptimizer, "learning_rate", 0.0),
    (AdaptiveOptimizer, "learning_rate", -1.0),
    (AdaptiveOptimizer, "learning_rate", float("inf")),
    (AdaptiveOptimizer, "learning_rate", float("nan")),
    (AdaptiveOptimizer, "alpha", -0.1),
    (InverseTimeOptimizer, "alpha", float("nan")),
    (MomentumOptimizer, "momentum", 1.0),
    (MomentumOptimizer, "momentum", -0.1),
    (AdamOptimizer, "beta1", 1.0),
    (AdamOptimizer, "beta2", -0.5),
    (AdamOptimizer, "eps", 0.0),
    (AdaGradOptimizer, "eps", -1e-8),
    (AdaGradOptimizer, "learning_rate", "fast"),
])
def test_invalid_hyperparameters(cls, key, value):
    with pytest.raises(ValueError, match=rf"optimizer\.{key} must be"):
        cls(**{key: value})


def test_invalid_message_text():
    with pytest.raises(ValueError, match=r"^optimizer\.alpha must be >= 0, got -0\.1$"):
        AdaptiveOptimizer(alpha=-0.1)


def test_unused_generic_hyperparameters_ignored():
    opt = ConstantOptimizer(learning_rate=0.1, alpha=-3.0, momentum=7.0)
    assert opt.hyperparameters() == {"name": "constant", "learning_rate": 0.1}
    adam = make_optimizer("adam", learning_rate=0.1, alpha=0.0, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8)
    assert adam.hyperparameters() == {"name": "adam", "learning_rate": 0.1, "alpha": 0.0, "beta1": 0.9,
                                      "beta2": 0.999, "eps": 1e-8}


def test_registry():
    assert set(OPTIMIZERS) == {"adaptive", "inverse_time", "constant", "momentum", "adagrad", "adam"}
    for name, cls in OPTIMIZERS.items():
        assert cls.name == name and issubclass(cls, Optimizer)
        assert isinstance(make_optimizer(name), cls)
    assert AdaptiveOptimizer().alpha == 0.1 and MomentumOptimizer().alpha == 0.0


def test_make_optimizer_unknown_name():
    with pytest.raises(ValueError) as info:
        make_optimizer("sgdd")
    msg = str(info.value)
    assert "'sgdd'" in msg
    for name in OPTIMIZERS:
        assert repr(name) in msg


def test_make_optimizer_unknown_key():
    with pytest.raises(ValueError, match="optimizer.learning_rat "):
        make_optimizer("adaptive", learning_rat=0.1)


def test_make_optimizer_user_class(user_module):
    opt = make_optimizer(f"{user_module}:RMSProp", learning_rate=0.01, alpha=0.0, momentum=0.9,
                         beta1=0.9, beta2=0.99, eps=1e-8)
    assert type(opt).__name__ == "RMSProp" and opt.name == "rmsprop"
    assert opt.hyperparameters()["beta2"] == 0.99
    w = run(opt, W0.copy(), 10)
    fresh = make_optimizer(f"{user_module}:RMSProp")
    fresh.load_state_dict(opt.state_dict())
    assert np.array_equal(run(opt, w.copy(), 5), run(fresh, w.copy(), 5))

    # a custom __init__ gets only the keys it accepts; generic ones are dropped
    clipped = make_optimizer(f"{user_module}:Clipped", learning_rate=0.5, alpha=0.1, clip=0.25,
                             momentum=0.9)
    assert clipped.clip == 0.25 and clipped.learning_rate == 0.5
    new = clipped.update(np.zeros(2), np.array([4.0, -0.1]))
    assert np.array_equal(new, -0.5 * np.array([0.25, -0.1]))
    with pytest.raises(ValueError, match="optimizer.wobble"):
        make_optimizer(f"{user_module}:Clipped", wobble=1)


def test_make_optimizer_user_errors(user_module):
    with pytest.raises(ValueError, match=rf"optimizer\.name '{user_module}:NotAnOptimizer' is not an "
                                         r"Optimizer subclass"):
        make_optimizer(f"{user_module}:NotAnOptimizer")
    with pytest.raises(ValueError, match="no attribute"):
        make_optimizer(f"{user_module}:Missing")
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg.mod'"):
        make_optimizer("no_such_pkg.mod:Opt")


def test_subclass_default_name():
    class Plain(Optimizer):
        pass
    assert Plain.name == "Plain"
    assert Optimizer.name == "optimizer"


# --- total step ------------------------------------------------------------------------

def test_lepton_total_step_matches_schedule():
    assert lepton_total_step(0.1, 0.1, 10) == pytest.approx(AdaptiveOptimizer().schedule(10).sum(), rel=1e-15)
    assert lepton_total_step(0.1, 0.1, 0) == 0.0
    assert lepton_total_step(0.1, 0.1, 0, include_initial=True) == 0.1
    assert lepton_total_step(0.1, 0.0, 7) == pytest.approx(0.7, rel=1e-15)
    with pytest.raises(ValueError, match="diverges"):
        lepton_total_step(0.1, 0.0)


def test_lepton_total_step_approx():
    eta0, alpha = 0.1, 1e-3
    approx = lepton_total_step_approx(eta0, alpha)
    from1 = lepton_total_step(eta0, alpha)
    from0 = lepton_total_step(eta0, alpha, include_initial=True)
    assert from0 == pytest.approx(from1 + eta0, rel=1e-14)
    assert abs(from1 - approx) / approx < 0.05      # steps actually taken: within a few percent
    assert abs(from0 - approx) / approx < 0.005     # the sum the formula models (from t = 0)
    # documented: the formula overshoots the t >= 0 sum by about eta0 / 6 for small alpha
    assert lepton_total_step_approx(eta0, 1e-5) - lepton_total_step(eta0, 1e-5, include_initial=True) \
        == pytest.approx(eta0 / 6, abs=1e-3 * eta0)
