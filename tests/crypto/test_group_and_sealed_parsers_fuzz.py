"""Fuzzing of the Sender Key, sealed-sender and fingerprint parsers.

Any input, random or a mutation of a valid message, either parses or raises the documented
error of that parser, never anything else (no IndexError, no library exception).
"""

from __future__ import annotations

import contextlib
import random
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from kurir.crypto.address import DeviceId, ProtocolAddress
from kurir.crypto.curve import KeyPair
from kurir.crypto.errors import (
    InvalidKeyError,
    InvalidMessageError,
    InvalidSealedSenderError,
    InvalidStateError,
    RemoteProtocolError,
)
from kurir.crypto.fingerprint import FingerprintParsingError, ScannableFingerprint
from kurir.crypto.messages import CiphertextMessageType
from kurir.crypto.sealed_sender import (
    MultiRecipientDestination,
    UnidentifiedSenderMessageContent,
    sealed_sender_decrypt_to_usmc,
    sealed_sender_encrypt_v1,
    sealed_sender_multi_recipient_encrypt,
)
from kurir.crypto.sender_certificate import SenderCertificate, ServerCertificate
from kurir.crypto.sender_key_record import SenderKeyRecord
from kurir.crypto.sender_keys import (
    InMemorySenderKeyStore,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
)

_RNG = random.Random(99).randbytes
_ALICE = ProtocolAddress("alice", DeviceId(1))
_GROUP = uuid.UUID(int=7)
_STORE = InMemorySenderKeyStore()
_SKDM = create_sender_key_distribution_message(_ALICE, _GROUP, _STORE, _RNG)
_MESSAGE = group_encrypt(_STORE, _ALICE, _GROUP, b"fuzz me", _RNG)
_RECORD = _STORE.load_sender_key(_ALICE, _GROUP)
_ROOT = KeyPair.generate(_RNG)
_SERVER = KeyPair.generate(_RNG)
_SERVER_CERTIFICATE = ServerCertificate.create(3, _SERVER.public_key, _ROOT.private_key, _RNG)
_SENDER = KeyPair.generate(_RNG)
_RECIPIENT = KeyPair.generate(_RNG)
_CERTIFICATE = SenderCertificate.create(
    sender_uuid=str(uuid.UUID(int=1)),
    sender_device_id=DeviceId(1),
    key=_SENDER.public_key,
    expiration=datetime(2030, 1, 1, tzinfo=UTC) + timedelta(milliseconds=123),
    signer=_SERVER_CERTIFICATE,
    signer_key=_SERVER.private_key,
    rng=_RNG,
    sender_e164="+15550001",
)
_USMC = UnidentifiedSenderMessageContent.create(
    CiphertextMessageType.SENDERKEY, _CERTIFICATE, _MESSAGE.serialized, group_id=b"g"
)
_SEALED = sealed_sender_encrypt_v1(_RECIPIENT.public_key, _USMC, _SENDER, _RNG)
_SENT_V2 = sealed_sender_multi_recipient_encrypt(
    [
        MultiRecipientDestination(
            ProtocolAddress(str(uuid.UUID(int=2)), DeviceId(1)), 5, _RECIPIENT.public_key
        )
    ],
    _USMC,
    _SENDER,
    _RNG,
)
# One recipient with one device: version, count, service id (17) and device (3) precede C || AT.
_RECEIVED_V2 = b"\x22" + _SENT_V2[1 + 1 + 17 + 3 :]
_SCANNABLE = ScannableFingerprint(2, b"\x01" * 32, b"\x02" * 32).serialize()


@st.composite
def _mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid encoding with a few bytes flipped, cut or inserted."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position:]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


def _inputs(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), _mutated(valid))


@settings(max_examples=300, deadline=None)
@given(data=_inputs(_SKDM.serialized))
def test_distribution_message_parser(data: bytes) -> None:
    with contextlib.suppress(InvalidMessageError, InvalidKeyError):
        SenderKeyDistributionMessage.deserialize(data)


@settings(max_examples=300, deadline=None)
@given(data=_inputs(_MESSAGE.serialized))
def test_sender_key_message_parser_and_decrypt(data: bytes) -> None:
    store = InMemorySenderKeyStore()
    process_sender_key_distribution_message(_ALICE, _SKDM, store)
    before = store.load_sender_key(_ALICE, _GROUP)
    with contextlib.suppress(InvalidMessageError):
        SenderKeyMessage.deserialize(data)
    try:
        plaintext = group_decrypt(data, store, _ALICE)
    except RemoteProtocolError:
        assert store.load_sender_key(_ALICE, _GROUP) == before
    else:
        assert plaintext == b"fuzz me"


@settings(max_examples=200, deadline=None)
@given(data=_inputs(b"\x01" + (_RECORD.to_libsignal() if _RECORD else b"")))
def test_sender_key_record_parser(data: bytes) -> None:
    with contextlib.suppress(InvalidStateError):
        SenderKeyRecord.deserialize(data)


@settings(max_examples=300, deadline=None)
@given(data=_inputs(_CERTIFICATE.serialized))
def test_sender_certificate_parser(data: bytes) -> None:
    with contextlib.suppress(InvalidSealedSenderError):
        SenderCertificate.deserialize(data)


@settings(max_examples=200, deadline=None)
@given(data=_inputs(_SERVER_CERTIFICATE.serialized))
def test_server_certificate_parser(data: bytes) -> None:
    with contextlib.suppress(InvalidSealedSenderError):
        ServerCertificate.deserialize(data)


@settings(max_examples=300, deadline=None)
@given(data=_inputs(_USMC.serialized))
def test_usmc_parser(data: bytes) -> None:
    with contextlib.suppress(InvalidSealedSenderError):
        UnidentifiedSenderMessageContent.deserialize(data)


@settings(max_examples=300, deadline=None)
@given(data=_inputs(_SEALED))
def test_sealed_envelope_parser(data: bytes) -> None:
    try:
        usmc = sealed_sender_decrypt_to_usmc(data, _RECIPIENT)
    except InvalidSealedSenderError:
        pass
    else:
        assert usmc.serialized == _USMC.serialized


@settings(max_examples=300, deadline=None)
@given(data=_inputs(_RECEIVED_V2))
def test_sealed_v2_envelope_parser(data: bytes) -> None:
    try:
        usmc = sealed_sender_decrypt_to_usmc(data, _RECIPIENT)
    except InvalidSealedSenderError:
        pass
    else:
        assert usmc.serialized == _USMC.serialized


def test_v2_fixture_opens() -> None:
    assert sealed_sender_decrypt_to_usmc(_RECEIVED_V2, _RECIPIENT).serialized == _USMC.serialized


@settings(max_examples=200, deadline=None)
@given(data=_inputs(_SCANNABLE))
def test_scannable_fingerprint_parser(data: bytes) -> None:
    with contextlib.suppress(FingerprintParsingError):
        ScannableFingerprint.deserialize(data)
