"""kurir.crypto."""
