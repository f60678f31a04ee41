-- kurir schema 7 (SQLite only; the message hot path): the mailbox tables lose their expiry
-- indexes. Every envelope insert and delete, and every delivered record, wrote an entry
-- keyed by expires_at (with the whole primary key: the tables are clustered) that only the
-- periodic sweep read (storage/sqlite.py, _expire):
-- - envelopes: the sweep already visited every queued envelope to count the expired ones
--   per device; it now scans the table once instead.
-- - delivered records: each sweep scans one slice of the table by account id, in turn, so
--   that the whole table is visited once per day (delivered_sweep keeps the place). A
--   lapsed record is ignored by every read (expires_at is compared), so a late delete
--   changes nothing but the file's size.
-- Data is preserved; PostgreSQL keeps its schema (migrations_pg/0007 changes nothing).

DROP INDEX envelopes_by_expiry;
DROP INDEX delivered_by_expiry;

CREATE TABLE delivered_sweep (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    next_slice  INTEGER NOT NULL,
    swept_until BIGINT NOT NULL
);
INSERT INTO delivered_sweep (id, next_slice, swept_until) VALUES (0, 0, 0);
