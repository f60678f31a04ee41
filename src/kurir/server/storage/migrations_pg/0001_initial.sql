-- kurir schema 1 (PostgreSQL): accounts, devices, keys, mailboxes. Mirrors migrations/0001.
--
-- Sharding (Citus): every table except account_addresses is distributed by account_id, the
-- account that OWNS the row (envelopes and delivered: the recipient's account), and every
-- primary key, unique constraint and foreign key includes account_id, so all of them stay
-- enforceable per shard and the tables are co-located. account_addresses maps an address to
-- its account and is distributed by identifier (its primary key includes it); it has no
-- foreign key to accounts because the two are not co-located.

CREATE TABLE accounts (
    account_id   uuid PRIMARY KEY,
    app          text NOT NULL,
    identifier   text NOT NULL,
    identity_key bytea,
    created_at   bigint NOT NULL
);

CREATE TABLE account_addresses (
    app        text NOT NULL,
    identifier text NOT NULL,
    account_id uuid NOT NULL,
    PRIMARY KEY (app, identifier)
);

-- last_seq is the per-device mailbox counter, updated in the enqueue transaction; fillfactor
-- leaves room on each page so those frequent updates stay HOT (no index churn).
CREATE TABLE devices (
    account_id      uuid NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    device_id       integer NOT NULL,
    name            text,
    registration_id integer NOT NULL,
    salt            bytea NOT NULL,
    password_hash   bytea NOT NULL,
    created_at      bigint NOT NULL,
    last_seq        bigint NOT NULL DEFAULT 0,
    expired_count   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, device_id)
) WITH (fillfactor = 70);

CREATE TABLE signed_prekeys (
    account_id uuid NOT NULL,
    device_id  integer NOT NULL,
    key_id     bigint NOT NULL,
    public_key bytea NOT NULL,
    signature  bytea NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE TABLE pq_last_resort_prekeys (
    account_id uuid NOT NULL,
    device_id  integer NOT NULL,
    key_id     bigint NOT NULL,
    public_key bytea NOT NULL,
    signature  bytea NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE TABLE one_time_prekeys (
    account_id uuid NOT NULL,
    device_id  integer NOT NULL,
    key_id     bigint NOT NULL,
    public_key bytea NOT NULL,
    PRIMARY KEY (account_id, device_id, key_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE TABLE pq_one_time_prekeys (
    account_id uuid NOT NULL,
    device_id  integer NOT NULL,
    key_id     bigint NOT NULL,
    public_key bytea NOT NULL,
    signature  bytea NOT NULL,
    PRIMARY KEY (account_id, device_id, key_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE TABLE envelopes (
    account_id       uuid NOT NULL,
    device_id        integer NOT NULL,
    seq              bigint NOT NULL,
    dedupe_key       bytea NOT NULL,
    type             integer NOT NULL,
    source_account   uuid,
    source_device    integer,
    source_address   text,
    message_id       bytea NOT NULL,
    client_timestamp bigint NOT NULL,
    server_timestamp bigint NOT NULL,
    expires_at       bigint NOT NULL,
    body             bytea NOT NULL,
    PRIMARY KEY (account_id, device_id, seq),
    UNIQUE (account_id, device_id, dedupe_key),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE INDEX envelopes_by_expiry ON envelopes (expires_at);

CREATE TABLE delivered (
    account_id uuid NOT NULL,
    device_id  integer NOT NULL,
    dedupe_key bytea NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (account_id, device_id, dedupe_key),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, device_id) ON DELETE CASCADE
);

CREATE INDEX delivered_by_expiry ON delivered (expires_at);
