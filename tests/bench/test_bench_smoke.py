"""Smoke test of the load generator (`kurir bench`): a short run against a real server.

This checks the tool, not the server's speed: no figure is asserted, only that messages were
accepted and delivered and that nothing failed. Benchmarks themselves never run in pytest.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kurir.bench.instructions import callgrind_available
from kurir.bench.load import LoadOptions, run_load


def test_short_run_delivers_without_errors(tmp_path: Path) -> None:
    options = LoadOptions(
        devices=4, workers=1, rates=(None,), duration_s=1.5, warmup_s=0.5, data_dir=tmp_path
    )

    [result] = run_load(options)

    assert result.devices == 4
    assert result.errors == {}
    assert result.accepted > 0
    assert result.delivered > 0
    assert result.undelivered == 0
    assert result.receipts > 0
    assert result.latency is not None
    assert result.latency.samples > 0


def test_fixed_rate_phase_offers_its_rate(tmp_path: Path) -> None:
    options = LoadOptions(
        devices=4, workers=2, rates=(50.0,), duration_s=1.0, warmup_s=0.5, data_dir=tmp_path
    )

    [result] = run_load(options)

    assert result.errors == {}
    assert result.target_rate == 50.0
    # the schedule is open-loop and exact: each worker makes every send scheduled in its 1.5 s
    assert result.sent == 2 * math.ceil(1.5 * 25)
    assert result.undelivered == 0


def test_callgrind_counts_the_server_and_its_writer_inside_the_window(tmp_path: Path) -> None:
    if not callgrind_available():
        pytest.skip("valgrind is not installed")
    options = LoadOptions(
        devices=4,
        rates=(None,),
        duration_s=2.0,
        warmup_s=0.5,
        data_dir=tmp_path / "data",
        callgrind=tmp_path,
    )

    [result] = run_load(options)

    assert result.errors == {}
    assert result.delivered > 0
    counts = result.instructions_per_message
    assert counts is not None
    assert set(counts) == {"server", "writer"}
    # a delivered message costs each process far more than nothing and far less than a
    # second of work (about 0.4 to 0.5 million instructions each, measured)
    assert all(10_000 < n < 1e9 for n in counts.values()), counts
