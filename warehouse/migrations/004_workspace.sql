-- 004 workspace: reviewer accounts for the web app.
-- Passwords are stored only as scrypt hashes ("scrypt$n$r$p$salt_hex$hash_hex", per-user salt).
-- session_epoch is part of every signed session cookie: bumping it (password change, role change,
-- deactivation) logs that reviewer out everywhere.

CREATE TABLE IF NOT EXISTS reviewers (
    name           VARCHAR PRIMARY KEY,
    role           VARCHAR NOT NULL DEFAULT 'reviewer' CHECK (role IN ('reviewer', 'lead')),
    password_hash  VARCHAR NOT NULL,
    active         BOOLEAN NOT NULL DEFAULT TRUE,
    session_epoch  INTEGER NOT NULL DEFAULT 1,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp,
    updated_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);
