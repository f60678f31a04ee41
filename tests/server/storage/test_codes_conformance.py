"""The pending-code store's contract (issue 7), run against every engine: memory, SQLite and
PostgreSQL (the ``storage`` fixture of this directory)."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from kurir.server.storage.codes import (
    CodePurpose,
    CodeStore,
    PendingCode,
    Redeemed,
    code_digest,
    subject_digest,
)
from kurir.server.storage.protocols import Storage
from kurir.server.types import AccountId

OWNER = AccountId(UUID(int=7))
OTHER = AccountId(UUID(int=8))
LINK = CodePurpose.LINK
VERIFY = CodePurpose.VERIFICATION


def _codes(storage: Storage) -> CodeStore:
    assert storage.codes is not None, "every engine keeps pending codes"
    return storage.codes


def _link(code: str, *, owner: AccountId = OWNER, now: int = 1000, ttl: int = 600) -> PendingCode:
    subject = subject_digest(LINK, code)
    return PendingCode(LINK, subject, code_digest(LINK, subject, code), owner, now, now + ttl)


def _verify(address: str, code: str, *, now: int = 1000, ttl: int = 600) -> PendingCode:
    subject = subject_digest(VERIFY, address)
    return PendingCode(VERIFY, subject, code_digest(VERIFY, subject, code), None, now, now + ttl)


async def _redeem_link(codes: CodeStore, code: str, *, now: int = 1001) -> Redeemed | None:
    subject = subject_digest(LINK, code)
    return await codes.redeem(
        LINK, subject, code_digest(LINK, subject, code), now=now, max_attempts=1
    )


async def _check(
    codes: CodeStore, address: str, code: str, *, now: int = 1001, max_attempts: int = 3
) -> Redeemed | None:
    subject = subject_digest(VERIFY, address)
    digest = code_digest(VERIFY, subject, code)
    return await codes.redeem(VERIFY, subject, digest, now=now, max_attempts=max_attempts)


async def test_a_link_code_is_redeemed_once_with_its_owner(storage: Storage) -> None:
    codes = _codes(storage)
    await codes.issue(_link("abc"), max_per_owner=5)
    assert await _redeem_link(codes, "abd") is None
    assert await _redeem_link(codes, "abc") == Redeemed(OWNER)
    assert await _redeem_link(codes, "abc") is None


async def test_an_expired_code_is_refused_and_swept(storage: Storage) -> None:
    codes = _codes(storage)
    await codes.issue(_link("late"), max_per_owner=5)
    await codes.issue(_link("fresh", now=1500), max_per_owner=5)
    assert await _redeem_link(codes, "late", now=1600) is None  # expired at 1600: deleted
    assert await codes.expire(2099) == 0
    assert await codes.expire(2100) == 1  # "fresh" expired unused
    assert await _redeem_link(codes, "fresh", now=2000) is None


async def test_a_verification_code_allows_few_wrong_attempts(storage: Storage) -> None:
    codes = _codes(storage)
    await codes.issue(_verify("whatsapp:+6281234567890", "123456"), max_per_owner=5)
    assert await _check(codes, "whatsapp:+6281234567890", "000000") is None
    assert await _check(codes, "whatsapp:+6281234567890", "000001") is None
    assert await _check(codes, "whatsapp:+62812345678", "123456") is None  # another subject
    assert await _check(codes, "whatsapp:+6281234567890", "123456") == Redeemed(None)
    assert await _check(codes, "whatsapp:+6281234567890", "123456") is None  # used up
    await codes.issue(_verify("whatsapp:+6281234567890", "123456"), max_per_owner=5)
    for wrong in ("1", "2", "3"):
        assert await _check(codes, "whatsapp:+6281234567890", wrong) is None
    # the third wrong attempt used the code up: the right one no longer works
    assert await _check(codes, "whatsapp:+6281234567890", "123456") is None


async def test_a_new_code_replaces_the_subjects_code_and_its_attempts(storage: Storage) -> None:
    codes = _codes(storage)
    await codes.issue(_verify("messenger:1", "111111"), max_per_owner=5)
    assert await _check(codes, "messenger:1", "999999") is None
    assert await _check(codes, "messenger:1", "999998") is None
    await codes.issue(_verify("messenger:1", "222222", now=1100), max_per_owner=5)
    assert await _check(codes, "messenger:1", "111111", now=1101) is None  # replaced
    assert await _check(codes, "messenger:1", "999997", now=1101) is None
    assert await _check(codes, "messenger:1", "222222", now=1101) == Redeemed(None)


async def test_an_owner_keeps_only_its_newest_codes(storage: Storage) -> None:
    codes = _codes(storage)
    for i in range(5):
        await codes.issue(_link(f"c{i}", now=1000 + i), max_per_owner=3)
    # c0, c1 were trimmed by c3, c4; the newest code trims c2 (the owner keeps three)
    await codes.issue(_link("newest", now=1010), max_per_owner=3)
    await codes.issue(_link("other", owner=OTHER), max_per_owner=3)  # another owner's cap
    assert [await _redeem_link(codes, f"c{i}", now=1010) for i in range(5)] == [
        None,
        None,
        None,
        Redeemed(OWNER),
        Redeemed(OWNER),
    ]
    assert await _redeem_link(codes, "newest", now=1010) == Redeemed(OWNER)
    assert await _redeem_link(codes, "other", now=1010) == Redeemed(OTHER)


async def test_discarding_an_owners_codes(storage: Storage) -> None:
    codes = _codes(storage)
    await codes.issue(_link("a"), max_per_owner=5)
    await codes.issue(_link("b"), max_per_owner=5)
    await codes.issue(_link("c", owner=OTHER), max_per_owner=5)
    assert await codes.discard_owner(LINK, OWNER) == 2
    assert await _redeem_link(codes, "a") is None
    assert await _redeem_link(codes, "c") == Redeemed(OTHER)


async def test_concurrent_redemptions_have_one_winner(storage: Storage) -> None:
    codes = _codes(storage)
    for i in range(10):
        await codes.issue(_link(f"race{i}"), max_per_owner=20)
    results = await asyncio.gather(
        *(_redeem_link(codes, f"race{i}") for i in range(10) for _ in range(4))
    )
    assert results.count(Redeemed(OWNER)) == 10
    assert results.count(None) == 30


def test_pending_codes_refuse_nonsense() -> None:
    subject = subject_digest(LINK, "x")
    with pytest.raises(ValueError, match="owner"):
        PendingCode(LINK, subject, subject, None, 1, 2)
    with pytest.raises(ValueError, match="owner"):
        PendingCode(VERIFY, subject, subject, OWNER, 1, 2)
    with pytest.raises(ValueError, match="expire"):
        PendingCode(LINK, subject, subject, OWNER, 2, 2)
    with pytest.raises(ValueError, match="SHA-256"):
        PendingCode(LINK, b"short", subject, OWNER, 1, 2)
    assert code_digest(LINK, subject, "1") != code_digest(VERIFY, subject, "1")
