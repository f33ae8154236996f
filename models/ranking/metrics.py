"""Work-saved metrics for a screening order, as in screening-notes §3 (priors excluded).

Why here: the benchmark compares our order with ASReview's on identical definitions, so both go
through the same function.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def screened_to_recall(labels_after_priors: Sequence[int], n_includes: int, recall: float) -> int | None:
    """Records screened (after the priors) until `recall` of the `n_includes` non-prior includes are found.

    `labels_after_priors` may stop early (ASReview stops at the last include); missing positions are
    treated as excludes. Returns None when the target is never reached.
    """
    if n_includes <= 0:
        return 0
    needed = math.ceil(recall * n_includes - 1e-9)
    found = 0
    for i, label in enumerate(labels_after_priors, start=1):
        found += int(label)
        if found >= needed:
            return i
    return None


def screening_metrics(labels_after_priors: Sequence[int], n_records: int, n_includes: int) -> dict:
    """WSS@95 (strict, Cohen 2006), recall@10%, screened to 95% and 100% recall.

    `n_records` and `n_includes` count the records left after removing the priors (N' and R').
    """
    k95 = screened_to_recall(labels_after_priors, n_includes, 0.95)
    k100 = screened_to_recall(labels_after_priors, n_includes, 1.0)
    n10 = int(0.1 * n_records)
    found10 = sum(int(x) for x in list(labels_after_priors)[:n10])
    return {
        "wss95": (0.95 - k95 / n_records) if k95 is not None and n_records else float("nan"),
        "recall10": found10 / n_includes if n_includes else float("nan"),
        "screened95": k95,
        "screened100": k100,
    }
