"""CPU kernel: concatenation."""
