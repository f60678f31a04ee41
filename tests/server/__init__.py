"""Tests of kurir.server."""
