"""Plots render to PNG and SVG and show what they claim (text checked in the SVG). Invented data."""

from __future__ import annotations

import math

import pytest

from living_review.reports.plots import cumulative_plot, forest_plot, funnel_plot
from models.living import AnalysisSpec, funnel_extras, run_analysis
from support.pooling import read_rows


@pytest.fixture(scope="module")
def secure_results():
    studies = {s["study_id"]: s for s in read_rows("synthetic_studies.csv")}
    rows = []
    for r in read_rows("synthetic_outcomes.csv"):
        if r["outcome"] == "secure":
            rows.append({"study_id": r["study_id"], "outcome": "secure", "kind": "binary",
                         "label": studies[r["study_id"]]["label"], "intervention": studies[r["study_id"]]["intervention"],
                         **{f: int(r[f]) for f in ("events_int", "n_int", "events_ctl", "n_ctl")}})
    spec = AnalysisSpec("secure:primary", "secure", "Secure attachment", "binary", "OR", "primary", "REML", "knha",
                        True, 95.0)
    (overall,) = run_analysis(spec, rows)
    overall["extras"] = funnel_extras(spec, overall)
    subgroups = run_analysis(AnalysisSpec(**{**spec.to_dict(), "analysis_id": "secure:primary:by-intervention",
                                            "subgroup_var": "intervention"}), rows)
    return overall, subgroups


def _check(paths) -> str:
    png, svg = paths["png"], paths["svg"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    return svg.read_text(encoding="utf-8")


def test_forest_plot_with_subgroup_panels(tmp_path, secure_results):
    overall, subgroups = secure_results
    svg = _check(forest_plot(overall, tmp_path / "forest", subgroups=subgroups, title="Secure (synthetic)"))
    for text in ("Trial A 2003 (synthetic)", "video_feedback", "Subtotal (k = 6", "Overall (k = 12)",
                 "95% prediction interval", "OR [95% CI]", f"{math.exp(overall['estimate']):.2f} [",
                 "Test for subgroup differences", "Knapp-Hartung", "27/40"):
        assert text in svg, text


def test_forest_plot_without_subgroups_and_funnel_and_history(tmp_path, secure_results):
    overall, _ = secure_results
    svg = _check(forest_plot(overall, tmp_path / "f"))
    assert "Subtotal" not in svg and "Overall (k = 12)" in svg
    svg = _check(funnel_plot(overall, tmp_path / "funnel", extras=overall["extras"]))
    assert "trim-and-fill: 4 imputed" in svg and "Egger line" in svg
    hist = [{"evidence_version": 1, "created_at": "2026-01-01", "k": 11, "estimate": 0.4, "ci_lb": 0.1, "ci_ub": 0.7,
             "pi_lb": None, "pi_ub": None},
            {"evidence_version": 2, "created_at": "2026-02-01", **{f: overall[f] for f in
                                                                     ("k", "estimate", "ci_lb", "ci_ub", "pi_lb", "pi_ub")}}]
    svg = _check(cumulative_plot(hist, tmp_path / "hist", measure="OR"))
    assert "v2" in svg and "k = 12" in svg


def _weights_shown(svg: str) -> list[float]:
    import re

    return [float(w) for w in re.findall(r">(\d+\.\d)%<", svg)]


def test_subgroup_panels_show_each_studys_weight_in_the_overall_analysis(tmp_path, secure_results):
    """RevMan's convention: weights in a subgroup forest plot are shares of the whole analysis, so the
    column adds up to the Overall row's 100% (each panel's own weights used to add up to 100% each)."""
    overall, subgroups = secure_results
    svg = _check(forest_plot(overall, tmp_path / "forest", subgroups=subgroups))
    overall_w = sorted(round(s["weight"], 1) for s in overall["studies"])
    shown = _weights_shown(svg)
    subtotals = [round(sum(s["weight"] for s in overall["studies"]
                           if s["study_id"] in {t["study_id"] for t in p["studies"]}), 1) for p in subgroups]
    assert sorted(shown) == sorted(overall_w + subtotals)
    assert sum(overall_w) == pytest.approx(100, abs=0.6)  # shown rounded to 0.1 each


def test_intervals_wider_than_the_axis_say_so(tmp_path, secure_results):
    """A prediction interval (or a pooled CI) clipped at the axis edge must not look as if it ended
    there: its printed bounds keep their digits and the clipped end gets an arrow, not an end cap."""
    overall, _ = secure_results
    wide = dict(overall, pi_lb=math.log(0.0015), pi_ub=math.log(2410.0), ci_ub=math.log(77.9))
    svg = _check(forest_plot(wide, tmp_path / "wide"))
    assert "[0.0015, 2.41e+03]" in svg and "77.90]" in svg
    from living_review.reports import plots

    assert plots._fmt(math.log(0.0015), True) == "0.0015" and plots._fmt(math.log(0.25), True) == "0.25"


def test_history_plot_labels_the_prediction_interval_and_ticks_the_whole_axis(tmp_path):
    hist = [{"evidence_version": 1, "created_at": "2026-01-01", "k": 1, "estimate": 1.0, "ci_lb": -0.5, "ci_ub": 2.5,
             "pi_lb": None, "pi_ub": None},
            {"evidence_version": 2, "created_at": "2026-02-01", "k": 3, "estimate": 1.2, "ci_lb": 0.1, "ci_ub": 2.3,
             "pi_lb": math.log(0.002), "pi_ub": math.log(2400.0)}]
    svg = _check(cumulative_plot(hist, tmp_path / "hist", measure="OR"))
    assert "95% PI" in svg and "95% CI" in svg
    assert "1000" in svg and "0.01" in svg  # ticks reach both ends of the drawn intervals
