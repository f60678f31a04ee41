"""Tests of kurir.cli."""
