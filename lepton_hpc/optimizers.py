"""First-order optimizers for the training loop, including the Lepton adaptive rule.

Every optimizer maps ``(w, gradient)`` to a new ``w`` with

    eta_t = _step_size(t, eta_{t-1})          (t = 1, 2, ...; eta_0 = learning_rate)
    w_t   = w_{t-1} - eta_t * _direction(w_{t-1}, gradient, eta_t)

The registry (:data:`OPTIMIZERS`, :func:`make_optimizer`) holds

================  =============================================================
``adaptive``      the Lepton rule ``eta_t = eta_{t-1} / (1 + alpha t)``
``inverse_time``  ``eta_t = eta_0 / (1 + alpha t)``
``constant``      ``eta_t = eta_0``
``momentum``      heavy ball, ``v <- mu v + g``, ``w <- w - eta v``
``adagrad``       ``w <- w - eta g / (sqrt(sum g^2) + eps)``
``adam``          Adam with bias correction
================  =============================================================

Writing your own optimizer: subclass :class:`Optimizer`, list the generic
hyperparameters you use, name any per-coordinate arrays in
``accumulator_names`` (they are allocated lazily with the shape of ``w``,
saved by :meth:`Optimizer.state_dict` and restored by
:meth:`Optimizer.load_state_dict`), and override ``_direction`` (and/or
``_step_size``)::

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

Put it in an importable module and select it with
``[optimizer] name = "mypkg.rmsprop:RMSProp"``. The Lepton rule's total step:
:func:`lepton_hpc.schedules.lepton_total_step`.
"""

from __future__ import annotations

import inspect
import math
from functools import reduce

import numpy as np
from .errors import UserError
from .user_code import import_user_module

__all__ = ["Optimizer", "AdaptiveOptimizer", "InverseTimeOptimizer", "ConstantOptimizer", "MomentumOptimizer",
           "AdaGradOptimizer", "AdamOptimizer", "OPTIMIZERS", "GENERIC_HYPERPARAMETERS", "make_optimizer"]

#: Hyperparameter keys of the ``[optimizer]`` config section that every
#: registry optimizer accepts (and ignores when it does not use them).
GENERIC_HYPERPARAMETERS = ("learning_rate", "alpha", "momentum", "beta1", "beta2", "eps")

# key -> (is valid, rule text); finiteness is checked first for every key.
_RULES = {
    "learning_rate": (lambda x: x > 0, "> 0"),
    "alpha": (lambda x: x >= 0, ">= 0"),
    "momentum": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "beta1": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "beta2": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "eps": (lambda x: x > 0, "> 0"),
}


def _validated(key: str, value, prefix: str = "optimizer.") -> float:
    """Return ``value`` as a float, or raise ValueError naming ``prefix + key``."""
    if isinstance(value, (bool, np.bool_)):
        raise UserError(f"{prefix}{key} must be a real number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{prefix}{key} must be a real number, got {value!r}") from None
    ok, rule = _RULES[key]
    if not math.isfinite(x):
        raise UserError(f"{prefix}{key} must be finite, got {x!r}")
    if not ok(x):
        raise UserError(f"{prefix}{key} must be {rule}, got {x!r}")
    return x


def _check_count(n, what: str) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
        raise UserError(f"{what} must be an integer >= 0, got {n!r}")
    return int(n)


class Optimizer:
    """Base class and interface of all optimizers.

    As a concrete class it is plain gradient descent with step size
    ``eta_t = learning_rate / (1 + alpha t)`` (constant when ``alpha == 0``).

    Parameters
    ----------
    learning_rate : float, default 0.1
        Base step size ``eta_0``; finite and > 0.  Always validated and stored.
    alpha : float, default 0.0
        Decay parameter; finite and >= 0.
    momentum : float, default 0.9
        Heavy-ball coefficient, in [0, 1).
    beta1, beta2 : float, default 0.9, 0.999
        Adam moment decays, in [0, 1).
    eps : float, default 1e-8
        Denominator guard, > 0.

    Only the keys in :attr:`hyperparameter_names` are validated and stored as
    attributes; the others are accepted and ignored, so the whole
    ``[optimizer]`` config section can be passed to any registry optimizer.

    Attributes
    ----------
    name : str
        Registry name (class attribute; defaults to the class name).
    hyperparameter_names : tuple of str
        Hyperparameters this class uses: validated, reported by
        :meth:`hyperparameters` and saved in :meth:`state_dict`.  Names outside
        :data:`GENERIC_HYPERPARAMETERS` must be set by the subclass ``__init__``.
    accumulator_names : tuple of str
        Attributes holding per-coordinate arrays; ``None`` until the first
        :meth:`update`, which allocates them as float64 zeros shaped like ``w``.
    t : int
        Number of updates taken so far.
    eta : float
        Step size of the most recent update (``learning_rate`` before the first).

    Notes
    -----
    Subclasses override one or both hooks:

    ``_step_size(t, eta_prev) -> float``
        Step size of update ``t`` (1-based) given the previous one.
    ``_direction(w, gradient, eta) -> ndarray``
        Direction ``d`` of the update ``w - eta * d``.  May update the
        accumulators in place; ``self.t`` is already the 1-based index of the
        step being taken.  Must not modify ``w`` or ``gradient``.
    """

    name = "optimizer"
    hyperparameter_names: tuple = ("learning_rate", "alpha")
    accumulator_names: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    def __init__(self, learning_rate=0.1, alpha=0.0, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8):
        given = dict(learning_rate=learning_rate, alpha=alpha, momentum=momentum,
                     beta1=beta1, beta2=beta2, eps=eps)
        self.learning_rate = _validated("learning_rate", learning_rate)
        for key in self.hyperparameter_names:
            if key in given:
                setattr(self, key, _validated(key, given[key]))
        for key in self.accumulator_names:
            setattr(self, key, None)
        self.t = 0
        self.eta = self.learning_rate

    # -- hooks ----------------------------------------------------------------
    def _step_size(self, t: int, eta_prev: float) -> float:
        """Step size of update ``t``: ``learning_rate / (1 + alpha t)``."""
        return self.learning_rate / (1.0 + self.alpha * t)

    def _direction(self, w: np.ndarray, gradient: np.ndarray, eta: float) -> np.ndarray:
        """Update direction: the gradient itself."""
        return gradient

    # -- public API -----------------------------------------------------------
    def next_eta(self) -> float:
        """Return the step size the next :meth:`update` will use (state unchanged)."""
        return self._step_size(self.t + 1, self.eta)

    def schedule(self, n_steps: int) -> np.ndarray:
        """Step sizes ``eta_{t+1}, ..., eta_{t+n_steps}`` of the next updates.

        The state is unchanged.  For per-coordinate adaptive optimizers
        (AdaGrad, Adam) this is the base step size sequence before their
        per-coordinate scaling.

        Parameters
        ----------
        n_steps : int
            Number of upcoming updates, >= 0.

        Returns
        -------
        numpy.ndarray
            float64 array of length ``n_steps``; bitwise equal to the
            :attr:`eta` values the updates will take.
        """
        n = _check_count(n_steps, "n_steps")
        out = np.empty(n)
        t, eta = self.t, self.eta
        for i in range(n):
            t += 1
            eta = self._step_size(t, eta)
            out[i] = eta
        return out

    def update(self, w: np.ndarray, gradient: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Take one step: ``w - eta_t * direction``.

        Parameters
        ----------
        w, gradient : numpy.ndarray
            Current parameters and the gradient at ``w`` (same shape, float64).
        out : numpy.ndarray, optional
            Where to write the result; may be ``w`` itself for an in-place update.

        Returns
        -------
        numpy.ndarray
            The new parameters: ``out`` if given, else a new array.
        """
        w = np.asarray(w)
        gradient = np.asarray(gradient)
        if gradient.shape != w.shape:
            raise UserError(f"gradient shape {gradient.shape} does not match w shape {w.shape}")
        if out is not None and out.shape != w.shape:
            raise UserError(f"out shape {out.shape} does not match w shape {w.shape}")
        for key in self.accumulator_names:
            acc = getattr(self, key)
            if acc is not None and acc.shape != w.shape:
                raise UserError(f"{self.name} accumulator '{key}' has shape {acc.shape} but w has shape "
                                 f"{w.shape}; the optimizer state belongs to a model of another size")
        eta = self._step_size(self.t + 1, self.eta)
        for key in self.accumulator_names:
            if getattr(self, key) is None:
                setattr(self, key, np.zeros(w.shape, dtype=np.float64))
        self.t += 1
        self.eta = eta
        step = eta * self._direction(w, gradient, eta)
        if out is None:
            return w - step
        return np.subtract(w, step, out=out)

    def hyperparameters(self) -> dict:
        """Return ``{"name": name, <hyperparameter>: value, ...}`` for provenance."""
        return {"name": self.name, **{k: getattr(self, k) for k in self.hyperparameter_names}}

    def state_dict(self) -> dict:
        """Everything needed to resume exactly.

        Returns
        -------
        dict
            ``optimizer`` (the class :attr:`name` as a uint8 array of UTF-8
            bytes), ``t`` (int), ``eta`` (float), each hyperparameter (float)
            and each allocated accumulator (a copy).
        """
        state = {"optimizer": np.frombuffer(self.name.encode(), dtype=np.uint8).copy(),
                 "t": int(self.t), "eta": float(self.eta)}
        for key in self.hyperparameter_names:
            state[key] = getattr(self, key)
        for key in self.accumulator_names:
            acc = getattr(self, key)
            if acc is not None:
                state[key] = acc.copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; later updates continue bitwise identically.

        Hyperparameters in ``state`` replace those given to the constructor.

        Raises
        ------
        ValueError
            If ``state`` was saved by another optimizer class, misses or has
            unexpected keys, or holds accumulators that are not 1-D float
            arrays of one common shape (and of the shape already allocated here).
        """
        saved = state.get("optimizer")
        if isinstance(saved, np.ndarray):
            saved = bytes(saved.astype(np.uint8)).decode(errors="replace")
        elif isinstance(saved, bytes):
            saved = saved.decode(errors="replace")
        if saved != self.name:
            raise UserError(f"optimizer state was saved by optimizer {saved!r} and cannot be loaded into "
                             f"{self.name!r}; use the same optimizer.name as the run that wrote it")
        required = {"optimizer", "t", "eta", *self.hyperparameter_names}
        allowed = required | set(self.accumulator_names)
        missing, extra = sorted(required - set(state)), sorted(set(state) - allowed)
        if missing or extra:
            raise UserError(f"optimizer state for {self.name!r} is malformed: missing keys {missing}, "
                             f"unexpected keys {extra}")
        t = state["t"]
        if isinstance(t, np.ndarray) and t.ndim == 0:
            t = t.item()
        t = _check_count(t, f"optimizer state '{self.name}' t")
        hyper = {k: (_validated(k, state[k]) if k in _RULES else state[k]) for k in self.hyperparameter_names}
        accs, shapes = {}, set()
        for key in self.accumulator_names:
            if key in state:
                a = np.array(state[key], dtype=np.float64, copy=True)
                current = getattr(self, key, None)
                if a.ndim != 1 or (current is not None and current.shape != a.shape):
                    raise UserError(f"optimizer state accumulator '{key}' has shape {a.shape}; expected a 1-D "
                                     f"array{'' if current is None else f' of shape {current.shape}'}")
                accs[key] = a
                shapes.add(a.shape)
        if len(shapes) > 1:
            raise UserError(f"optimizer state accumulators have inconsistent shapes {sorted(shapes)}")
        if t > 0 and len(accs) != len(self.accumulator_names):
            raise UserError(f"optimizer state at t={t} lacks accumulators "
                             f"{sorted(set(self.accumulator_names) - set(accs))}")
        self.t, self.eta = t, float(state["eta"])
        for key, value in hyper.items():
            setattr(self, key, value)
        for key in self.accumulator_names:
            setattr(self, key, accs.get(key))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.hyperparameter_names)
        return f"{type(self).__name__}({args})"


class AdaptiveOptimizer(Optimizer):
    """The Lepton adaptive rule: ``eta_t = eta_{t-1} / (1 + alpha t)``, ``eta_0 = learning_rate``.

    The recursion is evaluated sequentially as one float division per step,
    so ``eta_t`` equals the closed form
    ``eta_0 * prod_{s=1..t} 1/(1 + alpha s)`` to rounding.  The first update
    uses ``eta_1 = eta_0 / (1 + alpha)``.  ``momentum``, ``beta1``, ``beta2``
    and ``eps`` are accepted and ignored.
    """

    name = "adaptive"

    def __init__(self, learning_rate=0.1, alpha=0.1, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(learning_rate, alpha, momentum, beta1, beta2, eps)

    def _step_size(self, t, eta_prev):
        return eta_prev / (1.0 + self.alpha * t)


class InverseTimeOptimizer(Optimizer):
    """Inverse-time decay: ``eta_t = eta_0 / (1 + alpha t)``.

    ``momentum``, ``beta1``, ``beta2`` and ``eps`` are accepted and ignored.
    """

    name = "inverse_time"

    def __init__(self, learning_rate=0.1, alpha=0.1, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(learning_rate, alpha, momentum, beta1, beta2, eps)


class ConstantOptimizer(Optimizer):
    """Constant step size ``eta_t = eta_0``; all other hyperparameters are ignored."""

    name = "constant"
    hyperparameter_names = ("learning_rate",)

    def _step_size(self, t, eta_prev):
        return self.learning_rate


class MomentumOptimizer(Optimizer):
    """Heavy ball: ``v <- momentum * v + g``, ``w <- w - eta_t v``.

    ``eta_t = learning_rate / (1 + alpha t)``: constant with the default
    ``alpha = 0``, inverse-time decay if ``alpha > 0`` is passed.  ``beta1``,
    ``beta2`` and ``eps`` are ignored.  Accumulator: ``velocity``.
    """

    name = "momentum"
    hyperparameter_names = ("learning_rate", "alpha", "momentum")
    accumulator_names = ("velocity",)

    def _direction(self, w, gradient, eta):
        self.velocity *= self.momentum
        self.velocity += gradient
        return self.velocity


class AdaGradOptimizer(Optimizer):
    """AdaGrad: ``G <- G + g^2``, ``w <- w - eta_t g / (sqrt(G) + eps)``.

    ``eta_t = learning_rate / (1 + alpha t)`` (constant for the default
    ``alpha = 0``); :meth:`schedule` returns this base sequence, before the
    per-coordinate scaling.  ``momentum``, ``beta1`` and ``beta2`` are
    ignored.  Accumulator: ``grad_sq_sum``.
    """

    name = "adagrad"
    hyperparameter_names = ("learning_rate", "alpha", "eps")
    accumulator_names = ("grad_sq_sum",)

    def _direction(self, w, gradient, eta):
        self.grad_sq_sum += gradient * gradient
        return gradient / (np.sqrt(self.grad_sq_sum) + self.eps)


class AdamOptimizer(Optimizer):
    """Adam with bias correction.

    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
    ``w <- w - eta_t (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.
    ``eta_t = learning_rate / (1 + alpha t)`` (constant for the default
    ``alpha = 0``); :meth:`schedule` returns this base sequence, before the
    per-coordinate scaling.  ``momentum`` is ignored.  Accumulators:
    ``moment1``, ``moment2``.
    """

    name = "adam"
    hyperparameter_names = ("learning_rate", "alpha", "beta1", "beta2", "eps")
    accumulator_names = ("moment1", "moment2")

    def _direction(self, w, gradient, eta):
        self.moment1 *= self.beta1
        self.moment1 += (1.0 - self.beta1) * gradient
        self.moment2 *= self.beta2
        self.moment2 += (1.0 - self.beta2) * (gradient * gradient)
        m_hat = self.moment1 / (1.0 - self.beta1 ** self.t)
        v_hat = self.moment2 / (1.0 - self.beta2 ** self.t)
        return m_hat / (np.sqrt(v_hat) + self.eps)


#: Registry name -> optimizer class.
OPTIMIZERS = {cls.name: cls for cls in (AdaptiveOptimizer, InverseTimeOptimizer, ConstantOptimizer,
                                        MomentumOptimizer, AdaGradOptimizer, AdamOptimizer)}


def _resolve(name: str) -> type:
    if ":" not in name:
        if name in OPTIMIZERS:
            return OPTIMIZERS[name]
        valid = ", ".join(repr(k) for k in OPTIMIZERS)
        raise UserError(f"optimizer.name {name!r} is unknown; use one of {valid} "
                         f"or 'package.module:Class' for your own Optimizer subclass")
    module_name, _, attr = name.partition(":")
    try:
        module = import_user_module(module_name)
    except Exception as exc:
        raise UserError(f"optimizer.name {name!r}: cannot import module {module_name!r} ({exc})") from exc
    try:
        obj = reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise UserError(f"optimizer.name {name!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, Optimizer)):
        raise UserError(f"optimizer.name {name!r} is not an Optimizer subclass")
    return obj


AUTO_FALLBACK = {"learning_rate": 0.1, "alpha": 0.1}  # "auto" without a measured curvature (mf)


def optimizer_kwargs(section) -> dict:
    """The ``[optimizer]`` section as :func:`make_optimizer` keywords ("auto": :data:`AUTO_FALLBACK`)."""
    lr, alpha = (AUTO_FALLBACK[k] if getattr(section, k) == "auto" else getattr(section, k)
                 for k in ("learning_rate", "alpha"))
    return {"learning_rate": lr, "alpha": alpha, "momentum": section.momentum,
            "beta1": section.beta1, "beta2": section.beta2, "eps": section.eps}


def make_optimizer(name: str, **hyper) -> Optimizer:
    """Build an optimizer from a registry name or ``"package.module:Class"``.

    Parameters
    ----------
    name : str
        A key of :data:`OPTIMIZERS`, or ``"package.module:Class"`` naming an
        importable :class:`Optimizer` subclass.
    **hyper
        Hyperparameters, typically the whole ``[optimizer]`` section.  Keys
        the class's ``__init__`` does not accept are dropped if they are in
        :data:`GENERIC_HYPERPARAMETERS` and rejected otherwise; a class whose
        ``__init__`` takes ``**kwargs`` receives everything.

    Returns
    -------
    Optimizer

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones), import failure, not
        an Optimizer subclass, unknown or invalid hyperparameter.
    """
    cls = _resolve(name)
    params = inspect.signature(cls).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        accepted = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        unknown = sorted(k for k in hyper if k not in accepted and k not in GENERIC_HYPERPARAMETERS)
        if unknown:
            raise UserError(f"optimizer.{unknown[0]} is not a hyperparameter of {name!r}; "
                             f"it accepts {sorted(accepted)}")
        hyper = {k: v for k, v in hyper.items() if k in accepted}
    return cls(**hyper)
