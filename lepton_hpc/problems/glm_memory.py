"""The d x d buffers a dense GLM run holds per rank beyond its shard, checked before they are allocated.

The shard's own check (:func:`lepton_hpc.data.memory.check_fits`) counts X, y and the weights.
Least squares' reference pass adds one Gram row (XᵀX, Xᵀy, yᵀy: ``p² + p + 1`` floats,
``p = d + 1``) per local chunk, the reduced total, and the d x d copies the exact solution and
the curvature take (the standardised Gram, the Hessian, the eigenvalue and Cholesky work);
dense Newton adds its per-chunk Hessian rows and the p x p Hessian. :func:`check` adds them to
the shard's bytes and refuses, in one sentence, before anything is allocated.

Which runs form the Gram at all is decided from global sizes (the same on any rank count):
least squares forms it up to :data:`GRAM_MAX_BYTES` for its d x d matrix, and beyond that only
when ``train.solver = "gram"`` needs it (the exact solution in ``summary.json`` is then
unknown, and ``learning_rate = "auto"`` takes λ_max from power iteration on X).
"""

from __future__ import annotations

from ..data.memory import check_budget, human

#: least squares forms XᵀX for its exact solution and curvature up to this d x d size (p ≈ 5,800)
GRAM_MAX_BYTES = 1 << 28


def gram_fits(n_cols: int) -> bool:
    """The reference pass forms XᵀX without being asked (a global size: any rank count agrees)."""
    p = n_cols + 1
    return p * p * 8 <= GRAM_MAX_BYTES


def gram_bytes(local_chunks: int, row_width: int, p: int) -> int:
    """The reference pass's chunk rows, the reduced total and its copy, and four p x p matrices."""
    return 8 * ((local_chunks + 2) * row_width + 4 * p * p)


def newton_bytes(local_chunks: int, row_width: int, p: int) -> int:
    """Dense Newton: one Hessian row per local chunk, the reduced total and three p x p Hessians."""
    return 8 * ((local_chunks + 1) * row_width + 3 * p * p)


def check(shard, extra: int, what: str, fix: str, node_ranks: int, available: int | None = None) -> None:
    """A UserError when the shard plus ``extra`` bytes per rank do not fit this node (see the module doc);
    ``available``: the node's free bytes (default: MemAvailable)."""
    check_budget(shard.nbytes + extra, node_ranks,
                 f"holding the shard ({human(shard.nbytes)}) and {what} ({human(extra)})", fix, available)
