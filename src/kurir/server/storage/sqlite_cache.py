"""The SQLite engine's read cache of the send path: device lists and policy views.

This module owns what a ``send`` reads besides the mailbox: the recipient's device list
(``AccountStore.list_devices``) and the policy facts (``PolicyViewReader.policy_view``:
reachability, block, conversation state, address book). On the embedded engine one process
owns the database file, so every change to those rows goes through this process's
:class:`WatchedDatabase`, and the cache can be exact:

- Every :meth:`WatchedDatabase.write` bumps a generation when it returns: registering,
  linking or removing devices, blocks, settings, contacts, request answers and everything
  else that is not on the message path. A cached value read under an older generation is
  never served again, so a change takes effect for every read that starts after the change
  returned (a block stops the next send).
- The message path writes through :func:`write_quiet` (mailboxes, keys,
  groups: they change no cached row), except the conversation counts written with an
  enqueue: they may create or accept a conversation. What such an enqueue does to the
  conversation states is known without reading them (``record_send_in``: the sender's side
  becomes accepted, the recipient's side is created in the send's state if it did not
  exist), so the enqueue updates the cached views of that pair in place
  (:meth:`ReadCache.sent`) instead of forgetting them: the next send between them needs no
  read. It does so only if nothing else that could touch the pair returned while it ran (a
  write, another enqueue of the pair; the token taken before it tells); otherwise it forgets
  the pair's views (:meth:`ReadCache.forget_pair`). Either way a view read while the enqueue
  ran is not kept.

It knows nothing of SQL: the engine's stores fill it. PostgreSQL deployments share the
database between nodes and do not use it.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

from kurir.server.storage.metadata_records import ConversationState, PolicyView
from kurir.server.storage.metadata_sqlite import SqliteMetadataStore
from kurir.server.storage.records import DeviceRecord, SendCount
from kurir.server.storage.sqlite_db import Database
from kurir.server.types import AccountId

__all__ = ["CachedMetadataStore", "ReadCache", "WatchedDatabase", "write_quiet"]

P = ParamSpec("P")
T = TypeVar("T")
_MAX_ENTRIES: Final = 100_000
"""Beyond this many cached values the cache starts over (a bound, not an eviction policy)."""


class WatchedDatabase(Database):
    """A :class:`Database` whose writes advance :attr:`generation` unless written quietly.

    The generation lives in this (the server) process: it moves when a write's outcome comes
    back from the writer process, which is when the caller's ``await`` returns.
    """

    generation: int = 0

    async def write(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """See :meth:`Database.write`; then invalidates every cached read."""
        try:
            return await super().write(fn, *args, **kwargs)
        finally:
            self.generation += 1


def write_quiet(
    db: Database,
    fn: Callable[Concatenate[sqlite3.Connection, P], T],
    /,
    *args: P.args,
    **kwargs: P.kwargs,
) -> Coroutine[Any, Any, T]:
    """Write ``fn(conn, *args, **kwargs)`` without invalidating the cache (it changes no
    cached row): :meth:`Database.write` itself, past :meth:`WatchedDatabase.write` (not a
    coroutine of its own: one frame less on each of the message path's writes); await the
    result."""
    return Database.write(db, fn, *args, **kwargs)


_Token = tuple[int, int, int]
"""What a read or an enqueue started under: (generation, epoch of the cache, pair version)."""
_ACCEPTED: Final = ConversationState.ACCEPTED


class ReadCache:
    """Device lists by account and policy views by (owner, peer), valid for one generation.

    Entries are keyed by the accounts' UUIDs as integers (``UUID.int``): a ``UUID`` hashes and
    compares in Python code, and every ``send`` looks up three or four entries.

    Args:
        db: The watched database whose generation decides what is still valid.
    """

    def __init__(self, db: WatchedDatabase) -> None:
        self._db = db
        self._generation = db.generation
        self._epoch = 0  # moves whenever the cache starts over (pair versions restart at 0)
        self._devices: dict[int, tuple[DeviceRecord, ...]] = {}
        self._views: dict[tuple[int, int], tuple[tuple[str, ...], PolicyView]] = {}
        # moved for both directions at once whenever an enqueue changed the pair's conversation
        self._pair_versions: dict[tuple[int, int], int] = {}

    def _fresh(self) -> None:
        if self._generation != self._db.generation:
            self._start_over()

    def _make_room(self) -> None:
        """Before adding an entry: start over beyond :data:`_MAX_ENTRIES` (which also refuses
        the value being added, read under the old epoch)."""
        if len(self._devices) + len(self._views) + len(self._pair_versions) >= _MAX_ENTRIES:
            self._start_over()

    def _start_over(self) -> None:
        self._generation = self._db.generation
        self._epoch += 1
        self._devices.clear()
        self._views.clear()
        self._pair_versions.clear()

    def _current(self, token: _Token, pair: tuple[int, int]) -> bool:
        return (
            token[0] == self._generation
            and token[1] == self._epoch
            and token[2] == self._pair_versions.get(pair, 0)
        )

    def devices(self, account_id: AccountId) -> list[DeviceRecord] | None:
        """The cached device list, or ``None`` (read it, then :meth:`put_devices`)."""
        self._fresh()
        found = self._devices.get(account_id.int)
        return None if found is None else list(found)

    def token(self, owner: AccountId | None = None, peer: AccountId | None = None) -> _Token:
        """Take before a read; :meth:`put_devices` / :meth:`put_view` keep the value only if
        nothing that could change it happened since. Take before an enqueue that counts a
        send from ``owner`` to ``peer`` too, for :meth:`sent`."""
        self._fresh()
        if owner is None or peer is None:
            return (self._generation, self._epoch, 0)
        return (self._generation, self._epoch, self._pair_versions.get((owner.int, peer.int), 0))

    def put_devices(
        self, account_id: AccountId, devices: Sequence[DeviceRecord], token: _Token
    ) -> None:
        """Keep a device list read under ``token``."""
        self._fresh()
        self._make_room()
        if token[0] == self._generation and token[1] == self._epoch:
            self._devices[account_id.int] = tuple(devices)

    def view(self, owner: AccountId, peer: AccountId, keys: Sequence[str]) -> PolicyView | None:
        """The cached policy view of ``owner`` towards ``peer`` (with ``peer``'s address-book
        keys ``keys``), or ``None``."""
        self._fresh()
        found = self._views.get((owner.int, peer.int))
        if found is None or found[0] != tuple(keys):
            return None
        return found[1]

    def put_view(
        self,
        owner: AccountId,
        peer: AccountId,
        keys: Sequence[str],
        view: PolicyView,
        token: _Token,
    ) -> None:
        """Keep a policy view read under ``token``."""
        self._fresh()
        self._make_room()
        pair = (owner.int, peer.int)
        if self._current(token, pair):
            self._views[pair] = (tuple(keys), view)

    def sent(self, count: SendCount, token: _Token) -> None:
        """An enqueue that wrote ``count`` changed a conversation state of its pair (it
        created a side, or accepted the sender's); ``token`` was taken with
        :meth:`token` (sender, recipient) before the enqueue was submitted.

        The enqueue left the sender's side accepted and the recipient's side as it was, or
        in ``count.recipient_state`` if it had none (``record_send_in``: this mirrors it);
        the cached views of the pair follow. A cached view of the recipient's side without a
        state may have been read before the enqueue ran, or after: either way that side is
        now in that state, since nothing else that creates it returned meanwhile (the writer
        answers in commit order and the loop resumes the callers in that order, so whatever
        committed before this enqueue has returned before it). If a write or another enqueue
        of the pair returned meanwhile, the order of their effects is not known here: the
        pair's views are forgotten instead. Views read while the enqueue ran are not kept
        either way.
        """
        self._fresh()
        sender, recipient = count.sender.int, count.recipient.int
        forward = (sender, recipient)
        backward = (recipient, sender)
        if not self._current(token, forward):
            self._forget(forward, backward)
            return
        views = self._views
        found = views.get(forward)
        if found is not None and found[1].state is not _ACCEPTED:
            views[forward] = (found[0], dataclasses.replace(found[1], state=_ACCEPTED))
        found = views.get(backward)
        if found is not None and found[1].state is None:
            views[backward] = (
                found[0],
                dataclasses.replace(found[1], state=count.recipient_state),
            )
        self._bump(forward, backward)

    def forget_pair(self, a: AccountId, b: AccountId) -> None:
        """The conversation between ``a`` and ``b`` changed (both sides): drop their views and
        refuse views of the pair read before now."""
        self._fresh()
        self._forget((a.int, b.int), (b.int, a.int))

    def _forget(self, pair: tuple[int, int], other: tuple[int, int]) -> None:
        self._views.pop(pair, None)
        self._views.pop(other, None)
        self._bump(pair, other)

    def _bump(self, pair: tuple[int, int], other: tuple[int, int]) -> None:
        self._make_room()
        versions = self._pair_versions
        version = max(versions.get(pair, 0), versions.get(other, 0)) + 1  # never back
        versions[pair] = version
        versions[other] = version


class CachedMetadataStore(SqliteMetadataStore):
    """:class:`SqliteMetadataStore` whose policy views come from a :class:`ReadCache`.

    Args:
        db: The watched database (all of this store's writes invalidate the cache).
        cache: The engine's read cache.
    """

    def __init__(self, db: WatchedDatabase, cache: ReadCache) -> None:
        super().__init__(db)
        self._cache = cache

    def cached_policy_view(
        self, owner: AccountId, peer: AccountId, peer_keys: Sequence[str]
    ) -> PolicyView | None:
        """The policy view if it is cached (:meth:`policy_view` without a coroutine), else
        ``None``: see :class:`kurir.server.services.policy.CachedPolicyViews`."""
        return self._cache.view(owner, peer, peer_keys)

    async def policy_view(
        self, owner: AccountId, peer: AccountId, peer_keys: Sequence[str]
    ) -> PolicyView:
        """See :class:`~kurir.server.storage.metadata_protocols.PolicyViewReader`."""
        found = self._cache.view(owner, peer, peer_keys)
        if found is not None:
            return found
        token = self._cache.token(owner, peer)
        view = await super().policy_view(owner, peer, peer_keys)
        self._cache.put_view(owner, peer, peer_keys, view, token)
        return view
