"""Screening benchmark: our active-learning ranker next to ASReview elas_u4, same datasets, same seeds.

One command, prints a table and saves it to benchmarks/RESULTS-screening.md:

    .venv/bin/python benchmarks/screening.py                  # all datasets, seeds 1-3, ASReview on all
    .venv/bin/python benchmarks/screening.py --datasets Cohen_2006_ADHD,Nagtegaal_2019 --seeds 1
    .venv/bin/python benchmarks/screening.py --asreview-datasets none --skip-scoring   # ours only, quick

ASReview 3.0.8 is installed by this script into benchmarks/.cache/asreview-venv and always run as a
subprocess from an empty temporary directory (it writes synergy_cache.sqlite into its CWD). Its runs
are run afresh in every benchmark run, side by side with ours (`--reuse-asreview` reuses the runs
cached per (dataset, seed, version) in benchmarks/.cache/asreview-runs/ with their wall time). Metrics (screening-notes §3): priors excluded, strict WSS@95.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA_DIR = REPO.parent / "shared" / "data" / "screening"
CACHE = REPO / "benchmarks" / ".cache"
VENV = CACHE / "asreview-venv"
ASREVIEW_VERSION = "3.0.8"
RESULTS = REPO / "benchmarks" / "RESULTS-screening.md"
NOTES_MARKER = "<!-- notes: kept across runs -->"

from models.ranking.metrics import screening_metrics  # noqa: E402


# ---------------------------------------------------------------- ASReview
def ensure_asreview() -> Path:
    exe = VENV / "bin" / "asreview"
    if exe.exists():
        return exe
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", f"asreview=={ASREVIEW_VERSION}"], check=True)
    return exe


def run_asreview(dataset: Path, seed: int, fresh: bool = False) -> dict:
    """elas_u4 with 1+1 priors; returns the screened labels after the priors and the wall time."""
    out_dir = CACHE / "asreview-runs"
    out_dir.mkdir(parents=True, exist_ok=True)
    cached = out_dir / f"{dataset.stem}__elas_u4__s{seed}.json"
    if cached.exists() and not fresh:
        return json.loads(cached.read_text())
    exe = ensure_asreview()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "run.asreview"
        t0 = time.perf_counter()
        subprocess.run(
            [str(exe), "simulate", str(dataset), "--ai", "elas_u4", "--n-prior-included", "1",
             "--n-prior-excluded", "1", "--prior-seed", str(seed), "--seed", str(seed), "-o", str(project)],
            cwd=tmp, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - t0
        with zipfile.ZipFile(project) as z:
            z.extract("results.db", tmp)
        con = sqlite3.connect(Path(tmp) / "results.db")
        rows = con.execute("SELECT record_id, label, classifier FROM results ORDER BY rowid").fetchall()
        con.close()
    priors = [r for r in rows if r[2] is None]
    after = [int(r[1]) for r in rows if r[2] is not None]
    result = {"dataset": dataset.stem, "seed": seed, "version": ASREVIEW_VERSION, "wall_s": wall,
              "prior_rows": [r[0] for r in priors], "labels_after_priors": after}
    cached.write_text(json.dumps(result))
    return result


# ---------------------------------------------------------------- ours
def load_dataset(path: Path):
    import pandas as pd

    df = pd.read_csv(path, dtype={"title": str, "abstract": str}, keep_default_na=False)
    return df


def run_ours(df, seed: int, prior_idx=None) -> dict:
    from models.ranking.simulation import simulate_screening

    t0 = time.perf_counter()
    order = simulate_screening(df["title"].tolist(), df["abstract"].tolist(),
                               df["label_included"].astype(int).tolist(), seed=seed, prior_idx=prior_idx)
    wall = time.perf_counter() - t0
    labels = df["label_included"].astype(int).to_numpy()
    seq = [int(labels[i]) for i in order.order]
    return {"wall_s": wall, "labels_after_priors": seq[order.n_priors:], "n_priors": order.n_priors,
            "labels_in_order": seq}


# ---------------------------------------------------------------- recall bound validation
def recall_validation(labels_in_order, seed: int, reps: int, audit_fraction: float = 0.05, target: float = 0.95,
                      confidence: float = 0.95, check_every: int = 25) -> list[dict]:
    """Replay the pooled-audit stopping rule `reps` times (fresh random audit keys each time) on our
    simulated screening order. The order is kept fixed (audited records are simply skipped by the
    ranking), which is what the guarantee assumes: keys independent of relevance and rank."""
    import numpy as np

    from models.recall import simulate_stopping

    rng = np.random.default_rng(10_000 + seed)
    rel = np.asarray(labels_in_order, dtype=bool)
    return [simulate_stopping(rel, rng.random(len(rel)), audit_fraction, check_every, target, confidence)
            for _ in range(reps)]


def render_recall(rows, reps_per_seed, alpha=0.05) -> str:
    if not rows:
        return "Recall-bound validation: skipped.\n"
    lines = ["| dataset | runs | stopped | stopped with recall < 95% | mean recall at stop | mean share screened |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    all_runs = []
    for name, runs, n in rows:
        all_runs += runs
        st = [r for r in runs if r["stopped"]]
        bad = sum(r["stopped"] and r["recall"] < 0.95 for r in runs)
        lines.append(f"| {name} | {len(runs)} | {len(st)} | {bad} ({100 * bad / len(runs):.1f}%) | "
                     f"{fmt(mean([r['recall'] for r in st]))} | {fmt(mean([r['screened'] / n for r in st]))} |")
    bad = sum(r["stopped"] and r["recall"] < 0.95 for r in all_runs)
    return ("Recall-bound validation (models/recall.py, pooled random audit q = 0.05 raised when the ranking runs dry, "
            f"hypergeometric bound, target 95%, confidence 95%, check every 25 records; {reps_per_seed} audit draws per "
            "dataset × seed on our simulated order):\n\n" + "\n".join(lines) +
            f"\n\n- Overall: {bad} of {len(all_runs)} runs stopped with recall below 95% "
            f"(**{100 * bad / max(len(all_runs), 1):.2f}%**, nominal α = {100 * alpha:.0f}%).\n")


def metrics_for(run: dict, n: int, r: int, n_priors: int, prior_includes: int) -> dict:
    return screening_metrics(run["labels_after_priors"], n - n_priors, r - prior_includes)


# ---------------------------------------------------------------- scoring speed
def scoring_speed(n_records: int = 1_000_000) -> dict:
    """Fit on 2,000 labelled synthetic texts, then score 1,000,000 synthetic records (load test only)."""
    import numpy as np

    from models.ranking.pipeline import RankingModel

    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(20_000)])

    def texts(k):
        lens = rng.integers(20, 200, size=k)
        return [" ".join(vocab[rng.integers(0, len(vocab), size=n)]) for n in lens]

    train = texts(2000)
    y = np.zeros(2000, dtype=int)
    y[:40] = 1
    t_gen = time.perf_counter()
    big = texts(n_records)
    t_gen = time.perf_counter() - t_gen
    model = RankingModel(seed=0).fit_texts(train, [""] * len(train), y)
    t0 = time.perf_counter()
    scores = model.score_texts(big, [""] * len(big), n_jobs=os.cpu_count() or 1)
    wall = time.perf_counter() - t0
    return {"records": n_records, "seconds": wall, "generate_seconds": t_gen, "n_scores": len(scores)}


# ---------------------------------------------------------------- main
def fmt(x, nd=3):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="all", help="comma-separated stems, or 'all'")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--asreview-datasets", default="all",
                   help="datasets also run with ASReview: 'all', 'none', 'cached' (only those whose runs for "
                        "every seed are already cached) or comma-separated stems")
    p.add_argument("--reuse-asreview", action="store_true",
                   help="reuse ASReview runs cached by an earlier run (default: run ASReview afresh, in this run)")
    p.add_argument("--asreview-only", action="store_true", help="only fill the ASReview cache")
    p.add_argument("--skip-scoring", action="store_true", help="skip the 1,000,000-record scoring test")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--own-priors", action="store_true",
                   help="draw our priors with our own seed instead of reusing ASReview's priors for the same seed")
    p.add_argument("--recall-reps", type=int, default=30, help="audit draws per dataset × seed for the recall check (0 = skip)")
    args = p.parse_args(argv)

    files = sorted(DATA_DIR.glob("*.csv"), key=lambda f: f.stat().st_size)
    if not files:
        p.error(f"no labelled datasets in {DATA_DIR}: this benchmark needs ../shared/data/screening beside the repository")
    if args.datasets != "all":
        wanted = args.datasets.split(",")
        files = [f for f in files if f.stem in wanted]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.asreview_datasets == "all":
        asr = {f.stem for f in files}
    elif args.asreview_datasets == "none":
        asr = set()
    elif args.asreview_datasets == "cached":
        asr = {f.stem for f in files
               if all((CACHE / "asreview-runs" / f"{f.stem}__elas_u4__s{s}.json").exists() for s in seeds)}
    else:
        asr = set(args.asreview_datasets.split(","))

    if args.asreview_only:
        for f in files:
            if f.stem in asr:
                for s in seeds:
                    res = run_asreview(f, s, fresh=not args.reuse_asreview)
                    print(f"{f.stem} s{s}: {res['wall_s']:.1f}s", flush=True)
        return 0

    per_dataset = []
    recall_rows = []
    for f in files:
        df = load_dataset(f)
        n, r = len(df), int(df["label_included"].sum())
        lab = df["label_included"].astype(int).to_numpy()
        ours_m, asr_m = [], []
        for s in seeds:
            a = run_asreview(f, s, fresh=not args.reuse_asreview) if f.stem in asr else None
            # paired comparison: both rankers start from the same 1 include + 1 exclude
            priors = a["prior_rows"] if a is not None and not args.own_priors else None
            ours = run_ours(df, s, priors)
            pinc = sum(int(lab[i]) for i in priors) if priors else 1
            ours_m.append({**metrics_for(ours, n, r, ours["n_priors"], pinc), "wall": ours["wall_s"]})
            if args.recall_reps > 0:
                runs = recall_validation(ours["labels_in_order"], s, args.recall_reps)
                if recall_rows and recall_rows[-1][0] == f.stem:
                    recall_rows[-1][1].extend(runs)
                else:
                    recall_rows.append((f.stem, runs, n))
            if a is not None:
                apinc = sum(int(lab[i]) for i in a["prior_rows"])
                asr_m.append({**metrics_for(a, n, r, len(a["prior_rows"]), apinc), "wall": a["wall_s"]})
        entry = {"dataset": f.stem, "n": n, "r": r, "ours": ours_m, "asreview": asr_m}
        per_dataset.append(entry)
        print(summary_line(entry), flush=True)
    table = render(per_dataset, seeds, paired=not args.own_priors)
    speed = None if args.skip_scoring else scoring_speed()
    text = table + "\n" + render_speed(speed) + "\n" + render_recall(recall_rows, args.recall_reps)
    print(text)
    if not args.no_save:
        # hand-written notes below the marker survive a re-run
        notes = ""
        if RESULTS.exists() and NOTES_MARKER in RESULTS.read_text():
            notes = RESULTS.read_text().split(NOTES_MARKER, 1)[1]
        RESULTS.write_text(header(args, seeds) + text + "\n" + NOTES_MARKER + notes)
    return 0


def mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def summary_line(e) -> str:
    o = mean([m["wss95"] for m in e["ours"]])
    a = mean([m["wss95"] for m in e["asreview"]]) if e["asreview"] else None
    return f"{e['dataset']}: ours WSS@95 {fmt(o)}  ASReview {fmt(a)}"


def render(per_dataset, seeds, paired: bool = True) -> str:
    lines = ["| dataset (N / R) | ranker | WSS@95 strict | recall@10% | screened to 95% | screened to 100% | s / simulation |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    wins = 0
    compared = 0
    pair_wins = pairs = 0
    ours_w, asr_w, ours_t, asr_t = [], [], [], []
    for e in per_dataset:
        for name, ms in (("ours", e["ours"]), ("ASReview elas_u4", e["asreview"])):
            if not ms:
                continue
            ws = [m["wss95"] for m in ms]
            label = f"{e['dataset']} ({e['n']}/{e['r']})" if name == "ours" else ""
            lines.append(
                f"| {label} | {name} | {fmt(mean(ws))} [{fmt(min(ws))}–{fmt(max(ws))}] | {fmt(mean([m['recall10'] for m in ms]))} "
                f"| {fmt(mean([m['screened95'] for m in ms]), 0)} | {fmt(mean([m['screened100'] for m in ms]), 0)} "
                f"| {fmt(mean([m['wall'] for m in ms]), 1)} |")
        o = mean([m["wss95"] for m in e["ours"]])
        if e["asreview"]:
            a = mean([m["wss95"] for m in e["asreview"]])
            compared += 1
            wins += o >= a - 1e-9
            for mo, ma in zip(e["ours"], e["asreview"]):
                pairs += 1
                pair_wins += mo["wss95"] >= ma["wss95"] - 1e-9
            ours_w.append(o)
            asr_w.append(a)
            ours_t.append(mean([m["wall"] for m in e["ours"]]))
            asr_t.append(mean([m["wall"] for m in e["asreview"]]))
    all_ours = [mean([m["wss95"] for m in e["ours"]]) for e in per_dataset]
    out = "\n".join(lines) + "\n\n"
    out += f"Seeds: {', '.join(map(str, seeds))}. Datasets: {len(per_dataset)}; run with ASReview: {compared}"
    out += f" ({', '.join(e['dataset'] for e in per_dataset if e['asreview'])}).\n\n"
    if compared:
        out += (f"- On the {compared} datasets run with both: median WSS@95 ours **{statistics.median(ours_w):.3f}** vs "
                f"ASReview elas_u4 **{statistics.median(asr_w):.3f}**; ours ≥ ASReview on **{wins}/{compared}** "
                f"({100 * wins / compared:.0f}%); median s / simulation ours {statistics.median(ours_t):.1f} vs "
                f"ASReview {statistics.median(asr_t):.1f}.\n")
        same = "seed and priors" if paired else "seed; each ranker drew its own priors"
        out += f"- Runs of the same dataset and {same}: ours ≥ ASReview in **{pair_wins}/{pairs}**.\n"
    out += f"- Median WSS@95 ours over all {len(per_dataset)} datasets: {statistics.median(all_ours):.3f}.\n"
    return out


def render_speed(speed) -> str:
    if not speed:
        return "Scoring speed: skipped (--skip-scoring).\n"
    return (f"Scoring speed: {speed['records']:,} synthetic records scored in **{speed['seconds']:.1f} s** "
            f"(target < 60 s; generating the texts took {speed['generate_seconds']:.1f} s, not counted).\n")


def header(args, seeds) -> str:
    import platform

    import sklearn

    return ("# Screening benchmark: our ranker vs ASReview elas_u4\n\n"
            f"Command: `.venv/bin/python benchmarks/screening.py {' '.join(sys.argv[1:])}`  \n"
            f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, scikit-learn {sklearn.__version__}; ASReview {ASREVIEW_VERSION} "
            "(own venv, subprocess, 1+1 priors, --prior-seed S --seed S); "
            f"{'our priors drawn with our own seed' if args.own_priors else 'ours starts from the same two prior records ASReview drew for seed S (paired)'}. Metrics per screening-notes §3: "
            "priors excluded, strict WSS@95 = 0.95 − k95/N′. Mean over seeds [min–max].\n\n")


if __name__ == "__main__":
    sys.exit(main())
