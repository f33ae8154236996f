"""Publication-style plots of pooled results: forest (with subgroup panels), funnel, living history.

Inputs are the result dicts that `models.living.run_analysis` returns (and `pooled_results` stores):
estimates on the analysis scale (log for ratio measures, which are drawn on a log axis with
back-transformed tick labels). Every function writes `<stem>.png` and `<stem>.svg` and returns
both paths. matplotlib is imported inside functions (Agg backend) to keep the CLI start fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

RATIO = {"OR": "Odds ratio", "RR": "Risk ratio", "PETO": "Peto odds ratio"}
MEASURE_NAMES = {"OR": "Odds ratio", "RR": "Risk ratio", "RD": "Risk difference", "SMD": "Standardised mean difference",
                 "MD": "Mean difference", "PETO": "Peto odds ratio"}
METHOD_NAMES = {"REML": "REML", "DL": "DerSimonian-Laird", "MH": "Mantel-Haenszel", "EE": "equal effects",
                "ML": "ML", "PM": "Paule-Mandel"}
TEST_NAMES = {"knha": "Knapp-Hartung", "z": "Wald z"}
INK = "#1a1a1a"
ACCENT = "#1f4e79"
SUB = "#7a7a7a"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, stem: Path, tight: bool = True) -> dict[str, Path]:
    """PNG (150 dpi) and SVG (text kept as text). `tight=False` for figures laid out by hand (faster)."""
    bbox = "tight" if tight else None
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    fig.savefig(png, dpi=150, bbox_inches=bbox, facecolor="white")
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):  # real text in SVG: smaller, selectable
        fig.savefig(svg, bbox_inches=bbox, facecolor="white")
    _plt().close(fig)
    return {"png": png, "svg": svg}


def _fmt(v: float | None, ratio: bool, digits: int = 2) -> str:
    if v is None or not math.isfinite(v):
        return "NA"
    if ratio:
        e = math.exp(v) if v < 700 else float("inf")
        if e < 10 ** -digits:  # 0.0015 would print as 0.00
            return f"{e:.2g}"
        return f"{e:.{digits}f}" if e < 1000 else f"{e:.3g}"
    return f"{v:.{digits}f}"


def _est_ci(est, lb, ub, ratio: bool) -> str:
    return f"{_fmt(est, ratio)} [{_fmt(lb, ratio)}, {_fmt(ub, ratio)}]"


def _pe(p: float | None) -> str:
    """'p = 0.012' or 'p < 0.001'."""
    t = _p(p)
    return f"p {t}" if t.startswith("<") else f"p = {t}"


def _p(p: float | None) -> str:
    if p is None:
        return "NA"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _arms(study: dict) -> tuple[str, str]:
    d = study.get("data") or {}
    if d.get("events_int") is not None:
        return f"{d['events_int']}/{d['n_int']}", f"{d['events_ctl']}/{d['n_ctl']}"
    if d.get("mean_int") is not None:
        return (f"{d['mean_int']:.2f} ({d['sd_int']:.2f}) {d['n_int']}",
                f"{d['mean_ctl']:.2f} ({d['sd_ctl']:.2f}) {d['n_ctl']}")
    return "", ""


def _limits(values: list[float], ratio: bool) -> tuple[float, float]:
    """x-range covering the pooled results and most study CIs; wider CIs get arrows."""
    vals = sorted(v for v in values if v is not None and math.isfinite(v))
    if not vals:
        return (-1.0, 1.0)
    lo, hi = min(vals + [0.0]), max(vals + [0.0])
    span = hi - lo or 1.0
    cap = 4.0 if ratio else max(3.0, span)
    lo, hi = max(lo - 0.05 * span, -cap), min(hi + 0.05 * span, cap)
    return lo, hi


def _ratio_ticks(ax, lo: float, hi: float, axis: str = "x") -> None:
    """Back-transformed ticks on a log-scale axis; over a wide range only the powers of ten."""
    nice = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    ticks = [math.log(t) for t in nice if lo <= math.log(t) <= hi]
    if len(ticks) > 9:
        ticks = [t for t in ticks if abs(t / math.log(10) - round(t / math.log(10))) < 1e-9]
    if len(ticks) < 3:
        ticks = sorted(set(ticks) | {0.0})
    getattr(ax, f"set_{axis}ticks")(ticks)
    getattr(ax, f"set_{axis}ticklabels")([f"{math.exp(t):g}" for t in ticks])


def _clipped_arrows(ax, y: float, lb: float, ub: float, lo: float, hi: float, color: str) -> None:
    """Arrow heads where an interval runs past the axis: it does not end there."""
    for end, edge, back in ((lb, lo, 1), (ub, hi, -1)):
        if (end < edge) if back == 1 else (end > edge):
            ax.annotate("", xy=(edge, y), xytext=(edge + back * 0.04 * (hi - lo), y),
                        arrowprops=dict(arrowstyle="->", color=color, lw=1))


def _diamond(ax, y: float, est: float, lb: float, ub: float, color: str, h: float = 0.32) -> None:
    ax.fill([lb, est, ub, est], [y, y + h, y, y - h], color=color, zorder=3, lw=0)


def forest_plot(result: dict, stem: Path, *, title: str = "", subgroups: list[dict] | None = None,
                label_int: str = "Intervention", label_ctl: str = "Control") -> dict[str, Path]:
    """Forest plot: one row per study (square sized by weight, CI line), the pooled diamond,
    the prediction interval, heterogeneity line; with `subgroups` (results per level, each with its
    own studies) one panel per level with its subtotal diamond and the test for subgroup differences."""
    plt = _plt()
    measure = result.get("measure", "")
    ratio = measure in RATIO
    panels = subgroups if subgroups else [dict(result, subgroup="")]
    # rows: (kind, payload)
    rows: list[tuple[str, Any]] = []
    for p in panels:
        if subgroups:
            rows.append(("header", p["subgroup"]))
        for s in p.get("studies") or []:
            rows.append(("study", s))
        if subgroups:
            rows.append(("subtotal", p))
            rows.append(("gap", None))
    rows.append(("overall", result))
    if result.get("pi_lb") is not None:
        rows.append(("pi", result))
    n = len(rows)
    z = 1.959963984540054
    xs: list[float] = []
    for p in panels:
        for s in p.get("studies") or []:
            se = math.sqrt(s["vi"])
            xs += [s["yi"] - z * se, s["yi"] + z * se]
        xs += [p.get("ci_lb"), p.get("ci_ub")]
    xs += [result.get("ci_lb"), result.get("ci_ub"), result.get("pi_lb"), result.get("pi_ub")]
    lo, hi = _limits([x for x in xs if x is not None], ratio)

    top_in, bottom_in, row_in = 0.75, 1.45, 0.27
    height = top_in + bottom_in + row_in * (n + 1.8)
    width, ax_left, ax_width = 11.8, 5.9, 3.4  # inches; text columns placed in inches below
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes([ax_left / width, bottom_in / height, ax_width / width, 1 - (top_in + bottom_in) / height])
    ax.set_ylim(n - 0.5, -1.6)
    ax.set_xlim(lo, hi)
    tr = ax.get_yaxis_transform()  # x in axes coords, y in data
    col_x = {name: (inch - ax_left) / ax_width
             for name, inch in {"study": 0.15, "int": 3.8, "ctl": 4.95, "w": 9.8, "est": 10.85}.items()}
    ax.text(col_x["study"], -1.0, "Study", transform=tr, fontweight="bold", va="center", fontsize=9)
    first_study = next((s for p in panels for s in (p.get("studies") or [])), {})
    arm_units = "mean (SD) N" if (first_study.get("data") or {}).get("mean_int") is not None else "events / N"
    for key in ("int", "ctl"):
        ax.text(col_x[key], -0.5, arm_units, transform=tr, va="center", ha="center", fontsize=7.5, color=SUB)
    ax.text(col_x["int"], -1.0, label_int, transform=tr, fontweight="bold", va="center", ha="center", fontsize=9)
    ax.text(col_x["ctl"], -1.0, label_ctl, transform=tr, fontweight="bold", va="center", ha="center", fontsize=9)
    ax.text(col_x["w"], -1.0, "Weight", transform=tr, fontweight="bold", va="center", ha="center", fontsize=9)
    ax.text(col_x["est"], -1.0, f"{measure} [95% CI]" if result.get("level", 95) == 95 else f"{measure} [CI]",
            transform=tr, fontweight="bold", va="center", ha="center", fontsize=9)
    # With subgroup panels a study's weight is its share of the whole analysis (RevMan's convention:
    # the column adds up to the Overall row's 100%); each panel's own weights would add up to 100% each.
    overall_w = {s["study_id"]: s.get("weight") for s in (result.get("studies") or [])} if subgroups else {}

    def weight_of(study: dict):
        return overall_w.get(study["study_id"], study.get("weight")) if subgroups else study.get("weight")

    weights = [weight_of(s) or 0 for p in panels for s in (p.get("studies") or [])]
    wmax = max(weights) if weights and max(weights) > 0 else 1.0
    for y, (kind, item) in enumerate(rows):
        if kind == "header":
            ax.text(col_x["study"], y, str(item), transform=tr, fontweight="bold", fontstyle="italic",
                    va="center", fontsize=9, color=ACCENT)
        elif kind == "study":
            se = math.sqrt(item["vi"])
            lb, ub = item["yi"] - z * se, item["yi"] + z * se
            ax.plot([max(lb, lo), min(ub, hi)], [y, y], color=INK, lw=1, zorder=2)
            _clipped_arrows(ax, y, lb, ub, lo, hi, INK)
            w = weight_of(item) or 0
            size = 4 + 10 * math.sqrt(w / wmax) if w else 4
            if lo <= item["yi"] <= hi:
                ax.plot(item["yi"], y, marker="s", ms=size, color=ACCENT, mec=ACCENT, zorder=3)
            ax.text(col_x["study"], y, item.get("label") or item["study_id"], transform=tr, va="center", fontsize=9)
            a, b = _arms(item)
            ax.text(col_x["int"], y, a, transform=tr, va="center", ha="center", fontsize=8.5)
            ax.text(col_x["ctl"], y, b, transform=tr, va="center", ha="center", fontsize=8.5)
            ax.text(col_x["w"], y, f"{w:.1f}%" if weight_of(item) is not None else "", transform=tr, va="center",
                    ha="center", fontsize=8.5)
            ax.text(col_x["est"], y, _est_ci(item["yi"], lb, ub, ratio), transform=tr, va="center", ha="center",
                    fontsize=8.5)
        elif kind in ("subtotal", "overall"):
            est, lb, ub = item.get("estimate"), item.get("ci_lb"), item.get("ci_ub")
            bold = kind == "overall"
            k = item.get("k")
            if kind == "subtotal":
                het = f"I² = {item['I2']:.0f}%" if item.get("I2") is not None and (k or 0) > 1 else ""
                text = f"Subtotal (k = {k}{', ' + het if het else ''})"
            else:
                text = f"Overall (k = {k})"
            ax.text(col_x["study"], y, text, transform=tr, va="center", fontsize=9,
                    fontweight="bold" if bold else "normal")
            if est is not None and lb is not None and ub is not None:
                _diamond(ax, y, est, max(lb, lo), min(ub, hi), ACCENT if bold else SUB)
                _clipped_arrows(ax, y, lb, ub, lo, hi, ACCENT if bold else SUB)
                ax.text(col_x["est"], y, _est_ci(est, lb, ub, ratio), transform=tr, va="center", ha="center",
                        fontsize=8.5, fontweight="bold" if bold else "normal")
                share = sum(weight_of(s) or 0 for s in item.get("studies") or []) if not bold else 100.0
                ax.text(col_x["w"], y, "100%" if bold else f"{share:.1f}%" if overall_w else "", transform=tr,
                        va="center", ha="center", fontsize=8.5)
        elif kind == "pi":
            lb, ub = item["pi_lb"], item["pi_ub"]
            ax.plot([max(lb, lo), min(ub, hi)], [y, y], color=ACCENT, lw=2.5, solid_capstyle="butt")
            for end, edge, inside in ((lb, lo, lb >= lo), (ub, hi, ub <= hi)):
                if inside:  # an end cap only where the interval really ends
                    ax.plot([end] * 2, [y - 0.18, y + 0.18], color=ACCENT, lw=1.5)
            _clipped_arrows(ax, y, lb, ub, lo, hi, ACCENT)
            ax.text(col_x["study"], y, "95% prediction interval" if item.get("level", 95) == 95 else "Prediction interval",
                    transform=tr, va="center", fontsize=9, fontstyle="italic")
            ax.text(col_x["est"], y, f"[{_fmt(lb, ratio)}, {_fmt(ub, ratio)}]", transform=tr, va="center",
                    ha="center", fontsize=8.5, fontstyle="italic")
    null = 0.0
    ax.axvline(null, color=INK, lw=0.8, zorder=1)
    if result.get("estimate") is not None:
        ax.axvline(result["estimate"], color=ACCENT, lw=0.8, ls=":", zorder=1)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_yticks([])
    if ratio:
        _ratio_ticks(ax, lo, hi)
    ax.tick_params(axis="x", labelsize=8.5)
    ax.set_xlabel(f"{MEASURE_NAMES.get(measure, measure)}{' (log scale)' if ratio else ''}", fontsize=9)
    ax.annotate("← lower in intervention", xy=(0.0, 0.0), xycoords="axes fraction", xytext=(0, -42),
                textcoords="offset points", fontsize=8, color=SUB, ha="left", va="top")
    ax.annotate("higher in intervention →", xy=(1.0, 0.0), xycoords="axes fraction", xytext=(0, -42),
                textcoords="offset points", fontsize=8, color=SUB, ha="right", va="top")
    foot = [_model_line(result)]
    if subgroups and result.get("q_between") is None and subgroups[0].get("q_between") is not None:
        sg = subgroups[0]
        foot.append(f"Test for subgroup differences (separate τ² per subgroup): Q = {sg['q_between']:.2f}, "
                    f"df = {sg['q_between_df']}, {_pe(sg['q_between_p'])}")
    if result.get("note"):
        foot.append("Note: " + result["note"])
    fig.text(0.15 / width, 0.1 / height, "\n".join(foot), fontsize=8, color=INK, va="bottom", ha="left")
    if title:
        fig.text(0.15 / width, 1 - 0.12 / height, title, fontsize=11, fontweight="bold", va="top", ha="left")
    return _save(fig, stem, tight=False)


def _model_line(r: dict) -> str:
    method = METHOD_NAMES.get(r.get("method"), r.get("method"))
    test = TEST_NAMES.get(r.get("test"), r.get("test"))
    if r.get("method") == "MH":
        het = f"Q = {r['Q']:.2f} (df = {r.get('Q_df')}), {_pe(r.get('Qp'))}; I² = {r['I2']:.0f}%" \
            if r.get("Q") is not None and r.get("I2") is not None else ""
        return f"Fixed effect, {method}. Heterogeneity: {het}"
    parts = [f"Random effects, {method} τ², {test} test"]
    if r.get("k", 0) > 1 and r.get("tau2") is not None:
        parts.append(f"Heterogeneity: τ² = {r['tau2']:.3f}, I² = {r['I2']:.0f}%, Q = {r['Q']:.2f} "
                     f"(df = {r.get('Q_df')}), {_pe(r.get('Qp'))}")
    parts.append(f"Overall effect: {_pe(r.get('pval'))}")
    return ". ".join(parts)


def funnel_plot(result: dict, stem: Path, *, title: str = "", extras: dict | None = None) -> dict[str, Path]:
    """Funnel plot (effect vs standard error, inverted), pseudo 95% limits around the pooled estimate,
    the Egger regression line, and trim-and-fill's imputed studies as open circles."""
    plt = _plt()
    extras = extras or {}
    studies = result.get("studies") or []
    measure = result.get("measure", "")
    ratio = measure in RATIO
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    yi = [s["yi"] for s in studies]
    se = [math.sqrt(s["vi"]) for s in studies]
    tf = extras.get("trimfill") or {}
    fill_y = tf.get("fill_yi") or []
    fill_se = [math.sqrt(v) for v in (tf.get("fill_vi") or [])]
    smax = max(se + fill_se + [0.1]) * 1.08
    est = result.get("estimate")
    if est is not None:
        z = 1.959963984540054
        ax.fill([est - z * smax, est, est + z * smax], [smax, 0, smax], color="#eef2f7", zorder=0)
        ax.plot([est - z * smax, est, est + z * smax], [smax, 0, smax], color=SUB, lw=0.8, ls="--")
        ax.axvline(est, color=ACCENT, lw=1, label=f"pooled {measure} {_fmt(est, ratio)}")
    ax.axvline(0.0, color=INK, lw=0.6, ls=":")
    ax.scatter(yi, se, s=36, color=ACCENT, zorder=3, label="studies")
    if fill_y:
        ax.scatter(fill_y, fill_se, s=36, facecolor="white", edgecolor=ACCENT, zorder=3,
                   label=f"trim-and-fill: {len(fill_y)} imputed")
        if tf.get("estimate") is not None:
            ax.axvline(tf["estimate"], color=ACCENT, lw=1, ls="-.",
                       label=f"adjusted {measure} {_fmt(tf['estimate'], ratio)}")
    eg = extras.get("egger") or {}
    if eg.get("intercept") is not None and eg.get("slope") is not None:
        ss = [0.0, smax]
        ax.plot([eg["intercept"] + eg["slope"] * s for s in ss], ss, color="#b03a2e", lw=1.2,
                label=f"Egger line ({_pe(eg.get('pval'))})")
    ax.set_ylim(smax, 0)
    ax.set_ylabel("Standard error")
    ax.set_xlabel(f"{MEASURE_NAMES.get(measure, measure)}{' (log scale)' if ratio else ''}")
    if ratio:
        lo, hi = ax.get_xlim()
        _ratio_ticks(ax, lo, hi)
        ax.set_xlim(lo, hi)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    note = extras.get("note")
    if len(studies) < 10:
        note = (note + "; " if note else "") + f"k = {len(studies)}: funnel asymmetry tests have low power below 10 studies"
    if note:
        fig.text(0.01, 0.0, note, fontsize=7.5, color=SUB, va="bottom")
    if title:
        ax.set_title(title, fontsize=10, loc="left", fontweight="bold")
    return _save(fig, stem)


def cumulative_plot(history: list[dict], stem: Path, *, title: str = "", measure: str = "") -> dict[str, Path]:
    """The living history: the pooled estimate (CI bars, PI whiskers) at every evidence version."""
    plt = _plt()
    ratio = measure in RATIO
    n = len(history)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.0 + 0.9 * n), 4.2))
    first_pi = next((i for i, h in enumerate(history) if h.get("pi_lb") is not None), None)
    first_ci = next((i for i, h in enumerate(history) if h.get("ci_lb") is not None), None)
    for i, h in enumerate(history):
        if h.get("pi_lb") is not None:
            ax.plot([i, i], [h["pi_lb"], h["pi_ub"]], color=ACCENT, lw=1, alpha=0.45,
                    label="95% PI" if i == first_pi else None)
        if h.get("ci_lb") is not None:
            ax.plot([i, i], [h["ci_lb"], h["ci_ub"]], color=ACCENT, lw=3, solid_capstyle="butt",
                    label="95% CI" if i == first_ci else None)
        if h.get("estimate") is not None:
            ax.plot(i, h["estimate"], marker="D", color=ACCENT, ms=7, zorder=3)
            ax.annotate(f"{_fmt(h['estimate'], ratio)}\nk = {h.get('k')}", (i, h["estimate"]), xytext=(8, 0),
                        textcoords="offset points", fontsize=7.5, va="center")
    ax.axhline(0.0, color=INK, lw=0.8)
    ax.set_xticks(range(n))
    ax.set_xticklabels([f"v{h['evidence_version']}\n{str(h.get('created_at', ''))[:10]}" for h in history],
                       fontsize=8)
    ax.set_xlim(-0.6, n - 0.4 + 0.5)
    ax.set_xlabel("Evidence version")
    ax.set_ylabel(f"{MEASURE_NAMES.get(measure, measure)}{' (log scale)' if ratio else ''}")
    if ratio:
        lo, hi = ax.get_ylim()
        _ratio_ticks(ax, lo, hi, axis="y")
        ax.set_ylim(lo, hi)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="best")
    if title:
        ax.set_title(title, fontsize=10, loc="left", fontweight="bold")
    return _save(fig, stem)
