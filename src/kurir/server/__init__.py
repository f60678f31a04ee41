"""kurir.server."""
