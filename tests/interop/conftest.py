"""Fixtures for the libsignal interop tests.

Owns: the harness process (``libsignal.Libsignal``) shared by the whole test session, and the
rule for when it cannot start: the tests are skipped with the reason printed (``pytest -ra``),
except when the environment variable ``CI`` is set, where a missing Node.js or an uninstalled
``node_modules`` fails the tests instead: CI must run them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from libsignal import HarnessFailure, Libsignal, unavailable_reason


def _unavailable(reason: str) -> None:
    message = f"libsignal interop harness unavailable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


def _start() -> Libsignal:
    reason = unavailable_reason()
    if reason is not None:
        _unavailable(reason)
    try:
        return Libsignal()
    except HarnessFailure as err:
        _unavailable(str(err))
        raise  # unreachable: _unavailable always raises


class _Holder:
    """The session's current harness; replaced if a test killed or closed it."""

    def __init__(self) -> None:
        self.harness: Libsignal | None = None

    def get(self) -> Libsignal:
        if self.harness is None or not self.harness.alive:
            if self.harness is not None:
                self.harness.close()
            self.harness = _start()
        return self.harness


@pytest.fixture(scope="session")
def _libsignal_holder() -> Iterator[_Holder]:
    holder = _Holder()
    yield holder
    if holder.harness is not None:
        holder.harness.close()


@pytest.fixture
def libsignal_process(_libsignal_holder: _Holder) -> Libsignal:
    """The session's harness process as it is (participants of earlier tests remain)."""
    return _libsignal_holder.get()


@pytest.fixture
def libsignal(libsignal_process: Libsignal) -> Libsignal:
    """The session's harness with no participants: each test starts from empty stores."""
    libsignal_process.reset()
    return libsignal_process
