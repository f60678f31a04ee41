"""The services without sockets: in-memory engine, fake clock, seeded randomness."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from kurir.server.config import ConfigError, RateLimits, load_apps
from kurir.server.errors import MismatchedDevices, Refused, StaleDevices
from kurir.server.metrics import MessageCounts
from kurir.server.services.accounts import AccountService, AuthedDevice
from kurir.server.services.messages import MessageService
from kurir.server.services.policy import Decision, Verdict
from kurir.server.storage.memory import MemoryEngine
from kurir.server.testing import FakeClock, SeededRng
from kurir.server.types import AccountId, DeviceId, DeviceRef
from kurir.server.verifier import DevVerifier
from kurir.wire.auth import encode_basic_auth
from kurir.wire.errors import ErrorCode
from kurir.wire.frames import DeviceMessage, Send

PASSWORD = "A" * 32


class Recorder:
    def __init__(self) -> None:
        self.woken: list[DeviceRef] = []

    def wake(self, device: DeviceRef) -> None:
        self.woken.append(device)


class RevokeRecorder:
    def __init__(self) -> None:
        self.accounts: list[UUID] = []
        self.devices: list[DeviceRef] = []

    def revoke_account(self, account_id: AccountId) -> None:
        self.accounts.append(account_id)

    def revoke_device(self, device: DeviceRef) -> None:
        self.devices.append(device)


class SendHooksStub:
    """Send hooks that give every send to another account one verdict."""

    def __init__(self, verdict: Verdict) -> None:
        self.decision = Decision(verdict, "stub")
        self.accepted_sends: list[tuple[AccountId, AccountId]] = []

    async def admit(self, sender: AccountId, recipient: AccountId) -> Decision:
        return self.decision

    async def accepted(
        self, sender: AccountId, recipient: AccountId, decision: Decision, woken: object
    ) -> None:
        self.accepted_sends.append((sender, recipient))


class World:
    def __init__(self, hooks: SendHooksStub | None = None) -> None:
        self.clock = FakeClock()
        self.engine = MemoryEngine()
        self.apps = load_apps()
        self.verifier = DevVerifier(self.clock)
        self.revoked = RevokeRecorder()
        self.accounts = AccountService(
            self.engine.storage.accounts,
            self.apps,
            self.verifier,
            RateLimits(),
            clock=self.clock,
            rng=SeededRng(1),
            revoker=self.revoked,
        )
        self.notifier = Recorder()
        self.counts = MessageCounts()
        self.messages = MessageService(
            self.engine.storage.accounts,
            self.engine.storage.mailboxes,
            self.notifier,
            clock=self.clock,
            mailbox_cap=10,
            envelope_ttl_ms=1000,
            hooks=hooks,
            tally=self.counts,
        )

    async def link(self, primary: AuthedDevice, registration_id: int) -> AuthedDevice:
        code, _ = await self.accounts.create_link_code(primary)
        account_id, device_id = await self.accounts.link_device(
            code=code,
            password=PASSWORD,
            registration_id=registration_id,
            device_name=None,
            host="h",
        )
        header = encode_basic_auth(account_id, device_id, PASSWORD)
        return await self.accounts.authenticate(header, "host")

    async def register(self, address: str, registration_id: int) -> AuthedDevice:
        app = self.apps.get(address.partition(":")[0])
        assert app is not None
        await self.accounts.request_code(address, app.client_key, "host")
        account_id = await self.accounts.register(
            address_text=address,
            code="123456",
            password=PASSWORD,
            registration_id=registration_id,
            device_name=None,
            client_key=app.client_key,
        )
        header = encode_basic_auth(account_id, 1, PASSWORD)
        return await self.accounts.authenticate(header, "host")


def _send(to: AuthedDevice, *messages: DeviceMessage, mid: bytes = b"m" * 16) -> Send:
    return Send(id=1, to=to.account_id, message_id=mid, timestamp=5, messages=list(messages))


async def test_send_wakes_recipient_after_commit_and_ack_wakes_sender() -> None:
    w = World()
    alice = await w.register("messenger:1", 10)
    bob = await w.register("instagram:@bob", 20)
    await w.messages.send(
        alice, _send(bob, DeviceMessage(device=1, registration_id=20, type=1, body=b"x"))
    )
    assert w.notifier.woken == [bob.ref]
    (env,) = await w.messages.fetch(bob.ref, after_seq=0, limit=10)
    await w.messages.acknowledge(bob, [env.seq])
    assert w.notifier.woken == [bob.ref, alice.ref]
    (receipt,) = await w.messages.fetch(alice.ref, after_seq=0, limit=10)
    assert (receipt.type, receipt.source, receipt.source_address) == (
        5,
        bob.account_id,
        "instagram:@bob",
    )


async def test_device_checks_raise_with_data() -> None:
    w = World()
    alice = await w.register("messenger:1", 10)
    bob = await w.register("instagram:@bob", 20)
    with pytest.raises(MismatchedDevices) as mismatch:
        await w.messages.send(
            alice, _send(bob, DeviceMessage(device=3, registration_id=20, type=1, body=b""))
        )
    assert (mismatch.value.missing, mismatch.value.extra) == ([1], [3])
    with pytest.raises(StaleDevices) as stale:
        await w.messages.send(
            alice, _send(bob, DeviceMessage(device=1, registration_id=21, type=1, body=b""))
        )
    assert stale.value.stale == [1]
    assert w.notifier.woken == []
    with pytest.raises(ValueError, match="needs"):
        MismatchedDevices([], [])


async def test_device_checks_of_a_multi_device_account_name_every_difference() -> None:
    w = World()
    alice = await w.register("messenger:1", 10)
    bob = await w.register("instagram:@bob", 20)
    await w.link(bob, 21)
    one, two = (
        DeviceMessage(device=d, registration_id=r, type=1, body=b"") for d, r in ((1, 20), (2, 21))
    )
    three = DeviceMessage(device=3, registration_id=22, type=1, body=b"")
    cases: list[tuple[list[DeviceMessage], type[Exception], tuple[list[int], ...]]] = [
        ([one], MismatchedDevices, ([2], [])),
        ([two, one, three], MismatchedDevices, ([], [3])),
        ([one, three], MismatchedDevices, ([2], [3])),
        ([], MismatchedDevices, ([1, 2], [])),
        ([DeviceMessage(device=2, registration_id=1, type=1, body=b""), one], StaleDevices, ([2],)),
    ]
    for messages, error, data in cases:
        with pytest.raises(error) as info:
            await w.messages.send(alice, _send(bob, *messages))
        if isinstance(info.value, MismatchedDevices):
            assert (info.value.missing, info.value.extra) == data
        else:
            assert isinstance(info.value, StaleDevices)
            assert (info.value.stale,) == data
    assert w.notifier.woken == []
    await w.messages.send(alice, _send(bob, two, one))  # any order
    assert sorted(w.notifier.woken) == [bob.ref, DeviceRef(bob.account_id, DeviceId(2))]


async def test_a_send_to_its_own_account_skips_the_sending_device() -> None:
    w = World()
    alice = await w.register("messenger:1", 10)
    with pytest.raises(MismatchedDevices) as info:
        await w.messages.send(
            alice, _send(alice, DeviceMessage(device=1, registration_id=10, type=1, body=b""))
        )
    assert (info.value.missing, info.value.extra) == ([], [1])
    await w.messages.send(alice, _send(alice))  # no other device: nothing to queue
    other = await w.link(alice, 11)
    with pytest.raises(MismatchedDevices) as info:
        await w.messages.send(alice, _send(alice))
    assert (info.value.missing, info.value.extra) == ([2], [])
    await w.messages.send(
        alice, _send(alice, DeviceMessage(device=2, registration_id=11, type=1, body=b"x"))
    )
    assert w.notifier.woken == [other.ref]


@pytest.mark.parametrize("verdict", [Verdict.DELIVER, Verdict.REQUEST, Verdict.DROP])
async def test_the_tally_counts_accepted_sends_deliveries_and_acks(verdict: Verdict) -> None:
    hooks = SendHooksStub(verdict)
    w = World(hooks)
    alice = await w.register("messenger:1", 10)
    bob = await w.register("instagram:@bob", 20)
    copy = DeviceMessage(device=1, registration_id=20, type=1, body=b"x")
    with pytest.raises(StaleDevices):  # refused: not counted
        await w.messages.send(alice, _send(bob, DeviceMessage(1, 7, 1, b"")))
    await w.messages.send(alice, _send(bob, copy))
    await w.messages.send(alice, _send(bob, copy))  # a resend: accepted again, queues nothing
    await w.messages.send(alice, _send(alice))  # to its own account, no other device
    counts = w.counts
    assert (counts.accepted, counts.queued, counts.delivered, counts.acknowledged) == (3, 2, 0, 0)
    dropped = verdict is Verdict.DROP
    assert hooks.accepted_sends == ([] if dropped else [(alice.account_id, bob.account_id)] * 2)
    envelopes = await w.messages.fetch(bob.ref, after_seq=0, limit=10)
    assert len(envelopes) == (0 if dropped else 1)
    w.messages.handed_off(2)
    await w.messages.acknowledge(bob, [e.seq for e in envelopes] + [99])
    await w.messages.acknowledge(bob, [])
    assert (counts.delivered, counts.acknowledged) == (len(envelopes) + 2, len(envelopes) + 1)


async def test_expiry_is_explicit() -> None:
    w = World()
    alice = await w.register("messenger:1", 10)
    bob = await w.register("instagram:@bob", 20)
    await w.messages.send(
        alice, _send(bob, DeviceMessage(device=1, registration_id=20, type=1, body=b"x"))
    )
    w.clock.advance(1000)
    assert await w.messages.fetch(bob.ref, after_seq=0, limit=10) == []
    assert await w.messages.expire() == 1
    assert await w.messages.take_expired_count(bob.ref) == 1


async def test_dev_verifier_codes_expire_and_are_single_use() -> None:
    w = World()
    app = w.apps.get("messenger")
    assert app is not None
    await w.accounts.request_code("messenger:7", app.client_key, "host")
    w.clock.advance(10 * 60 * 1000)
    with pytest.raises(Refused) as info:
        await w.accounts.register(
            address_text="messenger:7",
            code="123456",
            password=PASSWORD,
            registration_id=1,
            device_name=None,
            client_key=app.client_key,
        )
    assert info.value.code is ErrorCode.INVALID_CODE


async def test_authentication_refuses_unknown_devices() -> None:
    w = World()
    alice = await w.register("messenger:1", 10)
    for header in (
        encode_basic_auth(alice.account_id, 2, PASSWORD),
        encode_basic_auth(UUID(int=9), 1, PASSWORD),
        encode_basic_auth(alice.account_id, 1, "B" * 32),
    ):
        with pytest.raises(Refused) as info:
            await w.accounts.authenticate(header, "host")
        assert info.value.code is ErrorCode.UNAUTHORIZED


def test_seeded_rng_is_deterministic() -> None:
    assert SeededRng(3).token_bytes(40) == SeededRng(3).token_bytes(40)
    assert SeededRng(3).token_bytes(16) != SeededRng(4).token_bytes(16)


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("", "[[apps]]"),
        ("[[apps]]\nid = 'x'\n", "display_name"),
        (
            "[[apps]]\nid='x'\ndisplay_name='X'\nidentifier_kind='email'\nclient_key='k'\ncolour='#000000'\n",
            "identifier_kind",
        ),
        (
            "[[apps]]\nid='x'\ndisplay_name='X'\nidentifier_kind='phone'\nclient_key='short'\ncolour='#000000'\n",
            "client_key",
        ),
        (
            "[[apps]]\nid='x'\ndisplay_name='X'\nidentifier_kind='phone'\n"
            "client_key='0123456789abcdef'\ncolour='red'\n",
            "colour",
        ),
        ("not toml [", "TOML"),
    ],
)
def test_bad_catalogues_are_refused(tmp_path: Path, toml: str, fragment: str) -> None:
    path = tmp_path / "apps.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        load_apps(path)


def test_duplicate_app_ids_are_refused(tmp_path: Path) -> None:
    entry = (
        "[[apps]]\nid='x'\ndisplay_name='X'\nidentifier_kind='phone'\n"
        "client_key='{key}'\ncolour='#000000'\n"
    )
    path = tmp_path / "apps.toml"
    path.write_text(entry.format(key="a" * 16) + entry.format(key="b" * 16), encoding="utf-8")
    with pytest.raises(ConfigError, match="unique"):
        load_apps(path)


async def test_registration_revokes_live_sessions_of_the_account() -> None:
    w = World()
    first = await w.register("messenger:1", 10)
    again = await w.register("messenger:1", 11)
    assert again.account_id == first.account_id
    assert w.revoked.accounts == [first.account_id, first.account_id]


async def test_link_codes_are_single_use_and_primary_only() -> None:
    w = World()
    alice = await w.register("messenger:1", 10)
    code, expires = await w.accounts.create_link_code(alice)
    assert expires == w.clock.now_ms() + 10 * 60 * 1000
    account_id, device_id = await w.accounts.link_device(
        code=code, password=PASSWORD, registration_id=11, device_name="tab", host="h"
    )
    assert (account_id, device_id) == (alice.account_id, 2)
    with pytest.raises(Refused) as info:
        await w.accounts.link_device(
            code=code, password=PASSWORD, registration_id=11, device_name=None, host="h"
        )
    assert info.value.code is ErrorCode.INVALID_CODE
    linked = await w.accounts.authenticate(encode_basic_auth(alice.account_id, 2, PASSWORD), "h")
    with pytest.raises(Refused) as info:
        await w.accounts.create_link_code(linked)
    assert info.value.code is ErrorCode.FORBIDDEN
    late, _ = await w.accounts.create_link_code(alice)
    w.clock.advance(10 * 60 * 1000)
    with pytest.raises(Refused) as info:
        await w.accounts.link_device(
            code=late, password=PASSWORD, registration_id=12, device_name=None, host="h"
        )
    assert info.value.code is ErrorCode.INVALID_CODE


async def test_device_removal_rules() -> None:
    w = World()
    alice = await w.register("messenger:1", 10)
    for registration_id in (11, 12):
        code, _ = await w.accounts.create_link_code(alice)
        await w.accounts.link_device(
            code=code,
            password=PASSWORD,
            registration_id=registration_id,
            device_name=None,
            host="h",
        )
    two = await w.accounts.authenticate(encode_basic_auth(alice.account_id, 2, PASSWORD), "h")
    for caller, target, code in (
        (alice, 1, ErrorCode.FORBIDDEN),
        (two, 3, ErrorCode.FORBIDDEN),
        (alice, 9, ErrorCode.NOT_FOUND),
    ):
        with pytest.raises(Refused) as info:
            await w.accounts.remove_device(caller, DeviceId(target))
        assert info.value.code is code
    await w.accounts.remove_device(two, DeviceId(2))
    await w.accounts.remove_device(alice, DeviceId(3))
    assert w.revoked.devices == [
        DeviceRef(alice.account_id, DeviceId(2)),
        DeviceRef(alice.account_id, DeviceId(3)),
    ]
    assert [d.device_id for d in await w.accounts.devices(alice.account_id)] == [1]
