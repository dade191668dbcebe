"""CPU kernel: softmax."""
