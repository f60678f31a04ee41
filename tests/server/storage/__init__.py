"""Tests of kurir.server.storage."""
