"""CPU kernel: unary."""
