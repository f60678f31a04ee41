"""kurir.cli."""
