"""CPU kernel: deconvolution."""
