-- kurir schema 8 is SQLite only (each device's mailbox sequence counter moves to a narrow
-- table of its own): PostgreSQL keeps its schema. This migration keeps the two engines'
-- numbers in step.
SELECT 1;
