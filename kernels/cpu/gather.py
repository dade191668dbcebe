"""CPU kernel: gather."""
