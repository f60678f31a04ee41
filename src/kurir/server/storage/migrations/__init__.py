"""Numbered, forward-only SQL migrations: ``NNNN_name.sql``, applied in order, never edited."""
