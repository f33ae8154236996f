"""Leave-one-out and cumulative meta-analysis: full refits of the same model (metafor 3.8-1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Sequence:
    """One refit per step; arrays in step order (``order`` = positions of the studies used)."""

    estimate: np.ndarray
    se: np.ndarray
    zval: np.ndarray
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    Q: np.ndarray
    Qp: np.ndarray
    tau2: np.ndarray | None
    I2: np.ndarray
    H2: np.ndarray
    order: np.ndarray
    t_test: bool = False

    def as_dict(self) -> dict:
        """metafor's names: ``tval`` instead of ``zval`` under Knapp–Hartung."""
        out = {"estimate": self.estimate, "se": self.se, ("tval" if self.t_test else "zval"): self.zval}
        out.update({key: getattr(self, key) for key in ("pval", "ci_lb", "ci_ub", "Q", "Qp")})
        if self.tau2 is not None:
            out["tau2"] = self.tau2
        out["I2"], out["H2"] = self.I2, self.H2
        return out


def _n_units(res) -> int:
    return len(res.tables[0]) if getattr(res, "tables", None) is not None else len(res.yi)


def _has_tau2(res) -> bool:
    return not (getattr(res, "method", "EE") in ("EE", "FE", "CE", "MH", "Peto"))


def _collect(res, subsets, order) -> Sequence:
    n = len(subsets)
    cols = {key: np.full(n, np.nan) for key in ("estimate", "se", "zval", "pval", "ci_lb", "ci_ub", "Q", "Qp",
                                                  "tau2", "I2", "H2")}
    for i, idx in enumerate(subsets):
        try:
            fit = res.refit(idx)
        except (ValueError, RuntimeError, ArithmeticError):
            continue  # metafor leaves NA for a step it cannot fit
        cols["estimate"][i] = float(np.atleast_1d(fit.beta)[0])
        cols["se"][i] = float(np.atleast_1d(fit.se)[0])
        cols["zval"][i] = float(np.atleast_1d(fit.zval)[0])
        cols["pval"][i] = float(np.atleast_1d(fit.pval)[0])
        cols["ci_lb"][i] = float(np.atleast_1d(fit.ci_lb)[0])
        cols["ci_ub"][i] = float(np.atleast_1d(fit.ci_ub)[0])
        cols["Q"][i], cols["Qp"][i] = fit.QE, fit.QEp
        cols["tau2"][i] = fit.tau2
        cols["I2"][i], cols["H2"][i] = fit.I2, fit.H2
    tau2 = cols.pop("tau2")
    tau2 = tau2 if _has_tau2(res) else None
    t_test = getattr(res, "test", "z") in ("knha", "t", "adhoc")
    return Sequence(tau2=tau2, order=np.asarray(order), t_test=t_test, **cols)


def leave1out(res) -> Sequence:
    """Refit without each study in turn (an ``RMAResult`` from ``rma`` or a result of ``rma_mh``/``rma_peto``)."""
    n = _n_units(res)
    every = np.arange(n)
    return _collect(res, [np.delete(every, i) for i in range(n)], every)


def cumul(res, order=None) -> Sequence:
    """Cumulative refits adding studies in ``order`` (sort keys, one per study used; ties keep row order)."""
    n = _n_units(res)
    if order is None:
        perm = np.arange(n)
    else:
        keys = np.asarray(order)
        if len(keys) != n:
            raise ValueError(f"order has {len(keys)} values for {n} studies")
        perm = np.argsort(keys, kind="stable")
    return _collect(res, [perm[: i + 1] for i in range(n)], perm)
