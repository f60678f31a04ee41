"""kurir.server.services: the server's use cases, free of transports.

Each service takes its stores, clock, randomness and limits as constructor parameters and
raises :class:`kurir.server.errors.Refused` for anything the peer got wrong.
"""
