"""CPU kernel: slice."""
