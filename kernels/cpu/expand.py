"""CPU kernel: expand."""
