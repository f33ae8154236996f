-- 002 ranking: versioned relevance models, the scores each produced, and the pooled recall estimates.
-- Append-only like the decision log: a new model version never rewrites an old version's scores.

CREATE SEQUENCE recall_estimate_seq START 1;

CREATE TABLE model_versions (
    model_version         VARCHAR PRIMARY KEY,              -- e.g. "rank-20261128T2300-3f2a9c1b"
    created_at            TIMESTAMP NOT NULL DEFAULT current_timestamp,
    kind                  VARCHAR NOT NULL CHECK (kind IN ('cold_start', 'trained')),
    training_fingerprint  VARCHAR NOT NULL,                 -- sha256 of the sorted (record_id, label, content_hash)
    params                JSON NOT NULL,
    library_versions      JSON NOT NULL,
    metrics               JSON NOT NULL,
    n_train               INTEGER NOT NULL,
    n_includes            INTEGER NOT NULL DEFAULT 0,
    model_path            VARCHAR                           -- model card + pickled model under settings.models_dir
);

CREATE TABLE record_scores (
    record_id      BIGINT NOT NULL,
    model_version  VARCHAR NOT NULL,
    score          DOUBLE NOT NULL,    -- queue priority: the probability, or an audit record's slot priority
    probability    DOUBLE NOT NULL,    -- the model's calibrated probability of relevance (cold start: similarity)
    rank           INTEGER NOT NULL,   -- 1 = top of the screening queue
    is_audit       BOOLEAN NOT NULL DEFAULT FALSE,   -- drawn at random for the recall estimate
    scored_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (record_id, model_version)
);

CREATE TABLE recall_estimates (
    estimate_id                   BIGINT PRIMARY KEY DEFAULT nextval('recall_estimate_seq'),
    run                           VARCHAR,            -- nightly run id or 'manual'
    model_version                 VARCHAR,
    method                        VARCHAR NOT NULL,   -- 'pooled-audit-hypergeometric'
    recall_lower_bound            DOUBLE,
    confidence                    DOUBLE NOT NULL,
    target                        DOUBLE NOT NULL,
    records_to_screen_for_target  INTEGER,
    screened                      INTEGER NOT NULL,
    unscreened                    INTEGER NOT NULL,
    found                         INTEGER NOT NULL,
    audited                       INTEGER NOT NULL,
    audit_hits                    INTEGER NOT NULL,
    audit_pending                 INTEGER NOT NULL,
    missed_upper_bound            INTEGER,
    computed_at                   TIMESTAMP NOT NULL DEFAULT current_timestamp
);
