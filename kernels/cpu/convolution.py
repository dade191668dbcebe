"""CPU kernel: convolution."""
