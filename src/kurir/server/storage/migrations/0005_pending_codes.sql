-- kurir schema 5: pending single-use codes (issue 7), shared by every node: verification
-- codes (looked up by a digest of the address) and device-link codes (looked up by a digest
-- of the code, owned by the account they add a device to). Only SHA-256 digests are stored,
-- never a code or an address. See kurir.server.storage.codes.
CREATE TABLE pending_codes (
    purpose    TEXT NOT NULL,
    subject    BLOB NOT NULL,
    code_hash  BLOB NOT NULL,
    owner      TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (purpose, subject)
);
CREATE INDEX pending_codes_owner ON pending_codes (owner, purpose) WHERE owner IS NOT NULL;
CREATE INDEX pending_codes_expiry ON pending_codes (expires_at);
