"""Weighted least squares and traces of the residual-maker P in O(k·p²).

metafor builds the k×k matrix P = W − W X (X'WX)⁻¹ X'W; every quantity the estimators need is a
trace or quadratic form of P, so it is computed here from p×p cross-products instead (k = 10,000
stays in milliseconds).
"""

from __future__ import annotations

import numpy as np


class WeightedProjection:
    """P for weights ``w`` and design ``X``; y-independent parts are cached."""

    def __init__(self, X: np.ndarray, w: np.ndarray):
        self.X = X
        self.w = w
        self.A = X.T @ (w[:, None] * X)
        self.Ainv = np.linalg.inv(self.A)

    def _cross(self, d: np.ndarray) -> np.ndarray:
        return self.X.T @ (d[:, None] * self.X)

    def fit(self, y: np.ndarray):
        """Return (beta, residuals, RSS = y'Py)."""
        beta = self.Ainv @ (self.X.T @ (self.w * y))
        resid = y - self.X @ beta
        return beta, resid, float(np.sum(self.w * resid**2))

    def quad2(self, y: np.ndarray) -> float:
        """y'PPy = ||W(y − Xβ)||²."""
        _, resid, _ = self.fit(y)
        return float(np.sum((self.w * resid) ** 2))

    def tr(self, d: np.ndarray | None = None) -> float:
        """tr(P D) (D = I when d is None)."""
        w = self.w
        d = np.ones_like(w) if d is None else d
        return float(np.sum(w * d) - np.trace(self.Ainv @ self._cross(w * w * d)))

    def tr_ppd(self, d: np.ndarray | None = None) -> float:
        """tr(P P D)."""
        w = self.w
        d = np.ones_like(w) if d is None else d
        c2 = self.Ainv @ self._cross(w * w)
        return float(
            np.sum(w * w * d)
            - 2 * np.trace(self.Ainv @ self._cross(w**3 * d))
            + np.trace(c2 @ self.Ainv @ self._cross(w * w * d))
        )

    def tr_pdpd(self, d: np.ndarray) -> float:
        """tr(P D P D)."""
        w = self.w
        m = self.Ainv @ self._cross(w * w * d)
        return float(
            np.sum((w * d) ** 2) - 2 * np.trace(self.Ainv @ self._cross(w**3 * d * d)) + np.trace(m @ m)
        )

    def logdet_A(self) -> float:
        sign, val = np.linalg.slogdet(self.A)
        return float(val)
