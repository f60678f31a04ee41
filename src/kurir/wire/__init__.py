"""kurir.wire: the wire protocol, sans-I/O.

Owns the typed WebSocket frames and their MessagePack codec (:mod:`kurir.wire.frames`), the
HTTP JSON bodies (:mod:`kurir.wire.api`), addresses (:mod:`kurir.wire.address`), the Basic
credential format (:mod:`kurir.wire.auth`), limits and error codes. It imports only the
standard library, msgspec and phonenumbers; never the server, the client or the crypto.
The normative description is docs/protocol.md.
"""
