"""CPU kernel: lrn."""
