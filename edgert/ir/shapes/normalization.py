"""Shape rules: normalization layer kinds."""
