"""kurir.server.storage: the server's durable state behind narrow Protocols.

:mod:`.protocols` defines the stores, :mod:`.records` their values, :mod:`.memory` the
reference engine and :mod:`.sqlite` the embedded engine. One conformance suite
(tests/server/storage) runs against every engine.
"""
