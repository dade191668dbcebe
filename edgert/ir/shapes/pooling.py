"""Shape rules: pooling layer kinds."""
