-- kurir schema 6 is SQLite only (the mailbox tables as WITHOUT ROWID tables, issue 8):
-- PostgreSQL keeps its schema. This migration keeps the two engines' numbers in step.
SELECT 1;
