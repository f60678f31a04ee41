"""Memory of one negotiated permessage-deflate extension, as uvicorn would hold it per connection.

What it measures (docs/performance.md, "Idle connections"): uvicorn's ``websockets-sansio``
protocol, when ``ws_per_message_deflate`` is on (uvicorn's default), negotiates
permessage-deflate with every client that offers it (the ``websockets`` client, and so the
kurir SDK, offers it by default) and keeps one zlib compressor and one decompressor per
connection for its whole life. This builds ``--count`` of them exactly as uvicorn's factory
does (``server_max_window_bits=12``, ``client_max_window_bits=12``, ``memLevel=5``, answering
the ``websockets`` client's default offer) and reports the process's RSS growth per
extension. zlib's buffers are C allocations: ``tracemalloc`` does not see them, and the
``kurir bench --idle`` devices (raw WebSockets without extensions) never negotiate them.

    .venv/bin/python bench/ws_deflate_memory.py --count 3000
"""

from __future__ import annotations

import argparse
import os

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="extensions to build")
    args = parser.parse_args()
    # uvicorn/protocols/websockets/websockets_sansio_impl.py, when ws_per_message_deflate
    factory = ServerPerMessageDeflateFactory(
        server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
    )
    offer = [("client_max_window_bits", None)]  # the websockets client's default offer
    kept: list[Extension] = []
    before = _rss_bytes()
    for _ in range(args.count):
        _, extension = factory.process_request_params(offer, [])
        kept.append(extension)
    grown = _rss_bytes() - before
    print(f"{args.count} negotiated permessage-deflate extensions: RSS +{grown / 2**20:.1f} MiB,")
    print(f"{grown / args.count / 1024:.1f} KiB per connection")


if __name__ == "__main__":
    main()
