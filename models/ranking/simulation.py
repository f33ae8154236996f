"""Active-learning screening simulation on a labelled dataset (the `living-review simulate` engine).

Protocol (issue #4): K random includes and K random excludes chosen with the seed are screened
first; then repeat — train on the labels revealed so far, screen the next record, reveal its label.
A label is read only when its record is screened. When every include has been found the remaining
records follow in the last model's ranked order.

The model is ASReview's elas_u4 (TF-IDF 1–2-grams, balanced linear SVM, refit after every record,
highest score first), reproduced exactly: on title/abstract data of 20 or more records (no MeSH or
publication-type columns, which add feature blocks) and with `no_text_rule=False`, the screening order
equals ASReview 3.0.8's record for record (tests pin it). Ours adds the rule for records with no text
(`empties_due`): instead of ranking an all-zero row at the SVM's intercept, they wait until the
ranking finds includes more slowly than a record picked blind would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence

import numpy as np

from models.ranking.classifier import RelevanceClassifier
from models.ranking.features import RecordFields, RecordVectorizer
from models.ranking.query import MaxWithAudit


class SimulationError(ValueError):
    """The dataset cannot be simulated with the requested priors."""


@dataclass
class SimulationResult:
    order: list[int]            # row indices in screening order, priors first
    n_priors: int
    prior_idx: list[int]
    n_fits: int = 0
    is_audit: list[bool] = field(default_factory=list)


@dataclass
class SimulationParams:
    no_text_rule: bool = True       # False: records without text are ranked as all-zero rows (ASReview)
    empty_window: int = 50          # records without text are screened once this many screened text
                                    # records in a row found includes at a rate ≤ the lower-bound prevalence
    audit_fraction: float = 0.0     # random audit share of each query (0 in benchmarks, like ASReview)
    # tried and dropped (benchmarks/RESULTS-screening.md): similarity-to-includes blend, batched refits,
    # pseudo-negatives, naive Bayes in dry spells, LSA features, random exploration of a dry tail
    vectorizer: dict = field(default_factory=dict)
    classifier: dict = field(default_factory=dict)


def choose_priors(labels: np.ndarray, n_included: int, n_excluded: int, seed: int) -> list[int]:
    inc = np.flatnonzero(labels == 1)
    exc = np.flatnonzero(labels == 0)
    if n_included < 0 or n_excluded < 0:
        raise SimulationError("prior counts must be ≥ 0")
    if len(inc) < n_included:
        raise SimulationError(f"dataset has {len(inc)} includes, fewer than --prior-included {n_included}")
    if len(exc) < n_excluded:
        raise SimulationError(f"dataset has {len(exc)} excludes, fewer than --prior-excluded {n_excluded}")
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.choice(inc, n_included, replace=False)] + \
           [int(i) for i in rng.choice(exc, n_excluded, replace=False)]


def simulate_screening(titles: Sequence, abstracts: Sequence, labels: Sequence[int], seed: int = 0,
                       prior_included: int = 1, prior_excluded: int = 1, mesh: Sequence | None = None,
                       publication_types: Sequence | None = None,
                       params: SimulationParams | None = None,
                       prior_idx: Sequence[int] | None = None) -> SimulationResult:
    """Screening order for a labelled dataset; `prior_idx` fixes the priors instead of drawing them."""
    params = params or SimulationParams()
    truth = np.asarray(labels).astype(int)  # the oracle: only read for records already screened
    n = len(truth)
    if set(np.unique(truth).tolist()) - {0, 1}:
        raise SimulationError("label_included must be 0 or 1")
    priors = list(prior_idx) if prior_idx is not None else choose_priors(truth, prior_included, prior_excluded, seed)
    if len(set(priors)) != len(priors) or any(not 0 <= i < n for i in priors):
        raise SimulationError("prior records must be distinct rows of the dataset")
    rng = np.random.default_rng(seed + 1_000_003)
    # liblinear draws its seed from this stream once per fit, as ASReview's from np.random.seed(seed)
    svm_random = np.random.RandomState(seed)
    fields = RecordFields(titles, abstracts, mesh, publication_types)
    X = RecordVectorizer(**params.vectorizer).fit_transform(fields)
    no_text = X.getnnz(axis=1) == 0  # nothing for the model to score
    query = MaxWithAudit(params.audit_fraction)

    screened = np.zeros(n, dtype=bool)
    order: list[int] = list(priors)
    audit_flags: list[bool] = [False] * len(priors)
    screened[priors] = True
    revealed = {i: int(truth[i]) for i in priors}
    total_includes = int(truth.sum())
    found = sum(revealed.values())
    n_fits = 0
    scores = np.zeros(n)

    def screen(i: int, audit: bool) -> None:
        """Screen one record: only now is its label revealed."""
        nonlocal found
        screened[i] = True
        order.append(i)
        audit_flags.append(audit)
        revealed[i] = int(truth[i])
        found += revealed[i]

    # without both classes there is nothing to learn: a random order until there is
    while not screened.all():
        if found >= total_includes and n_fits:
            break  # every include found: the rest follows in ranked order
        held_back = no_text & ~screened if params.no_text_rule else np.zeros(n, dtype=bool)
        # the rule weighs the ranking's yield: before the first fit there is no ranking to weigh
        if held_back.any() and n_fits and empties_due(order, revealed, no_text, screened, found, n, params.empty_window):
            for i in np.flatnonzero(held_back).tolist():
                screen(i, False)
            continue
        candidates = np.flatnonzero(~screened)  # audit picks come from all of them, held-back ones too
        ys = np.array([revealed[i] for i in order])
        if 0 < ys.sum() < len(ys) and X.shape[1]:  # no vocabulary at all: nothing to fit, stay random
            clf = RelevanceClassifier(random_state=svm_random, **params.classifier).fit(X[order], ys)
            scores = clf.decision_function(X)
            n_fits += 1
        else:
            scores = rng.random(n)
        chosen, is_audit = query.select(np.where(held_back, -np.inf, scores), candidates, 1, rng)
        for i, a in zip(chosen.tolist(), is_audit.tolist()):
            screen(i, a)
    rest = np.flatnonzero(~screened)
    if len(rest):
        rest = rest[np.argsort(-scores[rest], kind="stable")]
        order.extend(int(i) for i in rest)
        audit_flags.extend([False] * len(rest))
    return SimulationResult(order=order, n_priors=len(priors), prior_idx=list(priors), n_fits=n_fits,
                            is_audit=audit_flags)


def empties_due(order, revealed, no_text, screened, found, n, window) -> bool:
    """True when unscreened no-text records are now likelier includes than the ranked head.

    A record without text has no features, so its defined probability is the prevalence. We use
    its lower bound found/N and compare it with the include rate over the last `window` screened
    text records: once the ranking yields less than that, the no-text records go next.
    """
    if not (no_text & ~screened).any():
        return False
    recent = [i for i in order[-(window * 2):] if not no_text[i]][-window:]
    if len(recent) < window:
        return False
    return sum(revealed[i] for i in recent) / window <= found / n
