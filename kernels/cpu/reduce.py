"""CPU kernel: reduce."""
