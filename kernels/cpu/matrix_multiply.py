"""CPU kernel: matrix_multiply."""
