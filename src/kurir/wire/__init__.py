"""kurir.wire."""
