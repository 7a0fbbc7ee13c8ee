"""Which input columns an import uses and how (:mod:`lepton_hpc.data.table_import`).

The feature columns are every column but the target (``--columns`` keeps only the named ones,
``--drop`` removes some), in file order. A feature column is numeric unless it is listed in
``--categorical`` (one-hot: one output column ``COL=VALUE`` per category, the categories being
every distinct text of the column in the whole input, sorted) or in ``--hashed`` (its text
hashed with MurmurHash3 into ``--hash-width`` output columns ``COL#0`` .. ``COL#W-1``, for
high cardinality). With ``--missing-indicator``, a column ``isnull(COL)`` per numeric column
that has a missing value somewhere in the input is appended after all the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError

MISSING_POLICIES = ("error", "mean", "median", "zero")
#: texts read as a missing value (any case); in Parquet files, nulls and NaN
MISSING_TOKENS = ("", "na", "n/a", "nan", "null", "none")


def null_values() -> list[str]:
    """Every case variant of :data:`MISSING_TOKENS` (pyarrow's null_values are case sensitive)."""
    out = set()
    for tok in MISSING_TOKENS:
        variants = [""]
        for ch in tok:
            variants = [v + c for v in variants for c in {ch.lower(), ch.upper()}]
        out.update(variants)
    return sorted(out)


def split_list(text: str | None) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]`` (None or empty: [])."""
    if not text:
        return []
    return [t.strip() for t in str(text).split(",") if t.strip()]


@dataclass(frozen=True)
class TableSpec:
    """Column indices into ``names`` (the input's columns)."""

    names: tuple[str, ...]
    target: int
    numeric: tuple[int, ...]
    onehot: tuple[int, ...]
    hashed: tuple[int, ...]
    features: tuple[int, ...]
    missing: str = "error"
    indicator: bool = False
    hash_width: int = 0
    kinds: dict = field(default_factory=dict)  # input column -> "numeric" | "onehot" | "hashed"

    @property
    def used(self) -> list[int]:
        """Input columns read: the features and the target, in file order."""
        return sorted(set(self.features) | {self.target})

    def string_columns(self) -> list[int]:
        return sorted(set(self.onehot) | set(self.hashed) | {self.target})


def _index(names: list[str], key, where: str, option: str) -> int:
    key = str(key).strip()
    if key in names:
        return names.index(key)
    try:
        i = int(key)
    except ValueError:
        raise UserError(f"{where}: {option} names no column {key!r} (columns: "
                        f"{', '.join(repr(n) for n in names)})") from None
    if not -len(names) <= i < len(names):
        raise UserError(f"{where}: {option} {i} is out of range; the input has {len(names)} columns "
                        f"(0..{len(names) - 1})")
    return i % len(names)


def build_spec(names: list[str], target, where: str, columns=None, drop=None, categorical=None,
               hashed=None, missing: str = "error", indicator: bool = False, hash_width: int = 0) -> TableSpec:
    """Check the column options against the input's ``names`` (``where``: the file and line 1)."""
    if target is None or str(target).strip() == "":
        raise UserError("import needs --target COLUMN (a column name or index)")
    if missing not in MISSING_POLICIES:
        raise UserError(f"--missing must be one of {', '.join(MISSING_POLICIES)}, got {missing!r}")
    t = _index(names, target, where, "--target")
    keep = [_index(names, c, where, "--columns") for c in split_list(columns)] if columns else None
    dropped = {_index(names, c, where, "--drop") for c in split_list(drop)}
    onehot = {_index(names, c, where, "--categorical") for c in split_list(categorical)}
    hashed_cols = {_index(names, c, where, "--hashed") for c in split_list(hashed)}
    if t in dropped:
        raise UserError(f"{where}: --drop names the target column {names[t]!r}")
    both = onehot & hashed_cols
    if both:
        raise UserError(f"{where}: column {names[min(both)]!r} is both in --categorical and --hashed; choose one")
    if hashed_cols and hash_width <= 0:
        raise UserError(f"--hashed needs --hash-width W > 0 (output columns per hashed column), got {hash_width}")
    features = [j for j in (sorted(set(keep)) if keep is not None else range(len(names)))
                if j != t and j not in dropped]
    for j in sorted((onehot | hashed_cols) - set(features)):
        raise UserError(f"{where}: column {names[j]!r} is in --categorical/--hashed but not among the "
                        f"feature columns" + (" (it is the target)" if j == t else ""))
    if not features:
        raise UserError(f"{where}: no feature column is left (the target is {names[t]!r})")
    kinds = {j: "onehot" if j in onehot else "hashed" if j in hashed_cols else "numeric" for j in features}
    return TableSpec(tuple(names), t, tuple(j for j in features if kinds[j] == "numeric"),
                     tuple(j for j in features if kinds[j] == "onehot"),
                     tuple(j for j in features if kinds[j] == "hashed"), tuple(features),
                     missing, bool(indicator), int(hash_width), kinds)
