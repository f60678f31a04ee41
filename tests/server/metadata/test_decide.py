"""The reachability rule as a pure function (no sockets), every input combination."""

from __future__ import annotations

import itertools

from kurir.server.services.policy import Verdict, decide
from kurir.server.storage.metadata_records import ConversationState, Reachability


def test_rule_table() -> None:
    states = [None, *ConversationState]
    for same_app, reach, blocked, state, contact in itertools.product(
        (True, False), Reachability, (True, False), states, (True, False)
    ):
        d = decide(
            same_account=False,
            same_app=same_app,
            reachability=reach,
            blocked=blocked,
            state=state,
            is_contact=contact,
        )
        if blocked or state is ConversationState.DECLINED:
            expected = Verdict.DROP
        elif state is ConversationState.ACCEPTED or contact:
            expected = Verdict.DELIVER
        elif not same_app and reach is not Reachability.EVERYONE:
            expected = Verdict.DROP
        else:
            expected = Verdict.REQUEST
        assert d.verdict is expected, (same_app, reach, blocked, state, contact)
        assert d.allowed == (expected is not Verdict.DROP)


def test_own_account_always_delivers() -> None:
    d = decide(
        same_account=True,
        same_app=True,
        reachability=Reachability.NOBODY,
        blocked=True,
        state=ConversationState.DECLINED,
        is_contact=False,
    )
    assert d.verdict is Verdict.DELIVER
