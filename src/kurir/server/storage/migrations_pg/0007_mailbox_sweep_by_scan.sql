-- kurir schema 7 is SQLite only (the mailbox tables lose their expiry indexes, delivered
-- records are swept by slices): PostgreSQL keeps its schema. This migration keeps the two
-- engines' numbers in step.
SELECT 1;
