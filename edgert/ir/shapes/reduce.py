"""Shape rules: reduce layer kinds."""
