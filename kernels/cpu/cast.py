"""CPU kernel: cast."""
