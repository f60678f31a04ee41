-- kurir schema 2: linked devices get ids that are never reused within a registration.
ALTER TABLE accounts ADD COLUMN last_device_id INTEGER NOT NULL DEFAULT 1;
