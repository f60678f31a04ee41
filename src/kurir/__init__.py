"""kurir: one end-to-end encrypted messaging backbone under several chat apps."""
