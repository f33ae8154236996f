-- 003 evidence: included studies, their outcome data, and every pooled result ever computed.
-- Nothing here is overwritten: a correction appends a new outcome entry that supersedes the old one,
-- a study edit bumps its version (the old version is kept in study_versions), and a pooling refresh
-- adds a new evidence version with its own pooled results.

CREATE TABLE IF NOT EXISTS studies (
    study_id           VARCHAR PRIMARY KEY,          -- slug such as 'bernard-2012'
    record_id          BIGINT,                       -- the PubMed record in `records`, when known
    pmid               VARCHAR,
    label              VARCHAR NOT NULL,             -- 'Bernard 2012' as shown on forest plots
    intervention       VARCHAR NOT NULL,             -- from review.toml `interventions`
    comparator         VARCHAR,
    population         VARCHAR,
    risk_group         VARCHAR,
    country            VARCHAR,
    attachment_measure VARCHAR,                      -- from review.toml `attachment_measures`
    age_months         DOUBLE,
    follow_up_months   DOUBLE,
    included           BOOLEAN NOT NULL DEFAULT TRUE, -- FALSE = taken out of the review (e.g. retracted)
    version            INTEGER NOT NULL DEFAULT 1,
    content_hash       VARCHAR NOT NULL,
    created_by         VARCHAR,
    created_at         TIMESTAMP NOT NULL DEFAULT current_timestamp,
    updated_by         VARCHAR,
    updated_at         TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Every version of every study row, including the first (append-only).
CREATE TABLE IF NOT EXISTS study_versions (
    study_id     VARCHAR NOT NULL,
    version      INTEGER NOT NULL,
    data         JSON NOT NULL,
    content_hash VARCHAR NOT NULL,
    changed_by   VARCHAR,
    changed_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (study_id, version)
);

CREATE SEQUENCE IF NOT EXISTS outcome_entry_seq START 1;

-- Append-only outcome entries. The current data of (study_id, outcome) is its latest entry, unless
-- that entry is a retraction (retracted = TRUE), in which case the pair has no current data.
CREATE TABLE IF NOT EXISTS outcome_data (
    entry_id     BIGINT PRIMARY KEY DEFAULT nextval('outcome_entry_seq'),
    study_id     VARCHAR NOT NULL,
    outcome      VARCHAR NOT NULL,                   -- review.toml [[outcomes]].name
    kind         VARCHAR NOT NULL CHECK (kind IN ('binary', 'continuous')),
    events_int   INTEGER,
    n_int        INTEGER,
    events_ctl   INTEGER,
    n_ctl        INTEGER,
    mean_int     DOUBLE,
    sd_int       DOUBLE,
    mean_ctl     DOUBLE,
    sd_ctl       DOUBLE,
    retracted    BOOLEAN NOT NULL DEFAULT FALSE,
    supersedes   BIGINT,                             -- entry_id this one corrects or retracts
    content_hash VARCHAR NOT NULL,
    entered_by   VARCHAR,
    entered_at   TIMESTAMP NOT NULL DEFAULT current_timestamp,
    source       VARCHAR,                            -- 'import:FILE.csv', 'web', ...
    note         VARCHAR
);
CREATE INDEX IF NOT EXISTS outcome_data_study_outcome ON outcome_data (study_id, outcome);

-- One row per refresh that found changed evidence.
CREATE TABLE IF NOT EXISTS evidence_versions (
    version     INTEGER PRIMARY KEY,
    fingerprint VARCHAR NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    trigger     VARCHAR,                              -- 'nightly', 'manual', 'web', ...
    diff        JSON,                                 -- studies added / removed / corrected
    evidence    JSON,                                 -- per study x outcome content hashes (for the next diff)
    plan        JSON,                                 -- the analyses declared in review.toml at the time
    n_studies   INTEGER,
    n_entries   INTEGER,
    conclusions_changed INTEGER
);

CREATE TABLE IF NOT EXISTS pooled_results (
    evidence_version INTEGER NOT NULL,
    analysis_id      VARCHAR NOT NULL,                -- 'secure:primary', 'secure:DL', 'secure:MH', 'secure:primary:by-intervention'
    outcome          VARCHAR NOT NULL,
    analysis         VARCHAR NOT NULL,                -- 'primary' or the sensitivity analysis name
    subgroup_var     VARCHAR,                         -- 'intervention' for subgroup rows
    subgroup         VARCHAR NOT NULL DEFAULT '',     -- level of subgroup_var; '' = all studies
    measure          VARCHAR NOT NULL,
    method           VARCHAR NOT NULL,
    test             VARCHAR,
    level            DOUBLE,
    k                INTEGER NOT NULL,
    estimate         DOUBLE,
    se               DOUBLE,
    stat             DOUBLE,                          -- z or t
    df               DOUBLE,
    ci_lb            DOUBLE,
    ci_ub            DOUBLE,
    pi_lb            DOUBLE,
    pi_ub            DOUBLE,
    pval             DOUBLE,
    tau2             DOUBLE,
    tau2_se          DOUBLE,
    I2               DOUBLE,
    H2               DOUBLE,
    Q                DOUBLE,
    Q_df             INTEGER,
    Qp               DOUBLE,
    q_between        DOUBLE,
    q_between_df     INTEGER,
    q_between_p      DOUBLE,
    exp_estimate     DOUBLE,                          -- ratio measures: back-transformed (OR, RR)
    exp_ci_lb        DOUBLE,
    exp_ci_ub        DOUBLE,
    exp_pi_lb        DOUBLE,
    exp_pi_ub        DOUBLE,
    converged        BOOLEAN,
    note             VARCHAR,                         -- degenerate cases said plainly (k = 1, tau2 at 0, ...)
    conclusion_changed BOOLEAN NOT NULL DEFAULT FALSE,
    change_reasons   JSON,
    studies          JSON,                            -- per-study rows: id, label, yi, vi, weight
    extras           JSON,                            -- Egger test, trim-and-fill
    forest_plot      VARCHAR,                         -- paths relative to reports_dir
    funnel_plot      VARCHAR,
    cumulative_plot  VARCHAR,
    computed_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (evidence_version, analysis_id, subgroup)
);
