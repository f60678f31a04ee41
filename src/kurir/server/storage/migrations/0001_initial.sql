-- kurir schema 1: accounts, devices, keys, mailboxes.
-- Portable SQL (SQLite and PostgreSQL); every table is keyed by account_id first.

CREATE TABLE accounts (
    account_id   TEXT PRIMARY KEY,
    app          TEXT NOT NULL,
    identifier   TEXT NOT NULL,
    identity_key BLOB,
    created_at   BIGINT NOT NULL,
    UNIQUE (app, identifier)
);

CREATE TABLE devices (
    account_id      TEXT NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    device_id       INTEGER NOT NULL,
    name            TEXT,
    registration_id INTEGER NOT NULL,
    salt            BLOB NOT NULL,
    password_hash   BLOB NOT NULL,
    created_at      BIGINT NOT NULL,
    last_seq        BIGINT NOT NULL DEFAULT 0,
    expired_count   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, device_id)
);

CREATE TABLE signed_prekeys (
    account_id TEXT NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     BIGINT NOT NULL,
    public_key BLOB NOT NULL,
    signature  BLOB NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE TABLE pq_last_resort_prekeys (
    account_id TEXT NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     BIGINT NOT NULL,
    public_key BLOB NOT NULL,
    signature  BLOB NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE TABLE one_time_prekeys (
    account_id TEXT NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     BIGINT NOT NULL,
    public_key BLOB NOT NULL,
    PRIMARY KEY (account_id, device_id, key_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE TABLE pq_one_time_prekeys (
    account_id TEXT NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     BIGINT NOT NULL,
    public_key BLOB NOT NULL,
    signature  BLOB NOT NULL,
    PRIMARY KEY (account_id, device_id, key_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE TABLE envelopes (
    account_id       TEXT NOT NULL,
    device_id        INTEGER NOT NULL,
    seq              BIGINT NOT NULL,
    dedupe_key       BLOB NOT NULL,
    type             INTEGER NOT NULL,
    source_account   TEXT,
    source_device    INTEGER,
    source_address   TEXT,
    message_id       BLOB NOT NULL,
    client_timestamp BIGINT NOT NULL,
    server_timestamp BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    body             BLOB NOT NULL,
    PRIMARY KEY (account_id, device_id, seq),
    UNIQUE (account_id, device_id, dedupe_key),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE INDEX envelopes_by_expiry ON envelopes (expires_at);

CREATE TABLE delivered (
    account_id TEXT NOT NULL,
    device_id  INTEGER NOT NULL,
    dedupe_key BLOB NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_id, dedupe_key),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE INDEX delivered_by_expiry ON delivered (expires_at);
