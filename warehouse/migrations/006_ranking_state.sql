-- What the last ranking run saw, so a night with no new records and no new decisions can keep the
-- stored scores instead of re-reading and re-scoring the whole warehouse (the quiet night stays cheap).
CREATE TABLE ranking_state (
    state_key   VARCHAR PRIMARY KEY,
    summary     JSON NOT NULL,
    computed_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
