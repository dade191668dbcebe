"""CPU kernel: parametric_relu."""
