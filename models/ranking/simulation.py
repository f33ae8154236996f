"""Active-learning screening simulation on a labelled dataset (the `living-review simulate` engine).

Protocol (issue #4): K random includes and K random excludes chosen with the seed are screened
first; then repeat — train on the labels revealed so far, screen the next record(s), reveal their
labels. A label is read only when its record is screened. The model is refitted after every record
while the training set is small and then in batches that grow with it (`batch_fraction`), which keeps
a 6,000-record simulation fast while the order barely changes. When every include has been found the
remaining records follow in the last model's ranked order.
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
    empty_window: int = 50          # records without text are screened after this many screened in a row
                                    # find includes at a rate below the lower-bound prevalence (found / N)
    every_step_until: int = 100     # refit after every record while fewer than this are screened
    batch_fraction: float = 0.02    # afterwards refit after ceil(fraction × screened) records
    audit_fraction: float = 0.0     # random audit share of each query (0 in benchmarks, like ASReview)
    knn_weight: float = 0.3         # blend in the highest cosine similarity to a known include
    # tried and dropped (no gain on 8 Cohen sets, benchmarks/RESULTS-screening.md): pseudo-negatives,
    # naive Bayes in dry spells, random exploration of a dry tail
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
    fields = RecordFields(titles, abstracts, mesh, publication_types)
    X = RecordVectorizer(**params.vectorizer).fit_transform(fields)
    no_text = ~fields.has_text()
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
        if no_text.any() and empties_due(order, revealed, no_text, screened, found, n, params.empty_window):
            for i in np.flatnonzero(no_text & ~screened).tolist():
                screen(i, False)
            continue
        candidates = np.flatnonzero(~screened & ~no_text)
        if not len(candidates):
            candidates = np.flatnonzero(~screened)
        train = [i for i in order if not no_text[i]]
        ys = np.array([revealed[i] for i in train])
        if 0 < ys.sum() < len(ys):
            scores = fit_and_score(X, train, ys, params, seed)
            n_fits += 1
            n_screened = len(order)
            batch = 1 if n_screened < params.every_step_until else int(np.ceil(params.batch_fraction * n_screened))
        else:
            scores = rng.random(n)
            batch = 1
        chosen, is_audit = query.select(scores, candidates, batch, rng)
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


def _z(v: np.ndarray) -> np.ndarray:
    sd = v.std()
    return (v - v.mean()) / sd if sd > 0 else v * 0.0


def fit_and_score(X, train, ys, params: SimulationParams, seed: int) -> np.ndarray:
    """Fit on the screened records and score every record."""
    clf = RelevanceClassifier(random_state=seed, **params.classifier)
    clf.fit(X[train], ys)
    scores = clf.decision_function(X)
    if params.knn_weight > 0:
        inc = np.asarray(train)[ys == 1]
        sims = (X @ X[inc].T).max(axis=1).toarray().ravel()
        scores = (1 - params.knn_weight) * _z(scores) + params.knn_weight * _z(sims)
    return scores
