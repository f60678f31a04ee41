"""End-to-end tests of a `kurir serve` process on PostgreSQL."""
