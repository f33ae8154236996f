"""Feature extractor, balancer, query strategy, classifier, cold start, metrics: known values and failure modes."""

from __future__ import annotations

import numpy as np
import pytest

from models.ranking.balance import BalancedWeights
from models.ranking.classifier import RelevanceClassifier
from models.ranking.cold_start import cold_start_scores, query_terms
from models.ranking.features import RecordFields, RecordVectorizer, clean_text
from models.ranking.metrics import screened_to_recall, screening_metrics
from models.ranking.pipeline import RankingModel, training_fingerprint
from models.ranking.query import MaxWithAudit

TITLES = ["Video feedback to promote positive parenting and infant attachment: a randomised trial",
          "Attachment security after a home visiting programme for mothers: randomised controlled trial",
          "Circle of Security parenting intervention and child attachment: a trial",
          "Corrosion of steel bridges in coastal climates",
          "Fault prediction metrics for object-oriented software",
          "Soil nitrogen under winter wheat rotations",
          ""]
ABSTRACTS = ["Mothers and infants randomised; attachment security measured with the Strange Situation.",
             "Home visits improved maternal sensitivity and infant attachment security.",
             "Parents of preschool children; attachment classification; randomized trial.",
             "Chloride exposure and steel corrosion rates in bridges.",
             "Metrics of classes predict faulty modules in software.",
             "Nitrogen balance in soils after wheat.",
             ""]


def test_clean_text_unescapes_html_and_drops_non_strings():
    assert clean_text("a &lt;i&gt;x&lt;/i&gt; &amp; c &#39;d&#39;") == "a x & c 'd'"
    assert clean_text(float("nan")) == ""
    assert clean_text("  two   spaces ") == "two spaces"


def test_record_without_text_gets_zero_row_and_is_kept():
    fields = RecordFields(TITLES, ABSTRACTS)
    X = RecordVectorizer().fit_transform(fields)
    assert X.shape[0] == len(TITLES)
    assert (X.getnnz(axis=1) > 0).tolist() == [True] * 6 + [False]
    assert X[6].nnz == 0
    assert np.allclose(np.asarray(X[:6].multiply(X[:6]).sum(axis=1)).ravel(), 1.0, atol=1e-5)


def test_mesh_and_publication_types_become_their_own_tokens():
    fields = RecordFields(["a trial", "a trial"], ["", ""], mesh=[["Object Attachment"], []],
                          publication_types=[["Randomized Controlled Trial"], []])
    vec = RecordVectorizer().fit(fields)
    names = {n for _, _, v in vec.blocks_ for n in v.vocabulary_}
    assert "mesh_object_attachment" in names and "pt_randomized_controlled_trial" in names
    X = vec.transform(fields)
    assert X[0].nnz > X[1].nnz


def test_unequal_fields_rejected():
    with pytest.raises(ValueError):
        RecordFields(["a"], ["b", "c"])


def test_balanced_weights_give_includes_ratio_times_the_excludes_total():
    y = np.array([1, 0, 0, 0, 0])
    w = BalancedWeights(ratio=2.0).compute_sample_weight(y)
    assert w[y == 1].sum() == pytest.approx(2.0 * w[y == 0].sum())
    assert w.sum() == pytest.approx(len(y))
    with pytest.raises(ValueError):
        BalancedWeights(0)


def test_query_takes_highest_scores_first_and_is_deterministic():
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.3])
    chosen, audit = MaxWithAudit(0.0).select(scores, np.arange(5), 3, np.random.default_rng(0))
    assert chosen.tolist() == [1, 3, 2] and not audit.any()


def test_query_audit_fraction_one_draws_everything_at_random():
    scores = np.arange(100, dtype=float)
    chosen, audit = MaxWithAudit(1.0).select(scores, np.arange(100), 10, np.random.default_rng(1))
    assert audit.all() and len(set(chosen.tolist())) == 10
    again, _ = MaxWithAudit(1.0).select(scores, np.arange(100), 10, np.random.default_rng(1))
    assert chosen.tolist() == again.tolist()
    with pytest.raises(ValueError):
        MaxWithAudit(1.5)


def test_classifier_ranks_relevant_text_first_and_probabilities_are_probabilities():
    fields = RecordFields(TITLES, ABSTRACTS)
    X = RecordVectorizer().fit_transform(fields)
    y = np.array([1, 1, 0, 0, 0, 0, 0])
    clf = RelevanceClassifier().fit(X[[0, 1, 3, 4, 5]], y[[0, 1, 3, 4, 5]])
    d = clf.decision_function(X)
    assert d[2] > max(d[3], d[4], d[5])  # the unseen attachment trial beats unseen off-topic records
    p = clf.predict_proba(X)
    assert ((p >= 0) & (p <= 1)).all() and np.allclose(p.sum(axis=1), 1)
    with pytest.raises(ValueError):
        RelevanceClassifier().fit(X[:2], [1, 1])


def test_ranking_model_scores_no_text_records_with_the_lower_bound_prevalence():
    fields = RecordFields(TITLES, ABSTRACTS)
    m = RankingModel().fit(fields, [0, 1, 3, 4, 5], [1, 1, 0, 0, 0])
    s = m.score(fields)
    # includes found / records in the pool, not the include-rich share among the screened (2/5)
    assert s[6] == pytest.approx((2 + 1) / (len(TITLES) + 2))
    assert s[2] > s[4]
    assert m.card()["library_versions"]["scikit-learn"]


def test_fingerprint_changes_with_labels_and_record_versions_only():
    a = training_fingerprint({1: 1, 2: 0}, {1: "h1", 2: "h2"}, {"p": 1})
    assert a == training_fingerprint({2: 0, 1: 1}, {1: "h1", 2: "h2"}, {"p": 1})
    assert a != training_fingerprint({1: 1, 2: 1}, {1: "h1", 2: "h2"}, {"p": 1})
    assert a != training_fingerprint({1: 1, 2: 0}, {1: "h1", 2: "h2b"}, {"p": 1})


def test_query_terms_strip_pubmed_syntax():
    assert query_terms('("Object Attachment"[mh] OR attachment[tiab]) AND parent*[tiab]') == \
        "Object Attachment attachment parent"


def test_cold_start_prefers_records_like_the_question_and_seeds():
    fields = RecordFields(TITLES, ABSTRACTS)
    s = cold_start_scores(fields, ["parenting interventions to improve infant attachment security"], seed_idx=[2])
    assert s[2] == 1.0  # a seed study is top
    assert min(s[0], s[1]) > max(s[3], s[4], s[5])
    assert s[6] == 0.0
    flat = cold_start_scores(RecordFields(["", ""], ["", ""]), ["x"])
    assert flat.tolist() == [0.0, 0.0]


def test_metrics_known_values():
    # 10 records after priors, 4 includes at positions 1, 2, 5, 9
    seq = [1, 1, 0, 0, 1, 0, 0, 0, 1, 0]
    assert screened_to_recall(seq, 4, 0.95) == 9  # strict: 95% of 4 → all 4
    assert screened_to_recall(seq, 4, 0.5) == 2
    m = screening_metrics(seq, 10, 4)
    assert m["wss95"] == pytest.approx(0.95 - 9 / 10)
    assert m["recall10"] == pytest.approx(1 / 4)
    assert screened_to_recall([1, 0], 3, 1.0) is None


def test_fast_tfidf_equals_sklearn_transform():
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer

    from models.ranking.fast_text import FastTfidf
    from support.ranking_db import FIXTURE

    df = pd.read_csv(FIXTURE, dtype=str, keep_default_na=False)
    docs = (df["title"] + " " + df["abstract"]).tolist() + ["a b c_d x-y 3.5 Ünïcode wörds é a", "", "I/O; (p<0.05)", "x", "ab\x00cd ab"]
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_df=0.95).fit(docs[:40])
    expected, got = vec.transform(docs), FastTfidf(vec).transform(docs)
    assert expected.nnz == got.nnz and got.dtype == np.float64
    assert (expected != got).nnz == 0  # bit for bit: the simulation's orders must equal ASReview's
    stop = TfidfVectorizer(stop_words="english").fit(docs)
    assert not FastTfidf(stop).ok  # unsupported settings fall back to sklearn
    assert abs(FastTfidf(stop).transform(docs[:5]) - stop.transform(docs[:5])).max() == 0


def test_platt_calibration_is_monotone_in_the_decision_value():
    from support.ranking_db import fixture_records

    df = fixture_records()
    fields = RecordFields(df["title"].tolist(), df["abstract"].tolist())
    X = RecordVectorizer().fit_transform(fields)
    y = df["label_included"].to_numpy()
    clf = RelevanceClassifier().fit(X, y).calibrate(X, y)
    assert clf.platt_ is not None
    d, p = clf.decision_function(X), clf.predict_proba(X)[:, 1]
    order = np.argsort(d)
    assert np.all(np.diff(p[order]) >= -1e-12)
    assert 0 < p.mean() < 1


def test_uncalibrated_probabilities_are_centred_on_the_prevalence_bound():
    """One include cannot be cross-validated: the squash must sit on found/N, like the no-text score."""
    from support.ranking_db import fixture_records

    df = fixture_records()
    fields = RecordFields(df["title"].tolist(), df["abstract"].tolist())
    y = df["label_included"].to_numpy()
    train = [int(np.flatnonzero(y == 1)[0])] + np.flatnonzero(y == 0)[:9].tolist()
    m = RankingModel().fit(fields, train, y[train])
    assert not m.card()["calibrated"]
    s = m.score(fields)
    rest = np.setdiff1d(np.arange(len(y)), train)
    assert m.empty_score_ == pytest.approx(2 / (len(y) + 2))
    # the screened share (1/10) would put nearly the whole pool above the no-text records
    assert np.median(s[rest]) < 2 * m.empty_score_
    assert s[train[0]] > np.median(s[rest])
