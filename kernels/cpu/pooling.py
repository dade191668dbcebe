"""CPU kernel: pooling."""
