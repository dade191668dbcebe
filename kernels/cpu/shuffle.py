"""CPU kernel: shuffle."""
