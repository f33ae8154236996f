"""Degenerate inputs give defined answers (values derived by hand) or clear errors, never silent NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from models.meta import ConvergenceError, cumul, escalc, leave1out, rma, rma_mh, rma_peto
from models.meta._projection import WeightedProjection
from models.meta._zeroin import uniroot

Z975 = stats.norm.isf(0.025)


def test_k1_gives_tau2_zero_and_q_zero():
    res = rma([0.5], [0.04], method="REML", test="knha")
    assert res.test == "z" and any("k = 1" in w for w in res.warnings)
    assert (res.k, res.tau2, res.QE, res.QEp, res.I2, res.H2) == (1, 0.0, 0.0, 1.0, 0.0, 1.0)
    assert res.beta == pytest.approx(0.5) and res.se == pytest.approx(0.2)
    assert res.ci_lb == pytest.approx(0.5 - Z975 * 0.2)
    assert (res.pi_lb, res.pi_ub) == pytest.approx((res.ci_lb, res.ci_ub))
    assert math.isnan(res.tau2_se)


def test_k2_dersimonian_laird_by_hand():
    # w = 1, 1: mean 1, Q = 2, trP = 2 - 2/2 = 1, tau2 = (2 - 1)/1 = 1; RE weights 1/2 -> se = 1
    res = rma([0.0, 2.0], [1.0, 1.0], method="DL")
    assert res.tau2 == pytest.approx(1.0) and res.beta == pytest.approx(1.0) and res.se == pytest.approx(1.0)
    assert res.QE == pytest.approx(2.0) and res.QEp == pytest.approx(stats.chi2.sf(2, 1))
    assert res.I2 == pytest.approx(50.0) and res.H2 == pytest.approx(2.0)
    assert res.pi_ub == pytest.approx(1 + Z975 * math.sqrt(2))
    knha = rma([0.0, 2.0], [1.0, 1.0], method="DL", test="knha")
    # s² = Σw(y-ŷ)²/(k-p) = (0.5 + 0.5)/1 = 1: se unchanged, t(1) critical value
    assert knha.se == pytest.approx(1.0) and knha.df == 1
    assert knha.ci_ub == pytest.approx(1 + stats.t.isf(0.025, 1))


@pytest.mark.parametrize("method", ["REML", "ML", "DL", "PM", "EB", "HE", "SJ", "HS", "HSk"])
def test_identical_effects_give_tau2_zero_exactly(method):
    yi, vi = [0.2] * 4, [0.01, 0.02, 0.03, 0.04]
    res = rma(yi, vi, method=method)
    assert res.tau2 == 0.0 and res.QE == 0.0 and res.QEp == 1.0
    assert res.beta == pytest.approx(0.2) and res.I2 == 0.0 and res.H2 == 1.0


def test_identical_effects_equal_effects_model_h2_is_zero():
    res = rma([0.2] * 3, [0.01, 0.02, 0.03], method="EE")
    assert (res.QE, res.I2, res.H2) == (0.0, 0.0, 0.0)  # metafor: I² = max(0, ...) = 0, H² = QE/df = 0


def test_tau2_truncated_at_zero():
    res = rma([0.0, 0.1], [1.0, 1.0], method="DL")  # Q = 0.005 < df = 1
    assert res.tau2 == 0.0 and res.beta == pytest.approx(0.05)


def test_double_zero_study_kept_with_half_added_or_dropped():
    es = escalc("OR", ai=[0, 3], n1i=[10, 10], ci=[0, 1], n2i=[10, 10])
    assert es.yi[0] == pytest.approx(0.0)
    assert es.vi[0] == pytest.approx(2 / 0.5 + 2 / 10.5)
    dropped = escalc("OR", ai=[0, 3], n1i=[10, 10], ci=[0, 1], n2i=[10, 10], drop00=True)
    assert math.isnan(dropped.yi[0]) and math.isnan(dropped.vi[0])
    rd = escalc("RD", ai=[0], n1i=[10], ci=[0], n2i=[10])  # ½ added to RD too: p = 0.5/11
    assert rd.vi[0] == pytest.approx(2 * (0.5 / 11) * (1 - 0.5 / 11) / 11)
    mh = rma_mh("OR", ai=[0, 3, 5], n1i=[10, 10, 20], ci=[0, 1, 2], n2i=[10, 10, 20])
    assert mh.k == 3 and mh.k_yi == 2 and mh.QE_df == 1


def test_missing_rows_are_dropped_not_counted():
    res = rma([0.1, np.nan, 0.3, 0.2], [0.01, 0.02, np.nan, 0.02], method="DL")
    assert res.k == 2 and list(res.rows) == [0, 3]
    es = escalc("OR", ai=[1, np.nan], n1i=[10, 10], ci=[2, 2], n2i=[10, 10])
    assert math.isnan(es.yi[1]) and not math.isnan(es.yi[0])


def test_non_convergence_is_reported_and_falls_back():
    rng = np.random.default_rng(3)
    vi = rng.uniform(0.01, 0.1, 20)
    yi = rng.normal(0.3, np.sqrt(0.2 + vi))
    res = rma(yi, vi, method="REML", control={"maxiter": 1})
    dl = rma(yi, vi, method="DL")
    assert res.converged is False and res.fallback == "DL"
    assert any("did not converge" in w for w in res.warnings)
    assert res.tau2 == pytest.approx(dl.tau2)
    with pytest.raises(ConvergenceError):
        rma(yi, vi, method="REML", control={"maxiter": 1}, fallback=None)


def test_paule_mandel_search_interval_too_small_falls_back():
    res = rma([0.0, 0.0, 0.0, 0.0, 1000.0], [0.01] * 5, method="PM")  # mad = 0: search on [0, 100]
    assert res.converged is False and res.fallback == "DL" and res.tau2 > 100


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: rma([np.nan, np.nan], [0.1, 0.1]), "k = 0"),
        (lambda: rma([0.1, 0.2], [0.1, 0.1], mods=[1.0, 2.0]), "too few studies"),
        (lambda: rma([0.1, 0.2, 0.3], [0.1, 0.1, 0.1], mods=[1.0, 1.0, 1.0]), "full rank"),
        (lambda: rma([0.1, 0.2], [0.1, 0.1], method="XYZ"), "unknown method"),
        (lambda: rma([0.1, 0.2], [0.1, 0.0], method="DL"), "non-positive"),
        (lambda: rma([0.1, 0.2], [0.1, 0.0], method="EE"), "non-positive"),  # was beta nan, se 0, no warning
        (lambda: rma([0.1, 0.5, 0.3], [-0.01, 0.02, 0.03], method="REML"), "non-positive sampling variances in 1 of 3"),
        (lambda: rma([0.1, 0.5, 0.3], [-0.01, 0.02, 0.03], method="EE"), "non-positive"),
        (lambda: escalc("OR", ai=[5], n1i=[3], ci=[1], n2i=[10]), "negative"),
        (lambda: escalc("LOGIT", yi=[1], vi=[1]), "unknown measure"),
        (lambda: rma_peto(ai=[0, 0], n1i=[10, 10], ci=[0, 0], n2i=[10, 10]), "never occurred"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_mantel_haenszel_and_peto_single_table_by_hand():
    mh = rma_mh("OR", ai=[10], bi=[20], ci=[5], di=[25])
    assert mh.beta == pytest.approx(math.log(2.5))
    assert (mh.QE, mh.QEp, mh.I2, mh.H2) == (0.0, 1.0, 0.0, 1.0)
    two = rma_mh("RR", ai=[4, 6], bi=[119, 300], ci=[11, 29], di=[128, 274])
    w = np.array([11 * 123 / 262, 29 * 306 / 609])  # MH RR weights c·n1/N
    assert two.weights == pytest.approx(100 * w / w.sum())
    peto = rma_peto(ai=[10], bi=[20], ci=[5], di=[25])
    o_minus_e = 10 - 15 * 30 / 60
    v = 15 * 45 * 30 * 30 / (60**2 * 59)
    assert peto.beta == pytest.approx(o_minus_e / v) and peto.se == pytest.approx(1 / math.sqrt(v))


def test_cumulative_first_step_and_leave_one_out_sizes():
    yi = np.array([0.1, 0.5, 0.3, 0.9])
    vi = np.array([0.02, 0.03, 0.01, 0.05])
    res = rma(yi, vi, method="REML")
    seq = cumul(res, order=[2000, 1990, 1995, 1990])
    assert list(seq.order) == [1, 3, 2, 0]  # ties keep row order
    assert (seq.Q[0], seq.Qp[0], seq.tau2[0], seq.I2[0]) == (0.0, 1.0, 0.0, 0.0)
    assert seq.estimate[0] == pytest.approx(0.5)
    loo = leave1out(res)
    assert len(loo.estimate) == 4
    assert loo.estimate[0] == pytest.approx(float(rma(yi[1:], vi[1:]).beta))


def test_predict_at_new_moderator_values_and_transform():
    ablat = np.array([44, 55, 42, 52, 13, 44, 19, 13, 27, 42, 18, 33, 33], dtype=float)
    es = escalc("RR", ai=[4, 6, 3, 62, 33, 180, 8, 505, 29, 17, 186, 5, 27],
                bi=[119, 300, 228, 13536, 5036, 1361, 2537, 87886, 7470, 1699, 50448, 2493, 16886],
                ci=[11, 29, 11, 248, 47, 372, 10, 499, 45, 65, 141, 3, 29],
                di=[128, 274, 209, 12619, 5761, 1079, 619, 87892, 7232, 1600, 27197, 2338, 17825])
    res = rma(es.yi, es.vi, mods=ablat, method="REML")
    pred = res.predict(newmods=[0.0, 10.0])
    assert pred.pred[0] == pytest.approx(res.beta[0]) and pred.se[0] == pytest.approx(res.se[0])
    assert pred.pred[1] == pytest.approx(res.beta[0] + 10 * res.beta[1])
    assert np.all(pred.pi_lb < pred.ci_lb) and np.all(pred.pi_ub > pred.ci_ub)
    back = res.predict(newmods=[10.0], transf=np.exp)
    assert back.pred[0] == pytest.approx(math.exp(pred.pred[1]))
    assert res.weights.sum() == pytest.approx(100.0)
    with pytest.raises(ValueError, match="moderators"):
        res.predict(newmods=[[1.0, 2.0]])


def test_projection_traces_equal_dense_matrices():
    rng = np.random.default_rng(0)
    k = 9
    X = np.column_stack([np.ones(k), rng.normal(size=k), rng.normal(size=k)])
    w, d, y = rng.uniform(0.5, 3, k), rng.uniform(0.1, 1, k), rng.normal(size=k)
    W, D = np.diag(w), np.diag(d)
    P = W - W @ X @ np.linalg.inv(X.T @ W @ X) @ X.T @ W
    proj = WeightedProjection(X, w)
    assert proj.tr() == pytest.approx(np.trace(P))
    assert proj.tr(d) == pytest.approx(np.trace(P @ D))
    assert proj.tr_ppd() == pytest.approx(np.trace(P @ P))
    assert proj.tr_ppd(d) == pytest.approx(np.trace(P @ P @ D))
    assert proj.tr_pdpd(d) == pytest.approx(np.trace(P @ D @ P @ D))
    assert proj.fit(y)[2] == pytest.approx(y @ P @ y)
    assert proj.quad2(y) == pytest.approx(y @ P @ P @ y)


def test_uniroot_port_finds_roots_and_stops_at_r_tolerance():
    assert uniroot(lambda x: x * x - 2, 0.0, 2.0, tol=1e-13) == pytest.approx(math.sqrt(2), abs=1e-12)
    coarse = uniroot(lambda x: x * x - 2, 0.0, 2.0)  # R default tol eps^0.25 ≈ 1.2e-4
    assert abs(coarse - math.sqrt(2)) < 1.3e-4
