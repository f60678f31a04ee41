"""The session state machine with kurir participants: two parties, and three devices.

Owns: the choice of participants and the Hypothesis settings. The machine, the model and the
properties checked are in `session_model` (read its docstring): Alice and Bob; then Alice, Bob's
device 1 and Bob's device 2, which share Bob's identity key as linked devices do. Every pair holds
its own sessions, so Bob's devices talk to each other in a session with themselves.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from session_model import SessionMachine


class TwoParties(SessionMachine):
    DEVICES = (("alice", 1, "alice"), ("bob", 1, "bob"))


class ThreeDevices(SessionMachine):
    DEVICES = (("alice", 1, "alice"), ("bob", 1, "bob"), ("bob", 2, "bob"))


_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestTwoParties = TwoParties.TestCase
TestTwoParties.settings = _SETTINGS
TestThreeDevices = ThreeDevices.TestCase
TestThreeDevices.settings = _SETTINGS
