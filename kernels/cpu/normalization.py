"""CPU kernel: normalization."""
