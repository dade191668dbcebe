"""CPU kernel: resize."""
