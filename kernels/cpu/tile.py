"""CPU kernel: tile."""
