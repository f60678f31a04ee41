"""Pending codes and credential re-checks in the services (issue 7 follow-up), without
sockets: in-memory engine, fake clock, seeded randomness.

The codes' storage contract is tests/server/storage/test_codes_conformance.py; codes shared
by real nodes are tests/e2e/multinode/test_shared_state.py.
"""

from __future__ import annotations

import pytest

from kurir.server.connections import Attachable
from kurir.server.errors import Refused
from kurir.server.recheck import CredentialRecheck
from kurir.server.services.accounts import AuthedDevice
from kurir.server.storage.codes_memory import MemoryCodeStore
from kurir.server.types import DeviceId, DeviceRef
from kurir.server.verifier import DEV_CODE, MAX_ATTEMPTS, DevVerifier
from kurir.wire.address import Address
from kurir.wire.auth import encode_basic_auth
from kurir.wire.errors import ErrorCode

from .test_services import PASSWORD, World


async def test_the_dev_verifier_gives_a_few_attempts_per_code() -> None:
    w = World()
    verifier = DevVerifier(w.clock, MemoryCodeStore())
    address = Address("whatsapp", "+6281234567890")
    assert not await verifier.check(address, DEV_CODE)  # no code was asked for
    await verifier.start(address)
    for _ in range(MAX_ATTEMPTS - 1):
        assert not await verifier.check(address, "000000")
    assert await verifier.check(address, DEV_CODE)
    assert not await verifier.check(address, DEV_CODE)  # used up
    await verifier.start(address)
    for _ in range(MAX_ATTEMPTS):
        assert not await verifier.check(address, "000000")
    assert not await verifier.check(address, DEV_CODE)  # guessed too often: gone
    await verifier.start(address)
    w.clock.advance(10 * 60 * 1000)
    assert not await verifier.check(address, DEV_CODE)  # expired


async def test_two_verifiers_over_one_store_act_as_one() -> None:
    w = World()
    shared = MemoryCodeStore()
    one, two = DevVerifier(w.clock, shared), DevVerifier(w.clock, shared)
    address = Address("messenger", "1000423")
    await one.start(address)
    assert await two.check(address, DEV_CODE)
    assert not await one.check(address, DEV_CODE)


async def test_re_registration_voids_the_old_primarys_link_codes() -> None:
    w = World()
    alice = await w.register("messenger:1", 10)
    code, _ = await w.accounts.create_link_code(alice)
    await w.register("messenger:1", 11)  # someone re-registered the address
    with pytest.raises(Refused) as info:
        await w.accounts.link_device(
            code=code, password=PASSWORD, registration_id=12, device_name=None, host="h"
        )
    assert info.value.code is ErrorCode.INVALID_CODE


async def test_an_account_keeps_its_ten_newest_link_codes() -> None:
    w = World()
    alice = await w.register("messenger:1", 10)
    codes: list[str] = []
    for _ in range(11):
        codes.append((await w.accounts.create_link_code(alice))[0])
        w.clock.advance(1)
    with pytest.raises(Refused):
        await w.accounts.link_device(
            code=codes[0], password=PASSWORD, registration_id=12, device_name=None, host="h"
        )
    _, device_id = await w.accounts.link_device(
        code=codes[1], password=PASSWORD, registration_id=12, device_name=None, host="h"
    )
    assert device_id == 2


class Held:
    """A live connection that knows its device (as the WebSocket connection does)."""

    def __init__(self, device: AuthedDevice) -> None:
        self._device = device
        self.revoked = False

    @property
    def device(self) -> AuthedDevice:
        return self._device

    def wake(self) -> None:
        pass

    def replace(self) -> None:
        pass

    def revoke(self) -> None:
        self.revoked = True


class Anonymous:
    def wake(self) -> None:
        pass

    def replace(self) -> None:
        pass

    def revoke(self) -> None:
        pass


async def test_a_recheck_finds_removed_and_re_registered_devices() -> None:
    w = World()
    alice = await w.register("messenger:1", 10)
    bob = await w.register("instagram:@bob", 20)
    code, _ = await w.accounts.create_link_code(alice)
    await w.accounts.link_device(
        code=code, password=PASSWORD, registration_id=11, device_name=None, host="h"
    )
    tablet = await w.accounts.authenticate(encode_basic_auth(alice.account_id, 2, PASSWORD), "h")
    assert alice.credential
    assert tablet.credential != alice.credential
    await w.accounts.remove_device(alice, DeviceId(2))
    new_alice = await w.register("messenger:1", 12)  # same account, new device 1
    live: list[tuple[DeviceRef, Attachable]] = [
        (alice.ref, Held(alice)),
        (tablet.ref, Held(tablet)),
        (bob.ref, Held(bob)),
        (DeviceRef(bob.account_id, DeviceId(2)), Anonymous()),  # cannot be checked: kept
    ]
    closed = await CredentialRecheck(w.accounts)(live)
    assert sorted(d for d, _ in closed) == sorted([alice.ref, tablet.ref])
    assert await CredentialRecheck(w.accounts)([(new_alice.ref, Held(new_alice))]) == []
