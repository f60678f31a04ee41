"""kurir.client."""
