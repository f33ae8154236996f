-- 007 unreturned PMIDs: what a search found but EFetch did not return. PubMed stops serving deleted
-- or withdrawn records, and an answer can come back short. The window is committed anyway (a PMID
-- PubMed no longer serves must not block its strategy for good), so this table is what remembers
-- them: each later night asks for the strategy's pending PMIDs again (flows/search.py) until one is
-- stored ('resolved') or has been missed warehouse.records.UNRETURNED_MAX_MISSES times ('abandoned':
-- kept here, and said in that night's warnings).

CREATE TABLE unreturned_pmids (
    strategy         VARCHAR NOT NULL,
    pmid             VARCHAR NOT NULL,
    window_start     DATE,                  -- the search window(s) that found it
    window_end       DATE,
    first_run_id     VARCHAR NOT NULL,
    last_run_id      VARCHAR NOT NULL,
    misses           INTEGER NOT NULL DEFAULT 1,   -- searches or re-requests that asked and did not get it
    status           VARCHAR NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'resolved', 'abandoned')),
    first_missed_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    updated_at       TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (strategy, pmid)
);
