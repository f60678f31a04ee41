"""libsignal's protobuf messages as Google ``protobuf`` classes (upb, C), built at import time.

Owns: the message classes of libsignal's ``proto/storage.proto`` (session, prekey, identity and
sender key records), ``proto/wire.proto`` (`SignalMessage`, `PreKeySignalMessage`, the two
Sender Key messages), ``proto/sealed_sender.proto`` (certificates, the sealed envelope and its
content) and ``proto/fingerprint.proto`` (scannable safety numbers), and
`parse`, the one way `kurir.crypto` turns bytes into one of them. Knows nothing of what the
fields mean: the modules that own those formats do (`kurir.crypto.session`, `messages`,
`prekeys`, `sender_key_record`, `sender_keys`, `sender_certificate`, `sealed_sender`,
`fingerprint`).

Why descriptors built here rather than generated ``_pb2`` modules: the schemas are small and
fixed (libsignal never reuses a field number), so writing them as data keeps them in one
readable place next to the code that uses them, with no ``protoc`` step, no generated file to
keep in sync and no runtime-version check between generated code and the installed library.
The classes come from ``message_factory.GetMessageClass`` and are the same upb-backed classes
``protoc`` output would give.

Field presence follows the ``.proto`` files: ``storage.proto`` is proto3 (zero values are not
written; ``PendingPreKey.pre_key_id`` is ``optional``), the others are proto2 (every field is
optional with explicit presence). upb writes known fields in field-number order, as prost
(libsignal) does for messages without oneofs, so encodings match libsignal's byte for byte.
(prost writes oneof members after the plain fields: for ``SenderCertificate.Certificate`` that is
the same order as long as the signer is the embedded certificate (5) and the sender the UUID
string (6), the only form kurir writes.)

Strictness: upb refuses truncated fields, over-long varints, field number 0 and unterminated
groups, as prost does. Where upb is lenient and prost is not, `parse` adds the check: upb keeps
a known field with the wrong wire type, or a group, as an unknown field; prost refuses a known
field with the wrong wire type, so `parse` refuses both at the top level of the message (what
pure-protobuf plus our own scanner checked before).
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

_F = descriptor_pb2.FieldDescriptorProto
_BYTES: Final = _F.TYPE_BYTES
_UINT32: Final = _F.TYPE_UINT32
_INT32: Final = _F.TYPE_INT32
_UINT64: Final = _F.TYPE_UINT64
_FIXED64: Final = _F.TYPE_FIXED64
_MESSAGE: Final = _F.TYPE_MESSAGE
_REPEATED: Final = "repeated"
_OPTIONAL: Final = "optional"
_ONEOF: Final = "oneof:"

# (name, number, type, message type name or None, label): label is "" (proto3 implicit
# presence / proto2 optional), "repeated", "optional" (proto3 explicit presence) or
# "oneof:<name>" (a member of that oneof).
_Field = tuple[str, int, int, str | None, str]


def _message(container: Any, name: str, fields: list[_Field]) -> Any:
    """Adds a ``DescriptorProto`` to `container` (a file's or a message's list) and returns it,
    so that nested messages can be added to its ``nested_type``."""
    message = container.add(name=name)
    for field_name, number, field_type, type_name, label in fields:
        field = message.field.add(name=field_name, number=number, type=field_type)
        field.label = _F.LABEL_REPEATED if label == _REPEATED else _F.LABEL_OPTIONAL
        if type_name is not None:
            field.type_name = type_name
        if label == _OPTIONAL:
            # proto3 `optional`: a synthetic one-field oneof named "_<field>"
            field.proto3_optional = True
            field.oneof_index = len(message.oneof_decl)
            message.oneof_decl.add(name=f"_{field_name}")
        elif label.startswith(_ONEOF):
            oneof = label.removeprefix(_ONEOF)
            names = [decl.name for decl in message.oneof_decl]
            if oneof not in names:
                message.oneof_decl.add(name=oneof)
                names.append(oneof)
            field.oneof_index = names.index(oneof)
    return message


def _storage_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="kurir/libsignal/storage.proto", package="signal.proto.storage", syntax="proto3"
    )
    session = ".signal.proto.storage.SessionStructure"
    chain = f"{session}.Chain"
    structure = _message(
        file.message_type,
        "SessionStructure",
        [
            ("session_version", 1, _UINT32, None, ""),
            ("local_identity_public", 2, _BYTES, None, ""),
            ("remote_identity_public", 3, _BYTES, None, ""),
            ("root_key", 4, _BYTES, None, ""),
            ("previous_counter", 5, _UINT32, None, ""),
            ("sender_chain", 6, _MESSAGE, chain, ""),
            ("receiver_chains", 7, _MESSAGE, chain, _REPEATED),
            ("pending_pre_key", 9, _MESSAGE, f"{session}.PendingPreKey", ""),
            ("remote_registration_id", 10, _UINT32, None, ""),
            ("local_registration_id", 11, _UINT32, None, ""),
            ("alice_base_key", 13, _BYTES, None, ""),
            ("pending_kyber_pre_key", 14, _MESSAGE, f"{session}.PendingKyberPreKey", ""),
            ("pq_ratchet_state", 15, _BYTES, None, ""),
        ],
    )
    chain_message = _message(
        structure.nested_type,
        "Chain",
        [
            ("sender_ratchet_key", 1, _BYTES, None, ""),
            ("sender_ratchet_key_private", 2, _BYTES, None, ""),
            ("chain_key", 3, _MESSAGE, f"{chain}.ChainKey", ""),
            ("message_keys", 4, _MESSAGE, f"{chain}.MessageKey", _REPEATED),
        ],
    )
    _message(
        chain_message.nested_type,
        "ChainKey",
        [("index", 1, _UINT32, None, ""), ("key", 2, _BYTES, None, "")],
    )
    _message(
        chain_message.nested_type,
        "MessageKey",
        [
            ("index", 1, _UINT32, None, ""),
            ("cipher_key", 2, _BYTES, None, ""),
            ("mac_key", 3, _BYTES, None, ""),
            ("iv", 4, _BYTES, None, ""),
            ("seed", 5, _BYTES, None, ""),
        ],
    )
    _message(
        structure.nested_type,
        "PendingPreKey",
        [
            ("pre_key_id", 1, _UINT32, None, _OPTIONAL),
            ("base_key", 2, _BYTES, None, ""),
            ("signed_pre_key_id", 3, _INT32, None, ""),
            ("timestamp", 4, _UINT64, None, ""),
        ],
    )
    _message(
        structure.nested_type,
        "PendingKyberPreKey",
        [("pre_key_id", 1, _UINT32, None, ""), ("ciphertext", 2, _BYTES, None, "")],
    )
    _message(
        file.message_type,
        "RecordStructure",
        [
            ("current_session", 1, _MESSAGE, session, ""),
            ("previous_sessions", 2, _BYTES, None, _REPEATED),
        ],
    )
    _message(
        file.message_type,
        "PreKeyRecordStructure",
        [
            ("id", 1, _UINT32, None, ""),
            ("public_key", 2, _BYTES, None, ""),
            ("private_key", 3, _BYTES, None, ""),
        ],
    )
    _message(
        file.message_type,
        "SignedPreKeyRecordStructure",
        [
            ("id", 1, _UINT32, None, ""),
            ("public_key", 2, _BYTES, None, ""),
            ("private_key", 3, _BYTES, None, ""),
            ("signature", 4, _BYTES, None, ""),
            ("timestamp", 5, _FIXED64, None, ""),
        ],
    )
    _message(
        file.message_type,
        "IdentityKeyPairStructure",
        [("public_key", 1, _BYTES, None, ""), ("private_key", 2, _BYTES, None, "")],
    )
    state = ".signal.proto.storage.SenderKeyStateStructure"
    iteration_and_seed: list[_Field] = [
        ("iteration", 1, _UINT32, None, ""),
        ("seed", 2, _BYTES, None, ""),
    ]
    sender_key_state = _message(
        file.message_type,
        "SenderKeyStateStructure",
        [
            ("chain_id", 1, _UINT32, None, ""),
            ("sender_chain_key", 2, _MESSAGE, f"{state}.SenderChainKey", ""),
            ("sender_signing_key", 3, _MESSAGE, f"{state}.SenderSigningKey", ""),
            ("sender_message_keys", 4, _MESSAGE, f"{state}.SenderMessageKey", _REPEATED),
            ("message_version", 5, _UINT32, None, ""),
        ],
    )
    _message(sender_key_state.nested_type, "SenderChainKey", iteration_and_seed)
    _message(sender_key_state.nested_type, "SenderMessageKey", iteration_and_seed)
    _message(
        sender_key_state.nested_type,
        "SenderSigningKey",
        [("public", 1, _BYTES, None, ""), ("private", 2, _BYTES, None, "")],
    )
    _message(
        file.message_type,
        "SenderKeyRecordStructure",
        [("sender_key_states", 1, _MESSAGE, state, _REPEATED)],
    )
    return file


def _wire_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="kurir/libsignal/wire.proto", package="signal.proto.wire", syntax="proto2"
    )
    _message(
        file.message_type,
        "SignalMessage",
        [
            ("ratchet_key", 1, _BYTES, None, ""),
            ("counter", 2, _UINT32, None, ""),
            ("previous_counter", 3, _UINT32, None, ""),
            ("ciphertext", 4, _BYTES, None, ""),
            ("pq_ratchet", 5, _BYTES, None, ""),
        ],
    )
    _message(
        file.message_type,
        "PreKeySignalMessage",
        [
            ("pre_key_id", 1, _UINT32, None, ""),
            ("base_key", 2, _BYTES, None, ""),
            ("identity_key", 3, _BYTES, None, ""),
            ("message", 4, _BYTES, None, ""),
            ("registration_id", 5, _UINT32, None, ""),
            ("signed_pre_key_id", 6, _UINT32, None, ""),
            ("kyber_pre_key_id", 7, _UINT32, None, ""),
            ("kyber_ciphertext", 8, _BYTES, None, ""),
        ],
    )
    _message(
        file.message_type,
        "SenderKeyMessage",
        [
            ("distribution_uuid", 1, _BYTES, None, ""),
            ("chain_id", 2, _UINT32, None, ""),
            ("iteration", 3, _UINT32, None, ""),
            ("ciphertext", 4, _BYTES, None, ""),
        ],
    )
    _message(
        file.message_type,
        "SenderKeyDistributionMessage",
        [
            ("distribution_uuid", 1, _BYTES, None, ""),
            ("chain_id", 2, _UINT32, None, ""),
            ("iteration", 3, _UINT32, None, ""),
            ("chain_key", 4, _BYTES, None, ""),
            ("signing_key", 5, _BYTES, None, ""),
        ],
    )
    _message(
        file.message_type,
        "DecryptionErrorMessage",
        [
            ("ratchet_key", 1, _BYTES, None, ""),
            ("timestamp", 2, _UINT64, None, ""),
            ("device_id", 3, _UINT32, None, ""),
        ],
    )
    return file


def _service_file() -> descriptor_pb2.FileDescriptorProto:
    """The one field of ``service.proto``'s ``Content`` that a ``PlaintextContent`` carries."""
    file = descriptor_pb2.FileDescriptorProto(
        name="kurir/libsignal/service.proto", package="signal.proto.service", syntax="proto2"
    )
    _message(file.message_type, "Content", [("decryption_error_message", 8, _BYTES, None, "")])
    return file


def _sealed_sender_file() -> descriptor_pb2.FileDescriptorProto:
    # libsignal's sealed_sender.proto. Its `string` fields are declared `bytes` here (the same
    # encoding), so that the UTF-8 check and its error stay kurir's; the nested certificates
    # are `bytes` too, since their exact bytes are what is signed.
    file = descriptor_pb2.FileDescriptorProto(
        name="kurir/libsignal/sealed_sender.proto",
        package="signal.proto.sealed_sender",
        syntax="proto2",
    )
    signed: list[_Field] = [
        ("certificate", 1, _BYTES, None, ""),
        ("signature", 2, _BYTES, None, ""),
    ]
    server = _message(file.message_type, "ServerCertificate", signed)
    _message(
        server.nested_type,
        "Certificate",
        [("id", 1, _UINT32, None, ""), ("key", 2, _BYTES, None, "")],
    )
    sender = _message(file.message_type, "SenderCertificate", signed)
    _message(
        sender.nested_type,
        "Certificate",
        [
            ("sender_e164", 1, _BYTES, None, ""),
            ("sender_device", 2, _UINT32, None, ""),
            ("expires", 3, _FIXED64, None, ""),
            ("identity_key", 4, _BYTES, None, ""),
            ("signer_certificate", 5, _BYTES, None, "oneof:signer"),
            ("uuid_string", 6, _BYTES, None, "oneof:sender_uuid"),
            ("uuid_bytes", 7, _BYTES, None, "oneof:sender_uuid"),
            ("signer_id", 8, _UINT32, None, "oneof:signer"),
        ],
    )
    envelope = _message(
        file.message_type,
        "UnidentifiedSenderMessage",
        [
            ("ephemeral_public", 1, _BYTES, None, ""),
            ("encrypted_static", 2, _BYTES, None, ""),
            ("encrypted_message", 3, _BYTES, None, ""),
        ],
    )
    _message(
        envelope.nested_type,
        "Message",
        [
            ("type", 1, _UINT32, None, ""),
            ("sender_certificate", 2, _BYTES, None, ""),
            ("content", 3, _BYTES, None, ""),
            ("content_hint", 4, _UINT32, None, ""),
            ("group_id", 5, _BYTES, None, ""),
        ],
    )
    return file


def _fingerprint_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="kurir/libsignal/fingerprint.proto",
        package="signal.proto.fingerprint",
        syntax="proto2",
    )
    logical = ".signal.proto.fingerprint.LogicalFingerprint"
    _message(file.message_type, "LogicalFingerprint", [("content", 1, _BYTES, None, "")])
    _message(
        file.message_type,
        "CombinedFingerprints",
        [
            ("version", 1, _UINT32, None, ""),
            ("local_fingerprint", 2, _MESSAGE, logical, ""),
            ("remote_fingerprint", 3, _MESSAGE, logical, ""),
        ],
    )
    return file


_POOL: Final = descriptor_pool.DescriptorPool()
_POOL.Add(_storage_file())
_POOL.Add(_wire_file())
_POOL.Add(_service_file())
_POOL.Add(_sealed_sender_file())
_POOL.Add(_fingerprint_file())


def _class(full_name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


SessionStructure: Final[Any] = _class("signal.proto.storage.SessionStructure")
Chain: Final[Any] = _class("signal.proto.storage.SessionStructure.Chain")
ChainKey: Final[Any] = _class("signal.proto.storage.SessionStructure.Chain.ChainKey")
MessageKey: Final[Any] = _class("signal.proto.storage.SessionStructure.Chain.MessageKey")
PendingPreKey: Final[Any] = _class("signal.proto.storage.SessionStructure.PendingPreKey")
PendingKyberPreKey: Final[Any] = _class("signal.proto.storage.SessionStructure.PendingKyberPreKey")
RecordStructure: Final[Any] = _class("signal.proto.storage.RecordStructure")
PreKeyRecordStructure: Final[Any] = _class("signal.proto.storage.PreKeyRecordStructure")
SignedPreKeyRecordStructure: Final[Any] = _class("signal.proto.storage.SignedPreKeyRecordStructure")
IdentityKeyPairStructure: Final[Any] = _class("signal.proto.storage.IdentityKeyPairStructure")
SenderKeyStateStructure: Final[Any] = _class("signal.proto.storage.SenderKeyStateStructure")
SenderKeyRecordStructure: Final[Any] = _class("signal.proto.storage.SenderKeyRecordStructure")
SignalMessageProto: Final[Any] = _class("signal.proto.wire.SignalMessage")
PreKeySignalMessageProto: Final[Any] = _class("signal.proto.wire.PreKeySignalMessage")
SenderKeyMessageProto: Final[Any] = _class("signal.proto.wire.SenderKeyMessage")
SenderKeyDistributionMessageProto: Final[Any] = _class(
    "signal.proto.wire.SenderKeyDistributionMessage"
)
DecryptionErrorMessageProto: Final[Any] = _class("signal.proto.wire.DecryptionErrorMessage")
ContentProto: Final[Any] = _class("signal.proto.service.Content")
ServerCertificateProto: Final[Any] = _class("signal.proto.sealed_sender.ServerCertificate")
ServerCertificateData: Final[Any] = _class(
    "signal.proto.sealed_sender.ServerCertificate.Certificate"
)
SenderCertificateProto: Final[Any] = _class("signal.proto.sealed_sender.SenderCertificate")
SenderCertificateData: Final[Any] = _class(
    "signal.proto.sealed_sender.SenderCertificate.Certificate"
)
UnidentifiedSenderMessageProto: Final[Any] = _class(
    "signal.proto.sealed_sender.UnidentifiedSenderMessage"
)
UnidentifiedSenderMessageContentProto: Final[Any] = _class(
    "signal.proto.sealed_sender.UnidentifiedSenderMessage.Message"
)
CombinedFingerprints: Final[Any] = _class("signal.proto.fingerprint.CombinedFingerprints")
LogicalFingerprint: Final[Any] = _class("signal.proto.fingerprint.LogicalFingerprint")


def parse(message_class: Any, data: bytes) -> Any:
    """Parses `data` as `message_class`, refusing anything prost (libsignal) would refuse.

    Raises:
        ValueError: truncated or malformed encoding; or, at the top level, a known field number
            with the wrong wire type, or a group.
    """
    message = message_class()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise ValueError(str(exc)) from exc
    unknown = UnknownFieldSet(message)
    if len(unknown):
        known = message.DESCRIPTOR.fields_by_number
        for item in unknown:
            if item.wire_type in (3, 4) or item.field_number in known:
                raise ValueError(f"field {item.field_number} has wire type {item.wire_type}")
    return message
