"""Job configuration: one frozen dataclass per component, loaded from TOML.

Every key has a default, a type and a one-line doc (``field(metadata=...)``).
An unknown section or key is an error that lists the valid ones; values are
checked in ``__post_init__`` so a bad job fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
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
    test_fraction: float = _key(0.0, "share of rows (or ratings) held out for testing, drawn per row from "
                                     "(data.seed, global row): the same split at any chunk_rows and rank count")
    density: float = _key(0.05, "synthetic ratings (model.kind=mf): share of observed user-item entries")
    true_rank: int = _key(8, "synthetic ratings (model.kind=mf): rank of the ground-truth factors")
    implicit: bool = _key(False, "synthetic ratings (model.kind=mf): interaction counts drawn from a rank-"
                                 "true_rank multinomial-logit model instead of noisy ratings (model.feedback=implicit)")

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
    # -- mf: regularisation and implicit feedback (problems/mf_reg.py, problems/mf_implicit.py) --
    reg_scaling: str = _key("count", "mf: count scales reg by each user's and item's training count (ALS-WR, "
                                     "Zhou et al. 2008, as Spark); none: one reg for every row (the old behaviour)",
                            ("count", "none"))
    feedback: str = _key("explicit", "mf: explicit (fit the ratings) or implicit (confidence-weighted ALS of "
                                     "Hu, Koren, Volinsky 2008 on interaction counts)", ("explicit", "implicit"))
    alpha: float = _key(40.0, "mf implicit: confidence of an interaction r is 1 + alpha * r")
    inner_solver: str = _key("cholesky", "mf implicit: per-row solve, cholesky (exact) or cg (model.cg_steps "
                                         "conjugate-gradient steps from the previous factors, as implicit's use_cg)",
                             ("cholesky", "cg"))
    cg_steps: int = _key(3, "mf implicit, inner_solver=cg: conjugate-gradient steps per row and half-sweep")
    top_k: int = _key(10, "mf implicit: k of the held-out ranking metrics precision@k, recall@k, nDCG@k")
    shard_items: bool = _key(False, "mf: each rank owns a block of items' factors (V is not replicated); "
                                    "each half-sweep fetches only the factor rows its ratings need")

    def __post_init__(self):
        _check(math.isfinite(self.alpha) and self.alpha >= 0, "model", "alpha", "finite and >= 0", self.alpha)
        _check(self.cg_steps >= 1, "model", "cg_steps", ">= 1", self.cg_steps)
        _check(self.top_k >= 1, "model", "top_k", ">= 1", self.top_k)
        _check(math.isfinite(self.reg) and self.reg >= 0, "model", "reg", "finite and >= 0", self.reg)
        _check(0 <= self.l1_ratio <= 1, "model", "l1_ratio", "in [0, 1]", self.l1_ratio)
        _check(self.classes >= 0, "model", "classes", ">= 0", self.classes)
        _check(self.rank >= 0, "model", "rank", ">= 0", self.rank)
        _check(isinstance(self.shard_items, bool), "model", "shard_items", "true or false", self.shard_items)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = _key("adaptive", "adaptive (Lepton rule), inverse_time, constant, momentum, adagrad, adam, "
                                 "or 'package.module:Class' for your own Optimizer subclass")
    learning_rate: float | str = _key("auto", "initial step size eta_0; auto: 1/L from the curvature the "
                                              "reference pass measures (adagrad/adam: 0.01)")
    alpha: float | str = _key("auto", "decay: adaptive eta_t = eta_{t-1}/(1+alpha*t); inverse_time "
                                      "eta_0/(1+alpha*t); momentum/adagrad/adam decay eta_0/(1+alpha*t) when "
                                      "> 0; auto: the largest alpha whose steps still reach train.tol on the "
                                      "measured curvature (0 for the constant-step rules)")
    momentum: float = _key(0.9, "momentum: heavy-ball coefficient")
    beta1: float = _key(0.9, "adam: first-moment decay")
    beta2: float = _key(0.999, "adam: second-moment decay")
    eps: float = _key(1e-8, "adagrad/adam: denominator guard")

    def __post_init__(self):
        s = "optimizer"
        if self.learning_rate != "auto":
            _check(math.isfinite(self.learning_rate) and self.learning_rate > 0, s, "learning_rate",
                   '"auto" or finite and > 0', self.learning_rate)
        if self.alpha != "auto":
            _check(math.isfinite(self.alpha) and self.alpha >= 0, s, "alpha", '"auto" or finite and >= 0',
                   self.alpha)
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
    require_convergence: bool = _key(False, "exit with code 3 when the run stops short of train.tol (eta floor "
                                            "or step budget): for pipelines that must not go on with an "
                                            "unconverged model")
    log_every: int = _key(10, "rank 0 prints and records metrics every this many steps")
    threads: int = _key(0, "BLAS threads per rank; 0 means $SLURM_CPUS_PER_TASK or 1")

    def __post_init__(self):
        s = "train"
        _check(self.steps >= 0, s, "steps", ">= 0", self.steps)
        _check(math.isfinite(self.tol) and self.tol >= 0, s, "tol", "finite and >= 0", self.tol)
        _check(math.isfinite(self.eta_floor) and self.eta_floor >= 0, s, "eta_floor", "finite and >= 0",
               self.eta_floor)
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


#: Keys ``--resume auto`` lets a job file or ``--set`` change: none of them alters the state
#: checkpointed so far, only when the run stops (steps, tol, patience, eta_floor), what it
#: prints and records (log_every, trace), when it checkpoints (every, keep), and where the data
#: file is (path) or how it is held (in_memory: the same bits streamed): the data fingerprint
#: is checked on resume either way. Everything else (data, model, optimizer, solver, batches,
#: the reduction, BLAS threads) can change the result or its bits, and is refused.
RESUME_MUTABLE = ("train.steps", "train.tol", "train.patience", "train.eta_floor", "train.log_every",
                  "metrics.trace", "checkpoint.every", "checkpoint.keep", "data.path", "data.in_memory")


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
        """The sections that apply to this job's ``model.kind`` (:func:`sections_for`), key by key."""
        return {s: dataclasses.asdict(getattr(self, s)) for s in sections_for(self.model.kind)}

    def to_toml(self) -> str:
        """The resolved config as TOML (tomli-w), only the sections that apply to ``model.kind``."""
        import tomli_w

        return f"# resolved config of job {self.name!r} (model.kind = {self.model.kind!r})\n\n" + \
            tomli_w.dumps(self.to_dict())


def sections_for(kind: str) -> tuple[str, ...]:
    """The config sections a ``model.kind`` reads: all but its problem's ``config_unused``.

    Derived from the registry (:mod:`lepton_hpc.engine.registry`): each problem class
    names the sections it ignores, so a new section shows everywhere until a kind says
    it does not use it. An unknown kind keeps every section (the error comes later).
    """
    from .engine.registry import PROBLEMS, problem_class

    if kind not in PROBLEMS:
        return tuple(SECTIONS)
    unused = set(getattr(problem_class(kind), "config_unused", ()))
    return tuple(s for s in SECTIONS if s not in unused)


def _toml_value(v) -> str:
    """A value as it appears in a TOML file (for --help)."""
    import tomli_w

    return tomli_w.dumps({"v": v}).split("=", 1)[1].strip()


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
    elif kind == "float | str":  # a number or "auto"
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f'{where} must be a number or "auto", got {value!r}')
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


def _absolute(path: str, base: Path) -> str:
    return path if not path or os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _absolute_overrides(overrides) -> list[str]:
    """``--set data.path=REL`` is the shell's: relative to the current directory."""
    out = []
    for item in overrides:
        section, key, value = _parse_override(item)
        if (section, key) == ("data", "path") and isinstance(value, str):
            item = f"data.path={_toml_value(_absolute(value, Path.cwd()))}"
        out.append(item)
    return out


def _job_text(p: Path) -> str:
    """A job file's text: UTF-8, a byte-order mark dropped; a UserError for a file that is not text."""
    raw = p.read_bytes()
    if raw.startswith(b"\x89HDF\r\n\x1a\n"):
        raise UserError(f"job file {p} is an HDF5 data file, not a TOML job; give it as "
                        f"--set data.path={p} (with a job file or none)")
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise UserError(f"job file {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8 TOML") from None


def load(path: str | None, overrides: list[str] = (), relative_to: Path | None = None) -> JobConfig:
    """Load a job file (None: the packaged default job) and apply overrides.

    A relative ``data.path`` in the file is read from the job file's folder
    (``relative_to`` when given); one given with ``--set`` from the current
    directory. The config holds it as an absolute path.
    """
    if path is None:
        text = resources.files("lepton_hpc").joinpath("jobs/default.toml").read_text()
        name, base = "default", Path.cwd()
    else:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"job file {path} does not exist" if not p.is_dir() else
                            f"job file {path} is a directory; give a .toml job file")
        text = _job_text(p)
        name, base = p.stem, p.parent.absolute()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"job file {path or 'default.toml'} is not valid TOML: {exc}") from None
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str):
        data["path"] = _absolute(data["path"], relative_to or base)
    return build(raw, name, _absolute_overrides(overrides))


def load_text(text: str, name: str, what: str, overrides: list[str] = ()) -> JobConfig:
    """A config from TOML ``text`` (a run config: its data.path already absolute) and overrides;
    ``what`` names the text in an error."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{what} is not valid TOML: {exc}") from None
    return build(raw, name, _absolute_overrides(overrides))


def help_text(cfg: JobConfig | None = None) -> str:
    """Every config key that applies to ``cfg`` (default: the packaged default job) with the
    value this job uses and its one-line meaning (for ``train --help``)."""
    job = cfg.name if cfg is not None else "the default job"
    cfg = cfg if cfg is not None else load(None)
    shown = sections_for(cfg.model.kind)
    lines = [f"config keys of {job} (model.kind = {cfg.model.kind!r}; set in the job file or with "
             f"--set section.key=value; [default: X] where the job differs from the default):"]
    for section in shown:
        cls = SECTIONS[section]
        lines.append(f"  [{section}]")
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            value = getattr(getattr(cfg, section), f.name)
            note = "" if value == default else f" [default: {_toml_value(default)}]"
            lines.append(f"    {f.name} = {_toml_value(value)}  -- {f.metadata['doc']}{note}")
    hidden = [s for s in SECTIONS if s not in shown]
    if hidden:
        lines.append(f"  (not used by model.kind = {cfg.model.kind!r}, hidden: "
                     + ", ".join(f"[{s}]" for s in hidden) + ")")
    return "\n".join(lines)
