-- kurir schema 6 (SQLite only; issue 8, the message hot path): the mailbox tables become
-- WITHOUT ROWID tables clustered on their primary keys, so an envelope is one b-tree entry
-- keyed (account_id, device_id, seq) plus its dedupe and expiry index entries (was a rowid
-- table, its primary-key index, the dedupe index and the expiry index), and a delivered
-- record is one entry plus its expiry index entry.
-- The foreign keys to devices go: every insert looked its device up again, and the engine
-- already checks the device in the same transaction. Deleting a device deletes its envelopes
-- and delivered records explicitly (storage/sqlite.py, remove_device and register).
-- Data is preserved; PostgreSQL keeps its schema (migrations_pg has no 0006).

CREATE TABLE envelopes_clustered (
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
    PRIMARY KEY (account_id, device_id, seq)
) WITHOUT ROWID;

INSERT INTO envelopes_clustered
    (account_id, device_id, seq, dedupe_key, type, source_account, source_device,
     source_address, message_id, client_timestamp, server_timestamp, expires_at, body)
SELECT account_id, device_id, seq, dedupe_key, type, source_account, source_device,
       source_address, message_id, client_timestamp, server_timestamp, expires_at, body
FROM envelopes;

DROP TABLE envelopes;
ALTER TABLE envelopes_clustered RENAME TO envelopes;
CREATE UNIQUE INDEX envelopes_by_dedupe ON envelopes (account_id, device_id, dedupe_key);
CREATE INDEX envelopes_by_expiry ON envelopes (expires_at);

CREATE TABLE delivered_clustered (
    account_id TEXT NOT NULL,
    device_id  INTEGER NOT NULL,
    dedupe_key BLOB NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, device_id, dedupe_key)
) WITHOUT ROWID;

INSERT INTO delivered_clustered (account_id, device_id, dedupe_key, expires_at)
SELECT account_id, device_id, dedupe_key, expires_at FROM delivered;

DROP TABLE delivered;
ALTER TABLE delivered_clustered RENAME TO delivered;
CREATE INDEX delivered_by_expiry ON delivered (expires_at);

-- An inserted envelope advances its device's last_seq in the same statement (the enqueue is
-- then one INSERT ... SELECT per envelope); a seq already advanced past (group fan-out sets
-- last_seq before inserting) is left alone.
CREATE TRIGGER envelopes_advance_last_seq AFTER INSERT ON envelopes
BEGIN
    UPDATE devices SET last_seq = NEW.seq
    WHERE account_id = NEW.account_id AND device_id = NEW.device_id AND last_seq < NEW.seq;
END;
