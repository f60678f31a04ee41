"""Tests of kurir.wire."""
