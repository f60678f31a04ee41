-- kurir schema 2 (PostgreSQL): linked devices get ids that are never reused within a
-- registration. Mirrors migrations/0002.
ALTER TABLE accounts ADD COLUMN last_device_id integer NOT NULL DEFAULT 1;
