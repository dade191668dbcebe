"""CPU kernel: scale."""
