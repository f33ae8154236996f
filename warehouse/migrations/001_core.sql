-- 001 core: nightly runs, search runs and committed windows, records with every content version,
-- provenance (which run and strategy found which record), merged PMIDs, audit log, screening decisions.
-- Applied once by warehouse.db.migrate; never edit after it has shipped: add 00N_*.sql instead.

CREATE SEQUENCE nightly_seq START 1;
CREATE SEQUENCE record_seq START 1;
CREATE SEQUENCE audit_seq START 1;
CREATE SEQUENCE decision_seq START 1;

-- One row per nightly flow run (or on-demand run): the parent of the search runs.
CREATE TABLE nightly_runs (
    nightly_id   BIGINT PRIMARY KEY DEFAULT nextval('nightly_seq'),
    flow_run_id  VARCHAR,
    source       VARCHAR NOT NULL,
    status       VARCHAR NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    started_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at  TIMESTAMP,
    new_records  INTEGER NOT NULL DEFAULT 0,
    summary      JSON,
    error        VARCHAR
);

-- One row per (strategy, window) search: the query as sent, counts, warnings, timings.
CREATE TABLE search_runs (
    run_id        VARCHAR PRIMARY KEY,
    nightly_id    BIGINT,
    strategy      VARCHAR NOT NULL,
    query         VARCHAR NOT NULL,
    source        VARCHAR NOT NULL,
    window_start  DATE,
    window_end    DATE,
    status        VARCHAR NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    found         INTEGER NOT NULL DEFAULT 0,
    new_records   INTEGER NOT NULL DEFAULT 0,
    duplicates    INTEGER NOT NULL DEFAULT 0,
    updated       INTEGER NOT NULL DEFAULT 0,
    warnings      JSON,
    error         VARCHAR,
    started_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at   TIMESTAMP
);

-- Windows whose every batch was committed: the next run resumes after the latest one.
CREATE TABLE search_windows (
    strategy      VARCHAR NOT NULL,
    window_start  DATE NOT NULL,
    window_end    DATE NOT NULL,
    run_id        VARCHAR NOT NULL,
    committed_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (strategy, window_start, window_end)
);

-- The current content of each record. doi_key is the normalised DOI used for merging.
CREATE TABLE records (
    record_id             BIGINT PRIMARY KEY DEFAULT nextval('record_seq'),
    pmid                  VARCHAR UNIQUE NOT NULL,
    doi                   VARCHAR,
    doi_key               VARCHAR,
    title                 VARCHAR,
    abstract              VARCHAR,
    journal               VARCHAR,
    year                  INTEGER,
    authors               VARCHAR[],
    mesh                  VARCHAR[],
    publication_types     VARCHAR[],
    language              VARCHAR,
    keywords              VARCHAR[],
    comments_corrections  JSON,
    history               JSON,
    mesh_detail           JSON,
    kind                  VARCHAR NOT NULL DEFAULT 'article',
    title_key             VARCHAR,
    content_hash          VARCHAR NOT NULL,
    version               INTEGER NOT NULL DEFAULT 1,
    first_seen_run        VARCHAR,
    last_updated_run      VARCHAR,
    created_at            TIMESTAMP NOT NULL DEFAULT current_timestamp,
    updated_at            TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Every content version of every record (version 1 included): nothing is overwritten silently.
CREATE TABLE record_versions (
    record_id     BIGINT NOT NULL,
    version       INTEGER NOT NULL,
    content_hash  VARCHAR NOT NULL,
    data          JSON NOT NULL,
    run_id        VARCHAR,
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (record_id, version)
);

-- Provenance: which search run and strategy found which record, under which PMID, matched how.
CREATE TABLE record_sources (
    record_id   BIGINT NOT NULL,
    run_id      VARCHAR NOT NULL,
    strategy    VARCHAR NOT NULL,
    pmid_seen   VARCHAR NOT NULL,
    matched_by  VARCHAR NOT NULL CHECK (matched_by IN ('new', 'pmid', 'doi', 'title')),
    found_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    UNIQUE (record_id, run_id, strategy)
);

-- Every PMID a search run saw and what the append made of it (new, updated, unchanged, merged):
-- the run's counts are aggregated from here, so re-appending a batch never double-counts.
CREATE TABLE search_hits (
    run_id     VARCHAR NOT NULL,
    pmid       VARCHAR NOT NULL,
    record_id  BIGINT NOT NULL,
    outcome    VARCHAR NOT NULL CHECK (outcome IN ('new', 'updated', 'unchanged', 'merged')),
    seen_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (run_id, pmid)
);

-- A PMID that was merged into another record (same DOI, or same normalised title + year).
CREATE TABLE record_aliases (
    pmid        VARCHAR PRIMARY KEY,
    record_id   BIGINT NOT NULL,
    matched_by  VARCHAR NOT NULL CHECK (matched_by IN ('doi', 'title')),
    run_id      VARCHAR,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- "at" is a reserved word in DuckDB: quote it in queries (SELECT "at" FROM audit_log).
CREATE TABLE audit_log (
    id         BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'),
    actor      VARCHAR NOT NULL,
    action     VARCHAR NOT NULL,
    entity     VARCHAR,
    entity_id  VARCHAR,
    detail     JSON,
    "at"       TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Append-only: a correction is a new row; 'retract' undoes a reviewer's current decision.
CREATE TABLE screening_decisions (
    decision_id    BIGINT PRIMARY KEY DEFAULT nextval('decision_seq'),
    record_id      BIGINT NOT NULL,
    reviewer       VARCHAR NOT NULL,
    stage          VARCHAR NOT NULL CHECK (stage IN ('title_abstract', 'full_text')),
    decision       VARCHAR NOT NULL CHECK (decision IN ('include', 'exclude', 'maybe', 'retract')),
    reason         VARCHAR,
    note           VARCHAR,
    model_version  VARCHAR,
    client_token   VARCHAR UNIQUE,
    is_resolution  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);
