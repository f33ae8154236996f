"""The ranking job (I/O layer): read records and settled decisions, (re)train, score, audit, estimate recall.

Plain function so the Prefect task (tasks/rank.py) stays thin and `living-review rank` runs it
without Prefect. Retrains only when the training fingerprint (settled labels × record versions ×
parameters) changed; otherwise reuses the stored model to score what is new.
"""

from __future__ import annotations

import json
import pickle
from datetime import datetime, timezone
from pathlib import Path

METHOD = "pooled-audit-hypergeometric"


def _load_records(con):
    return con.execute(
        "SELECT record_id, pmid, coalesce(title, ''), coalesce(abstract, ''), coalesce(mesh, []), "
        "coalesce(publication_types, []), content_hash FROM records ORDER BY record_id").fetchall()


def _new_version(fingerprint: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return f"rank-{stamp}-{fingerprint[:8]}"


def _interleave(prob: dict[int, float], audit_keys: dict[int, float], audit_fraction: float):
    """Queue = non-audit records by probability, one pending audit record (in key order) every 1/f slots.

    Returns [(record_id, queue score, probability, rank, is_audit)].
    """
    ranked = sorted((r for r in prob if r not in audit_keys), key=lambda r: (-prob[r], r))
    audits = sorted(audit_keys, key=lambda r: audit_keys[r])
    step = max(1, round(1 / audit_fraction)) if audit_fraction > 0 else None
    out, ai, last_score = [], 0, 1.0
    for r in ranked:
        if step and ai < len(audits) and len(out) % step == step - 1:
            a = audits[ai]
            ai += 1
            out.append((a, max(prob[a], last_score), prob[a], len(out) + 1, True))
        out.append((r, prob[r], prob[r], len(out) + 1, False))
        last_score = prob[r]
    for a in audits[ai:]:
        out.append((a, max(prob[a], last_score), prob[a], len(out) + 1, True))
    return out


def run_ranking(db_path=None, config=None, models_dir=None, run: str | None = None, force: bool = False,
                top_n: int = 5) -> dict:
    """Retrain if needed, score every unscreened record, store scores + recall estimate; return a summary."""
    import numpy as np

    from living_review.config import load_review
    from living_review.settings import get_settings
    from models.ranking.cold_start import cold_start_scores, query_terms
    from models.ranking.features import RecordFields
    from models.ranking.pipeline import DEFAULT_PARAMS, RankingModel, training_fingerprint
    from models.recall import audit_key, estimate_recall
    from warehouse import ranking as wr
    from warehouse.db import migrate, transaction
    from warehouse.screening import settled_decisions

    settings = get_settings()
    db_path = Path(db_path or settings.db_path)
    config = config or load_review()
    models_dir = Path(models_dir or settings.models_dir)
    rc = config.ranking
    migrate(db_path)

    settings_key = json.dumps({"ranking": rc.model_dump(), "params": DEFAULT_PARAMS, "question": config.question.text(),
                               "queries": [st.query for st in config.strategies],
                               "reviewers_per_record": config.screening.reviewers_per_record}, sort_keys=True, default=str)
    with transaction(db_path) as con:
        state_key = wr.input_state(con, settings_key)
        kept = None if force else wr.summary_for_state(con, state_key)
    if kept is not None:
        return {**kept, "retrained": False, "unchanged": True,
                "message": "no new records or decisions since the last ranking: scores kept"}

    with transaction(db_path) as con:
        recs = _load_records(con)
        settled = settled_decisions(con, stage="title_abstract",
                                    reviewers_per_record=config.screening.reviewers_per_record)
        previous_fp = wr.latest_fingerprint(con)
        previous_version = wr.latest_model_version(con)
        previous_info = wr.model_version_info(con, previous_version) if previous_version else None

    if not recs:
        return {"model_version": None, "kind": "none", "retrained": False, "n_train": 0, "n_includes": 0,
                "scored": 0, "audit_pending": 0, "top": [], "message": "no records in the warehouse yet",
                "recall_estimate": {"recall_lower_bound": None, "confidence": rc.confidence, "target": rc.recall_target,
                                    "records_to_screen_for_target": 0, "screened": 0, "unscreened": 0, "found": 0,
                                    "audited": 0, "audit_hits": 0, "audit_pending": 0}}
    ids = [r[0] for r in recs]
    pos = {rid: i for i, rid in enumerate(ids)}
    labelled = {rid: int(d == "include") for rid, d in settled.items() if rid in pos}
    hashes = {r[0]: r[6] for r in recs}
    fields = RecordFields([r[2] for r in recs], [r[3] for r in recs], [list(r[4]) for r in recs],
                          [list(r[5]) for r in recs])
    n_inc = sum(labelled.values())
    trainable = 0 < n_inc < len(labelled)
    params = {"model": DEFAULT_PARAMS if trainable else "cold_start", "seed_pmids": list(rc.seed_pmids)}
    fingerprint = training_fingerprint(labelled, hashes, params)
    unscreened = [rid for rid in ids if rid not in labelled]

    pmid_pos = {r[1]: i for i, r in enumerate(recs)}
    seed_idx = [pmid_pos[p] for p in rc.seed_pmids if p in pmid_pos]

    def cold_start():
        """Before any usable decision: similarity to the review question, search terms and seed studies."""
        refs = [config.question.text()] + [query_terms(s.query) for s in config.strategies]
        return cold_start_scores(fields, refs, seed_idx)

    model = None
    retrained = force or fingerprint != previous_fp or previous_info is None
    if not retrained and previous_info and previous_info["kind"] == "trained":
        try:
            model = pickle.loads(Path(previous_info["model_path"]).read_bytes())
        except (OSError, TypeError, pickle.UnpicklingError, AttributeError):
            retrained = True  # the model file is gone or unreadable: train again
    version = _new_version(fingerprint) if retrained else previous_version
    metrics: dict = {"n_records": len(ids), "n_unscreened": len(unscreened)}
    kind = "trained" if trainable else "cold_start"
    model_path = None

    if trainable:
        if model is None:
            train_idx = [pos[r] for r in labelled]
            model = RankingModel(seed=0, params=DEFAULT_PARAMS).fit(fields, train_idx, [labelled[r] for r in labelled])
        probs = model.score(fields)
        card = model.card()
        metrics.update({"calibrated": card["calibrated"], "empty_score": card["empty_score"],
                        "n_features": card["n_features"]})
        library_versions = card["library_versions"]
    else:
        probs = cold_start()
        metrics["seed_studies_found"] = len(seed_idx)
        import platform

        import sklearn
        library_versions = {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                            "python": platform.python_version()}
        card = {"params": params, "library_versions": library_versions}

    if retrained:
        models_dir.mkdir(parents=True, exist_ok=True)
        card_path = models_dir / f"{version}.json"
        card_path.write_text(json.dumps({"model_version": version, "kind": kind, "training_fingerprint": fingerprint,
                                         "created_at": datetime.now(timezone.utc).isoformat(), **card,
                                         "metrics": metrics}, indent=2, default=str))
        if model is not None:
            model_path = str(models_dir / f"{version}.pkl")
            Path(model_path).write_bytes(pickle.dumps(model))

    audit_fraction = rc.audit_fraction
    prob_unscreened = {rid: float(probs[pos[rid]]) for rid in unscreened}
    keys = {r[0]: audit_key(r[1]) for r in recs}  # a record is in the random audit sample iff its key < fraction
    audit_pending = {rid: keys[rid] for rid in unscreened if keys[rid] < audit_fraction}
    rows = _interleave(prob_unscreened, audit_pending, audit_fraction)

    # audited records count as a random sample of what the ranking has not reached: those it has
    # passed (scored at or above the head of the queue) are left out (models/recall.py). "Passed" is
    # judged by a ranking blind to the audit's labels: the queue's model learnt them, and in-sample it
    # scores every audited include high, which would empty the sample of its hits and lift the bound.
    audited = {rid: y for rid, y in labelled.items() if keys[rid] < audit_fraction}
    audited_done = []
    if audited:
        blind = {rid: y for rid, y in labelled.items() if rid not in audited}
        if 0 < sum(blind.values()) < len(blind):
            judge = RankingModel(seed=0, params=DEFAULT_PARAMS).fit(
                fields, [pos[r] for r in blind], list(blind.values()), calibrate=False).score(fields)
        else:  # the cold start: already the queue's own scores when nothing was trainable
            judge = cold_start() if trainable else probs
        head = max((judge[pos[rid]] for rid in unscreened if rid not in audit_pending), default=float("-inf"))
        audited_done = [rid for rid in audited if judge[pos[rid]] < head]
    estimate = estimate_recall(found=n_inc, audited=len(audited_done),
                               audit_hits=sum(labelled[r] for r in audited_done), screened=len(labelled),
                               unscreened=len(unscreened), target=rc.recall_target, confidence=rc.confidence).to_dict()
    estimate["audit_pending"] = len(audit_pending)

    with transaction(db_path) as con:
        if retrained:
            wr.store_model_version(con, version, kind, fingerprint, params if not trainable else DEFAULT_PARAMS,
                                   library_versions, metrics, len(labelled), n_inc, model_path)
        wr.store_scores(con, version, rows)
        wr.store_recall_estimate(con, estimate, version, run, METHOD)
        top_ids = [r[0] for r in rows[:top_n]]
        titles = {r[0]: (r[1], r[2]) for r in con.execute(
            "SELECT record_id, pmid, title FROM records WHERE record_id IN (SELECT unnest(?))", [top_ids]).fetchall()} if top_ids else {}
    top = [{"record_id": r[0], "pmid": titles.get(r[0], (None, None))[0], "title": titles.get(r[0], (None, None))[1],
            "score": round(r[2], 4), "is_audit": r[4]} for r in rows[:top_n]]
    summary = {"model_version": version, "kind": kind, "retrained": bool(retrained), "n_train": len(labelled),
            "n_includes": n_inc, "scored": len(rows), "audit_pending": len(audit_pending), "top": top,
            "recall_estimate": {k: estimate[k] for k in ("recall_lower_bound", "confidence", "target",
                                                          "records_to_screen_for_target", "screened", "unscreened",
                                                          "found", "audited", "audit_hits", "audit_pending")}}
    with transaction(db_path) as con:
        wr.store_state(con, state_key, summary)
    return summary
