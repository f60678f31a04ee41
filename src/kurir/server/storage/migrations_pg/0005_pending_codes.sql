-- kurir schema 5 (PostgreSQL): pending single-use codes (issue 7), shared by every node.
-- Mirrors migrations/0005_pending_codes.sql. Only SHA-256 digests are stored, never a code
-- or an address. Keyed by (purpose, subject): on Citus, distributed by subject (a redemption
-- is a single-shard statement); the owner index serves re-registration and the per-account
-- cap (a multi-shard query, rare). No foreign key to accounts (not co-located).
CREATE TABLE pending_codes (
    purpose    text NOT NULL,
    subject    bytea NOT NULL,
    code_hash  bytea NOT NULL,
    owner      uuid,
    attempts   integer NOT NULL DEFAULT 0,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (purpose, subject)
);
CREATE INDEX pending_codes_owner ON pending_codes (owner, purpose) WHERE owner IS NOT NULL;
CREATE INDEX pending_codes_expiry ON pending_codes (expires_at);
