"""kurir.bench: the load generator behind ``kurir bench`` (docs/performance.md).

It drives a real ``kurir serve`` process over real sockets: devices registered over HTTP, one
WebSocket each, opaque payloads of realistic ciphertext size, and reports accepted and delivered
messages per second, send-to-receipt latency, the server's CPU and memory and the generator's
own CPU. The server never imports this package; the package imports the wire protocol, the
client SDK (for the SDK mode) and the server's app catalogue (for the development client keys).

It lives in ``src/`` rather than in ``bench/`` because ``kurir bench`` is an installed command
and its worker processes are started with ``multiprocessing`` (spawn), which must import the
worker code by module name in a fresh interpreter: that works for an installed package and not
for scripts in a source checkout. ``bench/`` keeps the comparison scripts that drive it.
"""
