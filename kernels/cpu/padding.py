"""CPU kernel: padding."""
