"""Job configuration: one frozen dataclass per component, loaded from TOML.

Every key has a default, a type and a one-line doc (``field(metadata=...)``).
An unknown section or key is an error that lists the valid ones; values are
checked in ``__post_init__`` so a bad job fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from .engine.registry import PROBLEMS
from .errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _key(default, doc: str, choices: tuple = ()):
    meta = {"doc": doc, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _check(cond: bool, section: str, key: str, rule: str, value) -> None:
    if not cond:
        raise UserError(f"{section}.{key} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    path: str = _key("", "HDF5 file with the data; empty means synthetic data generated per chunk")
    x_dataset: str = _key("X", "name of the feature dataset (rows x cols) in data.path")
    y_dataset: str = _key("y", "name of the target dataset (rows) in data.path")
    rows: int = _key(200_000, "synthetic data: number of rows")
    cols: int = _key(32, "synthetic data: number of feature columns")
    noise: float = _key(0.1, "synthetic data: standard deviation of the target noise (matmul: of the noise added to A)")
    seed: int = _key(0, "seed of the synthetic data (chunk c is drawn from (seed, c))")
    features: str = _key("normal", "synthetic features: standard normal or uniform on [0, 1)", ("normal", "uniform"))
    true_weights: list = _key([], "synthetic data: true weights (empty: drawn from the seed)")
    true_bias: float = _key(0.0, "synthetic data: true intercept")
    chunk_rows: int = _key(4096, "rows per logical chunk (the unit of sharding, independent of the rank count)")
    dtype: str = _key("float64", "storage dtype of X in memory (float32 halves memory and traffic)", ("float64", "float32"))
    in_memory: bool = _key(True, "hold the shard in memory; false streams it from disk block by block each step")
    w_dataset: str = _key("", "name of a per-row sample-weight dataset in data.path (empty: all weights 1)")
    test_fraction: float = _key(0.0, "share of rows (or ratings) held out for testing, chosen by data.seed")
    density: float = _key(0.05, "synthetic ratings (model.kind=mf): share of observed user-item entries")
    true_rank: int = _key(8, "synthetic ratings (model.kind=mf): rank of the ground-truth factors")

    def __post_init__(self):
        s = "data"
        _check(self.rows > 0, s, "rows", "> 0", self.rows)
        _check(self.cols > 0, s, "cols", "> 0", self.cols)
        _check(math.isfinite(self.noise) and self.noise >= 0, s, "noise", "finite and >= 0", self.noise)
        _check(self.chunk_rows > 0, s, "chunk_rows", "> 0", self.chunk_rows)
        _check(self.seed >= 0, s, "seed", ">= 0", self.seed)
        _check(0 <= self.test_fraction < 1, s, "test_fraction", "in [0, 1)", self.test_fraction)
        _check(0 < self.density <= 1, s, "density", "in (0, 1]", self.density)
        _check(self.true_rank > 0, s, "true_rank", "> 0", self.true_rank)
        _check(all(isinstance(v, (int, float)) and math.isfinite(v) for v in self.true_weights),
               s, "true_weights", "a list of finite numbers", self.true_weights)
        _check(not self.true_weights or len(self.true_weights) == self.cols, s, "true_weights",
               f"empty or of length data.cols={self.cols}", self.true_weights)


@dataclass(frozen=True)
class ModelConfig:
    kind: str = _key("linear", "linear (least squares), logistic (binary), softmax (multiclass), "
                               "mf (matrix-factorization recommender), matmul (product through SVD factors)",
                     tuple(PROBLEMS))
    fit_intercept: bool = _key(True, "fit an intercept b besides the weights w")
    penalty: str = _key("none", "regularisation: none, l2, l1 (proximal step) or elasticnet",
                        ("none", "l2", "l1", "elasticnet"))
    reg: float = _key(0.0, "regularisation strength (mf: L2 on the factors)")
    l1_ratio: float = _key(0.5, "elasticnet: share of the penalty that is L1")
    standardize: bool = _key(False, "scale features by their distributed mean/std; weights reported in original units")
    classes: int = _key(0, "softmax: number of classes (0: from the data)")
    rank: int = _key(8, "mf: rank of the user/item factors; matmul: rank k of A's factorization (0: full)")

    def __post_init__(self):
        _check(math.isfinite(self.reg) and self.reg >= 0, "model", "reg", "finite and >= 0", self.reg)
        _check(0 <= self.l1_ratio <= 1, "model", "l1_ratio", "in [0, 1]", self.l1_ratio)
        _check(self.classes >= 0, "model", "classes", ">= 0", self.classes)
        _check(self.rank >= 0, "model", "rank", ">= 0", self.rank)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = _key("adaptive", "adaptive (Lepton rule), inverse_time, constant, momentum, adagrad, adam, "
                                 "or 'package.module:Class' for your own Optimizer subclass")
    learning_rate: float = _key(0.1, "initial step size eta_0")
    alpha: float = _key(0.1, "decay: adaptive eta_t = eta_{t-1}/(1+alpha*t); inverse_time eta_0/(1+alpha*t); "
                             "momentum/adagrad/adam decay eta_0/(1+alpha*t) when > 0")
    momentum: float = _key(0.9, "momentum: heavy-ball coefficient")
    beta1: float = _key(0.9, "adam: first-moment decay")
    beta2: float = _key(0.999, "adam: second-moment decay")
    eps: float = _key(1e-8, "adagrad/adam: denominator guard")

    def __post_init__(self):
        s = "optimizer"
        _check(math.isfinite(self.learning_rate) and self.learning_rate > 0, s, "learning_rate",
               "finite and > 0", self.learning_rate)
        _check(math.isfinite(self.alpha) and self.alpha >= 0, s, "alpha", "finite and >= 0", self.alpha)
        _check(0 <= self.momentum < 1, s, "momentum", "in [0, 1)", self.momentum)
        _check(0 <= self.beta1 < 1, s, "beta1", "in [0, 1)", self.beta1)
        _check(0 <= self.beta2 < 1, s, "beta2", "in [0, 1)", self.beta2)
        _check(self.eps > 0, s, "eps", "> 0", self.eps)
        _check(bool(self.name), s, "name", "non-empty", self.name)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = _key(200, "number of optimizer steps (the run may stop earlier on tol or eta_floor)")
    solver: str = _key("auto", "auto: full-batch GLMs take owlqn with an L1 penalty, else newton when "
                               "d*K <= newton_max_params, else lbfgs; mini-batches, mf and matmul take gd; "
                               "gd: stream the shard each step with optimizer.*; lbfgs: L-BFGS with a "
                               "strong-Wolfe line search; owlqn: orthant-wise L-BFGS (L1/elasticnet); newton: "
                               "damped Newton, Hessian in the gradient pass (Newton-CG past newton_max_params); "
                               "gram: one pass for X^T X, X^T y, then d x d steps; svd: least squares through "
                               "TSQR factors; svd_gd: whitened gradient descent in factor space; als: "
                               "alternating least squares (mf)",
                       ("auto", "gd", "lbfgs", "owlqn", "newton", "gram", "svd", "svd_gd", "als"))
    lbfgs_memory: int = _key(10, "lbfgs/owlqn: number of (s, y) correction pairs kept")
    newton_max_params: int = _key(2048, "newton: largest d*K with a dense Hessian (Cholesky); above it "
                                        "Newton-CG with Hessian-vector products (auto picks lbfgs there)")
    rcond: float = _key(1e-12, "svd solver: singular values below rcond * s_max are cut off")
    batch_size: int = _key(0, "global mini-batch size per step, drawn from (seed, step); 0 means full batch")
    batch_block_rows: int = _key(0, "mini-batches of whole contiguous blocks of this many rows (must divide "
                                    "data.chunk_rows; much faster per epoch); 0 draws single rows")
    patience: int = _key(0, "stop after this many steps (mini-batch: epochs) without a relative loss "
                            "improvement > tol (0: off)")
    tol: float = _key(1e-9, "stop when ||grad|| <= tol * ||grad_0||, or when the relative loss change is <= tol "
                            "with ||grad||^2 <= tol * loss (mini-batch: per epoch); 0 disables")
    eta_floor: float = _key(1e-14, "stop once the step size falls below this (the Lepton schedule decays to 0)")
    log_every: int = _key(10, "rank 0 prints and records metrics every this many steps")
    threads: int = _key(0, "BLAS threads per rank; 0 means $SLURM_CPUS_PER_TASK or 1")

    def __post_init__(self):
        s = "train"
        _check(self.steps >= 0, s, "steps", ">= 0", self.steps)
        _check(math.isfinite(self.tol) and self.tol >= 0, s, "tol", "finite and >= 0", self.tol)
        _check(self.eta_floor >= 0, s, "eta_floor", ">= 0", self.eta_floor)
        _check(self.log_every > 0, s, "log_every", "> 0", self.log_every)
        _check(self.threads >= 0, s, "threads", ">= 0", self.threads)
        _check(self.rcond >= 0, s, "rcond", ">= 0", self.rcond)
        _check(self.batch_size >= 0, s, "batch_size", ">= 0", self.batch_size)
        _check(self.batch_block_rows >= 0, s, "batch_block_rows", ">= 0", self.batch_block_rows)
        _check(self.patience >= 0, s, "patience", ">= 0", self.patience)
        _check(self.lbfgs_memory >= 1, s, "lbfgs_memory", ">= 1", self.lbfgs_memory)
        _check(self.newton_max_params >= 1, s, "newton_max_params", ">= 1", self.newton_max_params)


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = _key(50, "write a checkpoint every this many steps (0: only at the end)")
    keep: int = _key(3, "keep the newest this many checkpoints")

    def __post_init__(self):
        _check(self.every >= 0, "checkpoint", "every", ">= 0", self.every)
        _check(self.keep >= 1, "checkpoint", "keep", ">= 1", self.keep)


@dataclass(frozen=True)
class CommConfig:
    reduction: str = _key("exact", "exact: bitwise the same on any rank count; fast: one plain Allreduce",
                          ("exact", "fast"))


@dataclass(frozen=True)
class MetricsConfig:
    trace: bool = _key(False, "write a Chrome-trace JSON per rank (open in Perfetto)")


@dataclass(frozen=True)
class MatmulConfig:
    m: int = _key(1000, "rows of A (and of C = A B)")
    n: int = _key(1000, "columns of A, rows of B")
    p: int = _key(1000, "columns of B")
    method: str = _key("tsqr", "factorization of A: tsqr (exact thin SVD) or randomized", ("tsqr", "randomized"))
    oversampling: int = _key(10, "randomized SVD: extra sketch columns")
    power_iters: int = _key(2, "randomized SVD: power iterations q")
    seed: int = _key(0, "seed of A, B and the sketch")
    repeats: int = _key(3, "timed repetitions of each product")

    def __post_init__(self):
        for key in ("m", "n", "p", "repeats"):
            _check(getattr(self, key) > 0, "matmul", key, "> 0", getattr(self, key))
        _check(self.oversampling >= 0, "matmul", "oversampling", ">= 0", self.oversampling)
        _check(self.power_iters >= 0, "matmul", "power_iters", ">= 0", self.power_iters)


GLM_KINDS = ("linear", "logistic", "softmax")

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "train": TrainConfig,
    "checkpoint": CheckpointConfig,
    "comm": CommConfig,
    "metrics": MetricsConfig,
    "matmul": MatmulConfig,
}


@dataclass(frozen=True)
class JobConfig:
    name: str
    data: DataConfig
    model: ModelConfig
    optimizer: OptimizerConfig
    train: TrainConfig
    checkpoint: CheckpointConfig
    comm: CommConfig
    metrics: MetricsConfig
    matmul: MatmulConfig

    def __post_init__(self):
        # train.solver=auto is decided by the GLM problem from d and K; every other job steps with gd
        if self.train.solver == "auto" and (self.model.kind not in GLM_KINDS or self.train.batch_size):
            object.__setattr__(self, "train", dataclasses.replace(self.train, solver="gd"))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}

    def to_toml(self) -> str:
        lines = [f"# resolved config of job {self.name!r}"]
        for section, values in self.to_dict().items():
            lines.append(f"\n[{section}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _coerce(section: str, f: dataclasses.Field, value):
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    where = f"{section}.{f.name}"
    if kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise UserError(f"{where} must be an integer, got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where} must be a number, got {value!r}")
        return float(value)
    elif kind == "str":
        if not isinstance(value, str):
            raise UserError(f"{where} must be a string, got {value!r}")
    elif kind == "list":
        if not isinstance(value, list):
            raise UserError(f"{where} must be a list, got {value!r}")
    choices = f.metadata.get("choices", ())
    if choices and value not in choices:
        raise UserError(f"{where} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def _parse_override(item: str) -> tuple[str, str, Any]:
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise UserError(f"--set expects section.key=value, got {item!r}")
    dotted, raw = item.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words are strings: --set optimizer.name=adam
    return section, key, value


def build(raw: dict[str, Any], name: str, overrides: list[str] = ()) -> JobConfig:
    """Validate a parsed TOML dict plus ``--set`` overrides into a JobConfig."""
    merged = {s: dict(v) if isinstance(v, dict) else v for s, v in raw.items()}
    for item in overrides:
        section, key, value = _parse_override(item)
        merged.setdefault(section, {})
        if isinstance(merged[section], dict):
            merged[section][key] = value
    parts = {}
    for section, values in merged.items():
        if section not in SECTIONS:
            raise UserError(f"unknown config section [{section}]; valid sections: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise UserError(f"[{section}] must be a table of keys")
    for section, cls in SECTIONS.items():
        values = merged.get(section, {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise UserError(f"unknown config key {section}.{unknown[0]}; valid keys in [{section}]: "
                             f"{', '.join(fields)}")
        parts[section] = cls(**{k: _coerce(section, fields[k], v) for k, v in values.items()})
    return JobConfig(name=name, **parts)


def load(path: str | None, overrides: list[str] = ()) -> JobConfig:
    """Load a job file (None: the packaged default job) and apply overrides."""
    if path is None:
        text = resources.files("lepton_hpc").joinpath("jobs/default.toml").read_text()
        name = "default"
    else:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"job file {path} does not exist")
        text = p.read_text()
        name = p.stem
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"job file {path or 'default.toml'} is not valid TOML: {exc}") from None
    return build(raw, name, overrides)


def help_text() -> str:
    """Every config key with its default and one-line meaning (for --help)."""
    lines = ["config keys (set in the job file or with --set section.key=value):"]
    for section, cls in SECTIONS.items():
        lines.append(f"  [{section}]")
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            lines.append(f"    {f.name} = {_toml_value(default)}  -- {f.metadata['doc']}")
    return "\n".join(lines)
