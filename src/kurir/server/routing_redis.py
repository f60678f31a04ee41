"""Cross-node routing through Redis: which node holds which device, wake-ups between nodes.

This module owns :class:`RedisRouter`, the :class:`~kurir.server.routing.Router` of a node
that shares its database with other nodes. It knows nothing of messages or sockets.

Redis holds only routing hints, never a message (docs/deployment.md):

- ``kurir:dev:{<account_id>}:<device_id>`` = ``"<node_id> <connection_id>"``: the node that
  holds the device's connection, with a TTL that the holder refreshes while connected. The
  hash tag is the account, so every key of one account lives in one Redis Cluster slot.
- ``kurir:node:{<node_id>}``: each node's pub/sub channel. A commit that fills a mailbox of a
  device held elsewhere publishes a wake-up there; the node then reads the shared mailbox.
  When a device connects, ``SET ... GET`` swaps in the new holder atomically; the previous
  holder is told to close its (older) connection with 4001.
- ``kurir:all``: revocations (re-registration, device removal), which every node applies,
  and re-check requests (``ca``) for revocations a node could not publish while Redis was
  unreachable. Since pub/sub keeps nothing, a node whose subscription is established again
  also re-checks its live connections' credentials (:meth:`RedisRouter.
  recheck_after_resubscribe`, :mod:`kurir.server.recheck`).

:meth:`RedisRouter.connected` tells which devices are connected on any node (push goes only
to the others).

All Redis I/O runs in one worker task, in the order the router was asked, batched into
pipelines. While Redis is unreachable the node keeps serving: its connections poll their
mailboxes every ``poll_interval_s``, and when Redis is back (even restarted empty) the
node re-registers every connection and wakes each one to re-read its mailbox, so nothing
committed meanwhile waits for a later message. While degraded, every tick also pings
Redis, so a node without connections or traffic notices the recovery too (`degraded`
and the ``kurir_redis_up`` gauge follow).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol
from uuid import UUID

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from kurir.server.connections import Attachable
from kurir.server.types import AccountId, DeviceId, DeviceRef, Rng

__all__ = ["PRESENCE_TIMEOUT_S", "LiveCheck", "RedisRouter", "device_key", "node_channel"]

_log = logging.getLogger("kurir.server.routing")

PRESENCE_TIMEOUT_S: Final = 0.5
"""Longest wait for Redis when asking which devices are connected (before a push)."""
_MAX_UNSENT: Final = 10_000

ALL_CHANNEL: Final = "kurir:all"
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)

# Keep the TTL when the key is still ours; re-create it when it vanished (Redis restarted or
# the key expired during an outage): 1 = refreshed, 2 = re-created, 0 = another holder.
_REFRESH: Final = """
local v = redis.call('GET', KEYS[1])
if v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# Delete the key only while it still names this connection.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LiveCheck(Protocol):
    """Finds, among a node's live connections, those whose credentials were revoked."""

    async def __call__(
        self, live: Sequence[tuple[DeviceRef, Attachable]]
    ) -> Sequence[tuple[DeviceRef, Attachable]]:
        """The (device, connection) pairs of ``live`` that must be closed (4003)."""
        ...


def device_key(device: DeviceRef) -> str:
    """The Redis key naming the node that holds ``device``'s connection."""
    return f"kurir:dev:{{{device.account_id}}}:{device.device_id}"


def node_channel(node_id: str) -> str:
    """The pub/sub channel of one node."""
    return f"kurir:node:{{{node_id}}}"


@dataclass(frozen=True, slots=True)
class _Holder:
    connection: Attachable
    connection_id: str


@dataclass(frozen=True, slots=True)
class _Register:
    device: DeviceRef
    connection_id: str


@dataclass(frozen=True, slots=True)
class _Release:
    device: DeviceRef
    connection_id: str


@dataclass(frozen=True, slots=True)
class _Wake:
    device: DeviceRef


@dataclass(frozen=True, slots=True)
class _Broadcast:
    line: str


@dataclass(frozen=True, slots=True)
class _Refresh:
    pass


@dataclass(frozen=True, slots=True)
class _RefreshOne:
    device: DeviceRef
    connection_id: str


@dataclass(frozen=True, slots=True)
class _Ping:
    pass


_Op = _Register | _Release | _Wake | _Broadcast | _Refresh
_Planned = _Register | _Release | _Wake | _Broadcast | _RefreshOne | _Ping


def _ref(account: str, device: str) -> DeviceRef:
    return DeviceRef(AccountId(UUID(account)), DeviceId(int(device)))


class RedisRouter:
    """The router of one node among several that share a database and a Redis.

    Args:
        url: ``redis://host:port/db`` (credentials belong in the URL's userinfo or a
            ``rediss://`` URL; the URL is never logged).
        rng: Randomness for the node id and connection ids.
        node_id: This node's id; default: random. Must be unique among running nodes.
        key_ttl_ms: Lifetime of a device key that its holder stops refreshing (a killed node).
        refresh_interval_s: How often held keys are refreshed.
        poll_interval_s: While Redis is unreachable, how often connections re-read mailboxes.
    """

    def __init__(
        self,
        url: str,
        *,
        rng: Rng,
        node_id: str | None = None,
        key_ttl_ms: int = 30_000,
        refresh_interval_s: float = 5.0,
        poll_interval_s: float = 1.0,
    ) -> None:
        if key_ttl_ms <= refresh_interval_s * 1000:
            raise ValueError("key_ttl_ms must exceed the refresh interval")
        self._rng = rng
        self.node_id = node_id if node_id is not None else rng.token_bytes(8).hex()
        self._channel = node_channel(self.node_id)
        self._ttl_ms = key_ttl_ms
        self._refresh_s = refresh_interval_s
        self._poll_s = poll_interval_s
        # No silent reconnects: an outage must surface, so that recovery re-registers.
        # Commands time out (a hung Redis must not stall routing); the subscription waits
        # on its own timeout, so it gets a client without a read timeout.
        self._redis: Redis = Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), socket_timeout=5.0, socket_connect_timeout=5.0
        )
        self._sub: Redis = Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=5.0
        )
        self._local: dict[DeviceRef, _Holder] = {}
        self._registered: set[str] = set()  # connection ids whose key Redis is known to hold
        self._pending: set[str] = set()  # connection ids whose registration is queued
        self._ops: asyncio.Queue[_Op] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._degraded = False
        self.subscribed = asyncio.Event()
        """Set while this node's subscription is live (tests wait on it)."""
        self._recheck: LiveCheck | None = None  # see recheck_after_resubscribe
        self._unsent: dict[AccountId, None] = {}  # accounts whose revocation was not published

    # -- the Router Protocol (synchronous; I/O is queued) -----------------------------------

    def attach(self, device: DeviceRef, connection: Attachable) -> None:
        """Hold ``connection`` here; the previous holder (here or elsewhere) closes with 4001."""
        connection_id = self._rng.token_bytes(8).hex()
        old = self._local.get(device)
        self._local[device] = _Holder(connection, connection_id)
        if old is not None and old.connection is not connection:
            self._registered.discard(old.connection_id)
            old.connection.replace()
        # Until this registration ran, the refresh leaves the device alone: it would find
        # the previous holder's value and take this new connection for a stale one.
        self._pending.add(connection_id)
        self._ops.put_nowait(_Register(device, connection_id))

    def detach(self, device: DeviceRef, connection: Attachable) -> None:
        """Forget ``connection`` (and its key) unless a newer one replaced it."""
        holder = self._local.get(device)
        if holder is not None and holder.connection is connection:
            del self._local[device]
            self._registered.discard(holder.connection_id)
            self._ops.put_nowait(_Release(device, holder.connection_id))

    def wake(self, device: DeviceRef) -> None:
        """Wake the device's connection here, and ask its holder node (per Redis) to.

        Redis is asked even when the device is connected here: this node may not have learnt
        yet that a newer connection on another node replaced (or that the device left) its
        connection, and a wake-up that only reached the stale one would leave the envelope
        waiting for the next message.
        """
        holder = self._local.get(device)
        if holder is not None:
            holder.connection.wake()
        self._ops.put_nowait(_Wake(device))

    def revoke_account(self, account_id: AccountId) -> None:
        """Close the account's connections here and on every other node."""
        self._revoke_local_account(account_id)
        self._ops.put_nowait(_Broadcast(f"ra {self.node_id} {account_id}"))

    def revoke_device(self, device: DeviceRef) -> None:
        """Close the device's connection, wherever it is."""
        self._revoke_local_device(device)
        self._ops.put_nowait(
            _Broadcast(f"rd {self.node_id} {device.account_id} {device.device_id}")
        )

    def __len__(self) -> int:
        return len(self._local)

    async def start(self) -> None:
        """Start the Redis worker, the subscription and the key refresh.

        Does not wait for Redis: a node starts (and serves, polling) while Redis is down.
        """
        self._tasks = [
            asyncio.create_task(self._worker()),
            asyncio.create_task(self._listen()),
            asyncio.create_task(self._tick()),
        ]

    async def close(self) -> None:
        """Stop background work, release this node's keys (best effort), close Redis."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._local:
            with contextlib.suppress(*_FAILURES):
                pipe = self._redis.pipeline(transaction=False)
                for device, holder in self._local.items():
                    pipe.eval(_RELEASE, 1, device_key(device), self._value(holder.connection_id))
                await pipe.execute()
        with contextlib.suppress(*_FAILURES):
            await self._redis.aclose()
        with contextlib.suppress(*_FAILURES):
            await self._sub.aclose()

    # -- local effects -------------------------------------------------------------------

    def _value(self, connection_id: str) -> str:
        return f"{self.node_id} {connection_id}"

    def _revoke_local_account(self, account_id: AccountId) -> None:
        for device in [d for d in self._local if d.account_id == account_id]:
            self._revoke_local_device(device)

    def _revoke_local_device(self, device: DeviceRef) -> None:
        holder = self._local.pop(device, None)
        if holder is not None:
            self._registered.discard(holder.connection_id)
            self._ops.put_nowait(_Release(device, holder.connection_id))
            holder.connection.revoke()

    def _replace_local(self, device: DeviceRef, connection_id: str) -> None:
        holder = self._local.get(device)
        if holder is not None and holder.connection_id == connection_id:
            del self._local[device]
            self._registered.discard(connection_id)
            holder.connection.replace()

    def _revoked_elsewhere(self, account_id: AccountId, device: DeviceRef | None) -> None:
        """Apply another node's revocation of an account (``device`` None) or a device.

        With a credential check (:meth:`recheck_after_resubscribe`) the account's connections
        here are re-checked against the database rather than closed: a revocation can arrive
        late (a publish retried after its node lost Redis for a while), after the account
        connected again with its new credentials, and that connection must stay.
        """
        if self._recheck is not None:
            self._start_recheck(account_id)
        elif device is None:
            self._revoke_local_account(account_id)
        else:
            self._revoke_local_device(device)

    def _wake_all_local(self) -> None:
        for holder in list(self._local.values()):
            holder.connection.wake()

    def _handle(self, payload: bytes) -> None:
        for line in payload.decode("ascii", "replace").splitlines():
            parts = line.split(" ")
            try:
                match parts:
                    case ["w", account, device]:
                        holder = self._local.get(_ref(account, device))
                        if holder is not None:
                            holder.connection.wake()
                    case ["r", account, device, connection_id]:
                        self._replace_local(_ref(account, device), connection_id)
                    case ["ra", origin, account] if origin != self.node_id:
                        self._revoked_elsewhere(AccountId(UUID(account)), None)
                    case ["rd", origin, account, device] if origin != self.node_id:
                        self._revoked_elsewhere(AccountId(UUID(account)), _ref(account, device))
                    case ["ca", origin, account] if origin != self.node_id:
                        self._start_recheck(AccountId(UUID(account)))
                    case _:
                        pass
            except ValueError:
                _log.warning("ignored a malformed routing message")

    # -- background tasks ----------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            batch = [await self._ops.get()]
            while not self._ops.empty():
                batch.append(self._ops.get_nowait())
            try:
                await self._run(batch)
            except _FAILURES as exc:
                # Registrations are retried by the next refresh; wake-ups are covered by
                # polling while degraded and by the wake-all on recovery.
                self._set_degraded(exc)
                self._keep_unsent(batch)  # revocations: sent again on recovery
            except Exception:  # a bug: keep routing the next batches
                _log.exception("routing batch failed")

    async def _run(self, batch: list[_Op]) -> None:
        in_batch = {op.connection_id for op in batch if isinstance(op, _Register)}
        try:
            await self._run_pipeline(batch)
        finally:
            # settled, or failed: a failed registration is retried by the next refresh
            self._pending -= in_batch

    async def _run_pipeline(self, batch: list[_Op]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        plan: list[_Planned] = []
        wakes: set[DeviceRef] = set()
        for op in batch:
            match op:
                case _Register(device, connection_id):
                    pipe.set(
                        device_key(device), self._value(connection_id), px=self._ttl_ms, get=True
                    )
                    plan.append(op)
                case _Release(device, connection_id):
                    pipe.eval(_RELEASE, 1, device_key(device), self._value(connection_id))
                    plan.append(op)
                case _Wake(device):
                    if device not in wakes:
                        wakes.add(device)
                        pipe.get(device_key(device))
                        plan.append(op)
                case _Broadcast(line):
                    pipe.publish(ALL_CHANNEL, line)
                    plan.append(op)
                case _Refresh():
                    if self._degraded:
                        # A node with no connections and no traffic has nothing else to
                        # send: without this ping it would never learn that Redis is back.
                        pipe.ping()
                        plan.append(_Ping())
                    for device, holder in self._local.items():
                        cid = holder.connection_id
                        if cid in self._registered:
                            value = self._value(cid)
                            pipe.eval(_REFRESH, 1, device_key(device), value, self._ttl_ms)
                            plan.append(_RefreshOne(device, cid))
                        elif cid not in self._pending:  # its registration failed: again
                            value = self._value(cid)
                            pipe.set(device_key(device), value, px=self._ttl_ms, get=True)
                            plan.append(_Register(device, cid))
        if not plan:
            return
        results = await pipe.execute()
        notices: dict[str, list[str]] = {}
        for planned, result in zip(plan, results, strict=True):
            self._settle(planned, result, notices)
        if notices:
            out = self._redis.pipeline(transaction=False)
            for node, lines in notices.items():
                out.publish(node_channel(node), "\n".join(lines))
            await out.execute()
        self._set_healthy()

    def _settle(self, op: _Planned, result: object, notices: dict[str, list[str]]) -> None:
        match op:
            case _Register(device, connection_id):
                holder = self._local.get(device)
                if holder is None or holder.connection_id != connection_id:
                    return  # detached meanwhile; its release follows in order
                self._registered.add(connection_id)
                # anything committed before the key was visible may have found no holder
                holder.connection.wake()
                self._notify_previous(device, result, notices)
            case _Wake(device):
                owner = _owner(result)
                if owner is not None and owner[0] != self.node_id:
                    line = f"w {device.account_id} {device.device_id}"
                    notices.setdefault(owner[0], []).append(line)
            case _RefreshOne(device, connection_id):
                holder = self._local.get(device)
                if holder is None or holder.connection_id != connection_id:
                    return
                if result == 0:  # another node took the device over and we missed the notice
                    self._replace_local(device, connection_id)
                elif result == 2:  # Redis lost the key: re-registered; re-read the mailbox
                    self._registered.add(connection_id)
                    holder.connection.wake()
            case _:
                pass

    def _notify_previous(
        self, device: DeviceRef, previous: object, notices: dict[str, list[str]]
    ) -> None:
        owner = _owner(previous)
        if owner is None:
            return
        node, connection_id = owner
        if node == self.node_id:
            return  # the local registry already replaced it
        line = f"r {device.account_id} {device.device_id} {connection_id}"
        notices.setdefault(node, []).append(line)

    async def _listen(self) -> None:
        while True:
            pubsub = self._sub.pubsub()
            try:
                await pubsub.subscribe(self._channel, ALL_CHANNEL)
                self.subscribed.set()
                # wake-ups sent while we were not subscribed are lost: re-read every mailbox
                self._wake_all_local()
                self._start_recheck()  # and so are revocations: look for them in the database
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        data = message.get("data")
                        if isinstance(data, bytes):
                            self._handle(data)
            except _FAILURES as exc:
                self._set_degraded(exc)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(*_FAILURES):
                    await pubsub.aclose()
            await asyncio.sleep(self._poll_s)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s if self._degraded else self._refresh_s)
            if self._degraded:
                self._wake_all_local()  # poll the mailboxes while wake-ups may be lost
                self._resend_unsent()  # and try the unpublished revocations again
            self._ops.put_nowait(_Refresh())

    def _set_degraded(self, exc: BaseException) -> None:
        if not self._degraded:
            _log.warning("redis unreachable (%s); polling mailboxes", type(exc).__name__)
            self._degraded = True

    def _set_healthy(self) -> None:
        if self._degraded:
            _log.info("redis reachable again")
            self._degraded = False
            self._wake_all_local()
            self._resend_unsent()

    @property
    def degraded(self) -> bool:
        """Redis was unreachable at the last attempt."""
        return self._degraded

    # -- presence and missed revocations (issue 7 follow-up) -------------------------------

    async def connected(self, devices: Sequence[DeviceRef]) -> set[DeviceRef]:
        """Which of ``devices`` have a live connection on any node (they need no push).

        Devices held here are answered from memory; the others with one pipeline of ``GET``
        of their keys (a key names its holder). While Redis is unreachable, or slower than
        :data:`PRESENCE_TIMEOUT_S`, only this node's connections count: the other devices
        then get a push they may not need rather than miss one. A killed node's devices
        count as connected until their keys expire (``key_ttl_ms``).
        """
        online = {d for d in devices if d in self._local}
        rest = [d for d in dict.fromkeys(devices) if d not in online]
        if not rest or self._degraded:
            return online
        try:
            async with asyncio.timeout(PRESENCE_TIMEOUT_S):
                pipe = self._redis.pipeline(transaction=False)
                for device in rest:
                    pipe.get(device_key(device))
                values = await pipe.execute()
        except _FAILURES:
            return online
        for device, value in zip(rest, values, strict=True):
            owner = _owner(value)
            # a key naming this node without a connection here is being released
            if owner is not None and owner[0] != self.node_id:
                online.add(device)
        return online

    def recheck_after_resubscribe(self, check: LiveCheck) -> None:
        """Each time this node's subscription is established again, hand its live
        connections to ``check`` and close (4003) those it returns.

        Revocations are published on ``kurir:all`` and not stored: one published while this
        node was not subscribed (Redis down, restarted, or the subscription dropped) never
        reaches it. ``check`` looks in the database for what was revoked meanwhile.
        """
        self._recheck = check

    def _keep_unsent(self, batch: Sequence[object]) -> None:
        """Remember the accounts of revocations in a batch that failed (maybe unpublished)."""
        for op in batch:
            if isinstance(op, _Broadcast):
                parts = op.line.split(" ")
                if parts[0] in ("ra", "rd", "ca") and len(parts) >= 3:
                    self._unsent[AccountId(UUID(parts[2]))] = None
        while len(self._unsent) > _MAX_UNSENT:  # the resubscribe re-check still covers them
            del self._unsent[next(iter(self._unsent))]

    def _resend_unsent(self) -> None:
        """Ask every node to re-check the accounts whose revocation may not have gone out.

        Sent as a re-check (``ca``), not as the revocation itself: since then the account
        may have connected again with its new credentials, which must stay connected.
        """
        for account_id in self._unsent:
            self._ops.put_nowait(_Broadcast(f"ca {self.node_id} {account_id}"))
        self._unsent = {}

    def _start_recheck(self, account_id: AccountId | None = None) -> None:
        if self._recheck is None or not self._local:
            return
        live = [
            (device, holder.connection)
            for device, holder in self._local.items()
            if account_id is None or device.account_id == account_id
        ]
        if not live:
            return
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(self._run_recheck(self._recheck, live)))

    async def _run_recheck(
        self, check: LiveCheck, live: list[tuple[DeviceRef, Attachable]]
    ) -> None:
        try:
            revoked = await check(live)
        except Exception:  # the database failed: the next resubscription tries again
            _log.exception("re-checking live connections failed")
            return
        for device, connection in revoked:
            holder = self._local.get(device)
            if holder is not None and holder.connection is connection:
                self._revoke_local_device(device)


def _owner(value: object) -> tuple[str, str] | None:
    if not isinstance(value, bytes):
        return None
    parts = value.decode("ascii", "replace").split(" ")
    if len(parts) != 2:
        return None
    return parts[0], parts[1]
