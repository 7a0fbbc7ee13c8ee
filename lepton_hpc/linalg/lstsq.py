"""Least squares through the factors: Z = U S Vᵀ by TSQR, θ = V S⁻¹ Uᵀy.

Z = [X, 1] (the ones column with an intercept), both sides scaled by √s for
sample weights. The SVD route never squares the condition number, so it stays
accurate where the normal equations (κ² ≈ 1/ε) break down; it is the engine's
exact reference for ``train.solver = "svd"``.

``svd_gd`` runs the optimizer in whitened coordinates φ with θ = V S⁻¹ φ:
there f(φ) = ½‖Uφ − y‖², whose Hessian is the identity because UᵀU = I, so
the gradient φ − Uᵀy needs no communication and a step size near 1 converges
in a few steps whatever κ is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .decompositions import svd_projection


@dataclass
class Factored:
    V: np.ndarray       # (p, k) right singular vectors kept
    S: np.ndarray       # (k,) singular values kept
    uty: np.ndarray     # (k,) Uᵀy (replicated)
    kappa: float        # condition number s_max / s_min of Z (all singular values)
    n_cut: int          # singular values below rcond·s_max that were dropped
    qr_path: str = "householder"  # the QR that factored Z (linalg.cholqr.PATHS)

    def theta(self, phi: np.ndarray) -> np.ndarray:
        """Parameters θ = V S⁻¹ φ."""
        return self.V @ (phi / self.S)

    def phi(self, theta: np.ndarray) -> np.ndarray:
        """Whitened coordinates of θ (its component in the kept subspace)."""
        return self.S * (self.V.T @ theta)

    def solution(self, ridge: float = 0.0) -> np.ndarray:
        """The least-squares θ; with ridge λ: V diag(s/(s²+λ)) Uᵀy."""
        if ridge:
            return self.V @ (self.S / (self.S ** 2 + ridge) * self.uty)
        return self.theta(self.uty)


def design_block(shard, fit_intercept: bool) -> tuple[np.ndarray, np.ndarray]:
    """This rank's rows of √s·Z and √s·y, float64 (a copy of the shard)."""
    blocks, ys = [], []
    for _, X, y, sw in shard.chunks_iter():
        Z = np.asarray(X, dtype=np.float64)
        if fit_intercept:
            Z = np.column_stack([Z, np.ones(len(y))])
        if sw is not None:
            root = np.sqrt(sw)
            Z, y = Z * root[:, None], y * root
        blocks.append(Z)
        ys.append(np.array(y, dtype=np.float64))
    p = shard.n_cols + int(fit_intercept)
    if not blocks:
        return np.zeros((0, p)), np.zeros(0)
    return np.vstack(blocks), np.concatenate(ys)


def factor(Z_local: np.ndarray, y_local: np.ndarray, comm, rcond: float) -> Factored:
    """Thin SVD of the row-distributed Z and the replicated Uᵀy. Collective over ``comm``.

    Z is factored by CholeskyQR2, by shifted CholeskyQR3 when κ(Z) is too large for it
    (κ = 1e8 is), or by Householder TSQR (Z beyond κ ≈ 1e12): ``qr_path`` says which.
    On the Cholesky paths S, V and Uᵀy (reduced exactly over fixed chunks, U never
    formed) are bitwise the same at any rank count; on the Householder path Uᵀy is
    summed by :func:`lepton_hpc.comm.allreduce_object_sum` and depends on the rank
    count, as ``U`` itself does (TSQR's local QRs follow the row split).
    """
    S, V, uty, path = svd_projection(np.ascontiguousarray(Z_local, dtype=np.float64), y_local, comm)
    keep = S > rcond * S[0] if S.size and S[0] > 0 else np.zeros(S.shape, bool)
    kappa = float(S[0] / S[-1]) if S.size and S[-1] > 0 else float("inf")
    return Factored(V=V[:, keep], S=S[keep], uty=np.asarray(uty)[keep], kappa=kappa,
                    n_cut=int((~keep).sum()), qr_path=path)
