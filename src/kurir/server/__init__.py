"""kurir.server: the asyncio routing service. It routes ciphertext it cannot read.

Composition root: :func:`kurir.server.app.create_app`. Transports: :mod:`.http` (JSON API, route
table, OpenAPI) and :mod:`.ws` (the per-device WebSocket). Use cases: :mod:`.services`. State:
:mod:`.storage` (Protocols, in-memory and SQLite engines). Test harness: :mod:`.testing`.

This package never imports ``kurir.crypto`` or ``kurir.client``
(tests/server/test_import_graph.py).
"""
