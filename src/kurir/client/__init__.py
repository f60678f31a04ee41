"""kurir.client: the SDK every app embeds (see docs/architecture.md, "The client SDK").

The public API is `Client` (in `kurir.client.client`), the events it yields
(`kurir.client.events`), the content kinds it sends and receives (`kurir.client.content`) and
its errors (`kurir.client.errors`); they are re-exported here.
"""

from kurir.client.atrest import KeyFile, KeyProvider, Passphrase, WrongKeyError
from kurir.client.client import DEV_CODE, Client
from kurir.client.content import (
    Content,
    Delete,
    Edit,
    GroupAction,
    GroupChange,
    GroupMessage,
    MessageRef,
    Reaction,
    Receipt,
    ReceiptKind,
    SentTranscript,
    Text,
    Typing,
)
from kurir.client.errors import (
    AlreadyRegisteredError,
    ClientError,
    IdentityChangedError,
    InvalidAddressError,
    NotRegisteredError,
    PeerContentError,
    ServerError,
    StoreError,
    TransportError,
    UnknownAddressError,
    UsageError,
)
from kurir.client.events import (
    DeliveryEvent,
    Event,
    ExpiredEvent,
    IdentityChangedEvent,
    MessageEvent,
    MessageId,
    UndecryptableEvent,
    UnreadableEvent,
)
from kurir.client.groups import Groups

__all__ = [
    "DEV_CODE",
    "AlreadyRegisteredError",
    "Client",
    "ClientError",
    "Content",
    "Delete",
    "DeliveryEvent",
    "Edit",
    "Event",
    "ExpiredEvent",
    "GroupAction",
    "GroupChange",
    "GroupMessage",
    "Groups",
    "IdentityChangedError",
    "IdentityChangedEvent",
    "InvalidAddressError",
    "KeyFile",
    "KeyProvider",
    "MessageEvent",
    "MessageId",
    "MessageRef",
    "NotRegisteredError",
    "Passphrase",
    "PeerContentError",
    "Reaction",
    "Receipt",
    "ReceiptKind",
    "SentTranscript",
    "ServerError",
    "StoreError",
    "Text",
    "TransportError",
    "Typing",
    "UndecryptableEvent",
    "UnknownAddressError",
    "UnreadableEvent",
    "UsageError",
    "WrongKeyError",
]
