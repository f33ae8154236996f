from models.summary import render_run_summary


def test_summary_lists_each_strategy_with_counts_and_warnings():
    md = render_run_summary({
        "status": "completed", "source": "snapshot", "new_records": 3,
        "strategies": [
            {"strategy": "attachment-rcts", "found": 5, "fetched": 3, "new": 3, "duplicates": 0,
             "already_known": 2, "updated": 0, "warnings": ["PhraseNotFound: vipp-xyz"]},
            {"strategy": "uk-interventions", "failed": True, "error": "window 2026-11-20..2026-11-28, batch 1: truncated"},
        ],
        "ranking": {"top": [{"pmid": "1", "score": 0.9, "title": "A | B"}]},
        "pooling": {"changed": False, "message": "no outcome data entered yet: nothing is pooled"},
    })
    assert "| attachment-rcts | 5 | 3 | 3 | 2 | 0 | PhraseNotFound: vipp-xyz |" in md
    assert "failed: window 2026-11-20..2026-11-28, batch 1: truncated" in md
    assert "A \\| B" in md
    assert "no outcome data entered yet" in md
    assert "No recall estimate yet" in md


def test_recall_shown_only_with_an_audit_sample():
    base = {"status": "completed", "strategies": [], "pooling": {}}
    none = render_run_summary({**base, "ranking": {"recall_estimate": {"recall_lower_bound": 0.0, "audited": 0}}})
    assert "No recall estimate yet" in none
    some = render_run_summary({**base, "ranking": {"recall_estimate": {
        "recall_lower_bound": 0.912, "confidence": 0.95, "audited": 40, "records_to_screen_for_target": 120}}})
    assert "Recall ≥ 91.2% with 95% confidence; 120 more records" in some
