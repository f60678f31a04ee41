"""PostgreSQL migrations: ``NNNN_name.sql``, numbered exactly as the SQLite ones (same version,
same logical schema, PostgreSQL types), applied in order, forward-only, never edited."""
