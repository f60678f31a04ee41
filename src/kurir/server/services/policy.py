"""Policy: blocks, cross-app reachability and message requests, enforced by the server.

This module owns who may reach whom (DESIGN.md, "Policy, enforced by the server"):

- **Blocks** are by account, so blocking an address blocks that person whichever app they
  use. A blocked sender is never told: its sends are answered ``ok`` and dropped, so it sees
  "sent" and never "delivered" (no envelope, hence no receipt).
- **Reachability** says who from *other apps* may start a conversation: ``everyone``,
  ``contacts`` (the owner's uploaded address book) or ``nobody``. Within the same app any
  registered user may write first, as in the reference apps.
- **Message requests**: an allowed first message from a stranger is delivered but its
  conversation is a *request* until the owner accepts (or replies), declines (later messages
  are dropped silently, and it stays declined until the owner writes or accepts) or blocks.

The rule itself is the pure function :func:`decide`; :class:`PolicyService` only gathers its
inputs from the stores. Groups call :meth:`PolicyService.may_reach` and
:meth:`PolicyService.is_blocked`. It knows nothing of HTTP or sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable

from kurir.server.config import AppCatalogue
from kurir.server.errors import Refused
from kurir.server.storage.metadata_protocols import MetadataStore, PolicyViewReader
from kurir.server.storage.metadata_records import (
    BlockRecord,
    ConversationRecord,
    ConversationState,
    PolicyView,
    Reachability,
)
from kurir.server.storage.protocols import AccountStore
from kurir.server.types import AccountId, Clock, DeviceRef
from kurir.wire.address import Address
from kurir.wire.errors import ErrorCode

__all__ = [
    "CachedPolicyViews",
    "Decision",
    "GroupAddPolicy",
    "PolicyService",
    "SendHooks",
    "Verdict",
    "contact_keys",
    "decide",
]


_MAX_CACHED_ADDRESSES: Final = 100_000


class Verdict(StrEnum):
    """What happens to a message from one account to another."""

    DELIVER = "deliver"
    REQUEST = "request"
    """Delivered, and the recipient's side of the conversation is a message request."""
    DROP = "drop"
    """Answered ``ok`` to the sender, enqueued nowhere (the sender is never told)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict and its reason (for tests and the owner's own views; never sent to a peer)."""

    verdict: Verdict
    reason: str

    @property
    def allowed(self) -> bool:
        """Whether anything reaches the recipient."""
        return self.verdict is not Verdict.DROP


# every decision there is, made once (they are frozen): one per send otherwise
_OWN_ACCOUNT: Final = Decision(Verdict.DELIVER, "own account")
_BLOCKED: Final = Decision(Verdict.DROP, "blocked")
_DECLINED: Final = Decision(Verdict.DROP, "declined")
_ACCEPTED: Final = Decision(Verdict.DELIVER, "accepted")
_CONTACT: Final = Decision(Verdict.DELIVER, "contact")
_UNREACHABLE: Final = {r: Decision(Verdict.DROP, f"reachability {r.value}") for r in Reachability}
_STRANGER: Final = Decision(Verdict.REQUEST, "stranger")
_UNKNOWN_ACCOUNT: Final = Decision(Verdict.DROP, "unknown account")


def decide(
    *,
    same_account: bool,
    same_app: bool,
    reachability: Reachability,
    blocked: bool,
    state: ConversationState | None,
    is_contact: bool,
) -> Decision:
    """The reachability rule (pure).

    Args:
        same_account: Sender and recipient are one account (its own devices).
        same_app: Both accounts belong to the same app.
        reachability: The recipient's setting for senders of other apps.
        blocked: The recipient blocked the sender.
        state: The recipient's side of the conversation with the sender, if any.
        is_contact: The sender is in the recipient's uploaded address book.
    """
    if same_account:
        return _OWN_ACCOUNT
    if blocked:
        return _BLOCKED
    if state is ConversationState.DECLINED:
        return _DECLINED
    if state is ConversationState.ACCEPTED or is_contact:
        return _ACCEPTED if state else _CONTACT
    if not same_app and reachability is not Reachability.EVERYONE:
        return _UNREACHABLE[reachability]
    return _STRANGER


def contact_keys(address: Address, catalogue: AppCatalogue) -> list[str]:
    """The address-book entries that name ``address``: the address, and for phone-number
    apps also the bare E.164 number (address books hold numbers)."""
    keys = [str(address)]
    app = catalogue.get(address.app)
    if app is not None and app.identifier_kind.value == "phone":
        keys.append(address.identifier)
    return keys


@runtime_checkable
class CachedPolicyViews(Protocol):
    """A metadata store that can answer a policy view from memory without a coroutine
    (``kurir.server.storage.sqlite_cache.CachedMetadataStore``): :meth:`PolicyService.
    may_reach` runs once per send, and most of its views are cached."""

    def cached_policy_view(
        self, owner: AccountId, peer: AccountId, peer_keys: Sequence[str]
    ) -> PolicyView | None:
        """The view ``policy_view`` would return, if it is at hand; else ``None``."""
        ...


class SendHooks(Protocol):
    """What the message service asks before and tells after a send to another account."""

    async def admit(self, sender: AccountId, recipient: AccountId) -> Decision:
        """Decide whether a message may reach ``recipient``."""
        ...

    async def accepted(
        self,
        sender: AccountId,
        recipient: AccountId,
        decision: Decision,
        woken: Sequence[DeviceRef],
    ) -> None:
        """A send was committed; ``woken`` are the devices that got a new envelope."""
        ...


class PolicyService:
    """Blocks, reachability and message requests.

    Args:
        store: The metadata store.
        accounts: To resolve the apps and addresses of accounts.
        catalogue: The app catalogue (identifier kinds).
        default_reachability: The setting of accounts that never chose one.
        clock: Time source.
    """

    def __init__(
        self,
        store: MetadataStore,
        accounts: AccountStore,
        catalogue: AppCatalogue,
        *,
        default_reachability: Reachability,
        clock: Clock,
    ) -> None:
        self._store = store
        self._views = store if isinstance(store, PolicyViewReader) else None  # checked once
        self._cached = store if isinstance(store, CachedPolicyViews) else None
        self._accounts = accounts
        self._catalogue = catalogue
        self.default_reachability = default_reachability
        self._clock = clock
        # by ``UUID.int``: a UUID hashes in Python code, and may_reach runs once per send
        self._addresses: dict[int, Address] = {}
        # the address-book keys naming each sender, derived from its (permanent) address
        self._keys: dict[int, tuple[str, ...]] = {}

    async def resolve(self, address: Address) -> AccountId | None:
        """The account registered at ``address``, or ``None``."""
        found = await self._accounts.lookup([address])
        return found[address][0] if address in found else None

    async def address_of(self, account_id: AccountId) -> Address | None:
        """The address of an account, or ``None``.

        Cached: an account keeps its address for good (re-registration keeps the id, and
        accounts are never deleted), so the send path reads it once per account.
        """
        address = self._addresses.get(account_id.int)
        if address is not None:
            return address
        account = await self._accounts.get_account(account_id)
        if account is None:
            return None
        if len(self._addresses) >= _MAX_CACHED_ADDRESSES:
            self._addresses.pop(next(iter(self._addresses)))
        self._addresses[account_id.int] = account.address
        return account.address

    async def is_blocked(self, owner: AccountId, target: AccountId) -> bool:
        """Whether ``owner`` blocked ``target``."""
        return await self._store.is_blocked(owner, target)

    async def may_reach(self, sender: AccountId, recipient: AccountId) -> Decision:
        """Whether a message from ``sender`` reaches ``recipient``, and how.

        Unknown accounts get ``DROP`` (reason ``unknown account``).
        """
        if sender.int == recipient.int:
            return _OWN_ACCOUNT
        # the cached addresses and views without a coroutine each: once per send
        sender_address = self._addresses.get(sender.int) or await self.address_of(sender)
        recipient_address = self._addresses.get(recipient.int) or await self.address_of(recipient)
        if sender_address is None or recipient_address is None:
            return _UNKNOWN_ACCOUNT
        keys = self._keys.get(sender.int)
        if keys is None:
            keys = tuple(contact_keys(sender_address, self._catalogue))
            if len(self._keys) >= _MAX_CACHED_ADDRESSES:
                self._keys.pop(next(iter(self._keys)))
            self._keys[sender.int] = keys
        cached = self._cached
        view = None if cached is None else cached.cached_policy_view(recipient, sender, keys)
        if view is None:
            if self._views is not None:
                view = await self._views.policy_view(recipient, sender, keys)
            else:
                view = await self._slow_view(recipient, sender, keys)
        return decide(
            same_account=False,
            same_app=sender_address.app == recipient_address.app,
            reachability=view.reachability or self.default_reachability,
            blocked=view.blocked,
            state=view.state,
            is_contact=view.is_contact,
        )

    async def _slow_view(
        self, owner: AccountId, peer: AccountId, keys: Sequence[str]
    ) -> PolicyView:
        stored = await self._store.stored_settings(owner)
        row = await self._store.conversation(owner, peer)
        return PolicyView(
            None if stored is None else stored.reachability,
            await self._store.is_blocked(owner, peer),
            None if row is None else row.state,
            await self._store.has_contact(owner, keys),
        )

    async def may_discover(self, caller: AccountId, target: AccountId) -> bool:
        """Whether ``target`` shows up for ``caller`` in the directory and discovery.

        Hidden exactly when the target's reachability keeps the caller out (``nobody``, or
        ``contacts`` and the caller is not one). A block alone does not hide the blocker:
        the blocked account must not learn of the block.
        """
        decision = await self.may_reach(caller, target)
        return decision.allowed or decision.reason in ("blocked", "declined")

    async def may_fetch_keys(self, caller: AccountId, target: AccountId) -> bool:
        """Whether ``caller`` may take prekey bundles of ``target`` (not blocked, reachable)."""
        return (await self.may_reach(caller, target)).allowed

    async def block(self, owner: AccountId, target: AccountId) -> None:
        """Block ``target`` (any app). Blocking oneself is refused.

        Raises:
            Refused: ``invalid_request`` for oneself, ``unknown_account`` for no such account.
        """
        if owner == target:
            raise Refused(ErrorCode.INVALID_REQUEST, "cannot block yourself")
        if await self._accounts.get_account(target) is None:
            raise Refused(ErrorCode.UNKNOWN_ACCOUNT, "no such account")
        await self._store.block(owner, target, now=self._clock.now_ms())

    async def unblock(self, owner: AccountId, target: AccountId) -> bool:
        """Lift a block; return whether there was one."""
        return await self._store.unblock(owner, target)

    async def blocks(self, owner: AccountId) -> list[BlockRecord]:
        """The owner's blocks."""
        return await self._store.blocks(owner)

    async def requests(self, owner: AccountId) -> list[ConversationRecord]:
        """The owner's pending message requests, most recent first."""
        rows = await self._store.conversations(owner)
        return [c for c in rows if c.state is ConversationState.REQUEST]

    async def answer_request(self, owner: AccountId, peer: AccountId, *, accept: bool) -> None:
        """Accept or decline a pending (or, to change one's mind, a declined) request.

        Raises:
            Refused: ``not_found`` when there is no such request.
        """
        row = await self._store.conversation(owner, peer)
        if row is None or row.state is ConversationState.ACCEPTED:
            raise Refused(ErrorCode.NOT_FOUND, "no message request from that account")
        state = ConversationState.ACCEPTED if accept else ConversationState.DECLINED
        await self._store.set_state(owner, peer, state, now=self._clock.now_ms())


class GroupAddPolicy:
    """Groups' add policy (issue 6): adding someone to a group is refused when they blocked
    the adder or their reachability would drop a first message from the adder. Unknown
    accounts are let through so the group store reports ``unknown_account`` itself.

    Args:
        policy: The policy service.
    """

    def __init__(self, policy: PolicyService) -> None:
        self._policy = policy

    async def may_add(self, actor: AccountId, target: AccountId) -> bool:
        """Whether ``actor`` may put ``target`` into a group."""
        decision = await self._policy.may_reach(actor, target)
        return decision.allowed or decision.reason == "unknown account"
