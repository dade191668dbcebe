"""Shape rules: matmul layer kinds."""
