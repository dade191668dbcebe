"""CPU kernel: select."""
